"""Threshold resets (ReDo, Sokar et al. 2023; ReGraMa, Liu et al. 2025) on the CBP operator.

Every `every` optimizer steps, each hidden unit's utility on the current batch is normalised
by its layer's mean, s_i = u_i / mean_k u_k, and every unit with s_i <= tau is reset by
`reset.reset_units` with reference 0: incoming weights resampled, outgoing weights zeroed
without bias compensation (ReDo's rule), optimizer state of the touched slices zeroed.

ReDo scores units by mean |h| (utility `activation`), ReGraMa by mean |dl/dh|
(`loss_gradient`); any registered utility can drive the same rule (`--method redo
--utility gxd`). Utilities that need a reference use the batch-mean activation. Selecting
units reads the mask on the host, once every `every` steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from plasticity_core.models.units import UnitLayer
from plasticity_core.optim import Optimizer
from plasticity_core.reset import UnitResetMethod, reset_units
from plasticity_core.taps import LayerTaps
from plasticity_core.utility import Utility, UtilityInputs, batch_axes


def threshold_mask(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """Units whose score, divided by the layer mean, is <= tau: bool [units].

    A layer whose scores are all zero is entirely below any tau >= 0."""
    mean = scores.mean()
    normalised = torch.where(mean > 0, scores / mean, torch.zeros_like(scores))
    return normalised <= tau


class ThresholdReset(UnitResetMethod):
    """Reset every tau-low unit every `every` steps; counts resets per layer."""

    def __init__(
        self,
        layers: Sequence[UnitLayer],
        utility: Utility,
        optimizer: Optimizer | None,
        tau: float,
        every: int,
        generator: torch.Generator | None,
    ) -> None:
        super().__init__(layers, utility, optimizer, generator)
        self.tau = tau
        self.every = every
        self.steps = 0
        self.counts = [0] * len(self.layers)

    @torch.no_grad()
    def after_step(self, taps: Sequence[LayerTaps]) -> int:
        self.steps += 1
        if self.steps % self.every:
            return 0
        resets = 0
        for i, (layer, tap) in enumerate(zip(self.layers, taps, strict=True)):
            reference = tap.h.mean(batch_axes(tap.h))
            inputs = UtilityInputs(
                tap, reference, layer.incoming.weight, layer.outgoing.weight, self.generator
            )
            index = threshold_mask(self.utility.fn(inputs), self.tau).nonzero()[:, 0]
            if len(index):
                reset_units(
                    layer,
                    index,
                    torch.zeros_like(index, dtype=reference.dtype),
                    self.optimizer,
                    self.generator,
                )
                self.counts[i] += len(index)
                resets += len(index)
        return resets

    def reset_counts(self) -> list[int]:
        return list(self.counts)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "counts": list(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.counts = [int(c) for c in state["counts"]]
