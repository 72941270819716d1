"""Continual Backpropagation (paper Algorithm 1): the bookkeeping that picks units to reset.

`ContinualBackprop` keeps, for all hidden units of a model in flat tensors, the age a, the
activation EMA f (reference r = f / (1 - eta^a), Eq. 10) and the utility EMA u (those two
in `unit_statistics.UnitStatistics`), and after every optimizer step replaces the
lowest-utility mature units through the shared reset operator (`reset.reset_units`).

How many units a layer replaces is decided on the host from ages alone (the reset history
of the last `maturity` steps), so the only device work is choosing *which* units: no
host/device synchronisation in the step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from plasticity_core.errors import ConfigError
from plasticity_core.models.units import UnitLayer
from plasticity_core.optim import Optimizer
from plasticity_core.reset import UnitResetMethod, reset_units
from plasticity_core.taps import LayerTaps
from plasticity_core.unit_statistics import UnitStatistics, bias_corrected
from plasticity_core.utility import Utility

COMPENSATIONS = ("reference", "none")
"""How a reset treats the consumer of a replaced unit (CBPConfig.compensation)."""


@dataclass(frozen=True)
class CBPConfig:
    replacement_rate: float = 1e-4
    """rho: fraction of a layer's mature units replaced per step (accumulated)."""
    maturity: int = 100
    """m: a unit is eligible for replacement once its age exceeds m steps."""
    decay: float = 0.99
    """eta: decay of the utility and reference EMAs."""
    compensation: str = "reference"
    """'reference': a replaced unit's w_out * r moves into the consumer's bias (the paper's
    rule); 'none': the consumer bias is left as it is (what Dohare et al.'s reference code
    amounts to: it zeroes the running mean before its compensation reads it)."""

    def __post_init__(self) -> None:
        if not 0 <= self.replacement_rate <= 1:
            raise ConfigError(f"replacement_rate must be in [0, 1], got {self.replacement_rate}")
        if self.maturity < 0:
            raise ConfigError(f"maturity must be >= 0 steps, got {self.maturity}")
        if not 0 <= self.decay < 1:
            raise ConfigError(f"utility decay must be in [0, 1), got {self.decay}")
        if self.compensation not in COMPENSATIONS:
            raise ConfigError(f"unknown compensation {self.compensation!r}; choose from: "
                              f"{', '.join(COMPENSATIONS)}")  # fmt: skip


class ContinualBackprop(UnitResetMethod):
    """CBP bookkeeping over `layers`; call `after_step(taps)` after every optimizer step."""

    def __init__(
        self,
        layers: Sequence[UnitLayer],
        utility: Utility,
        optimizer: Optimizer | None,
        config: CBPConfig,
        generator: torch.Generator | None,
    ) -> None:
        super().__init__(layers, utility, optimizer, generator)
        self.config = config
        sizes = [layer.n_units for layer in self.layers]
        w = self.layers[0].incoming.weight
        self.stats = UnitStatistics(
            [(layer.incoming.weight, layer.outgoing.weight) for layer in self.layers],
            sizes, utility, config.decay, generator,
        )  # fmt: skip
        self.slices = self.stats.slices
        # Ages are steps - born.
        self.born = torch.zeros(sum(sizes), device=w.device, dtype=torch.long)
        self.sizes = sizes
        self.steps = 0
        self.accumulated = [0.0] * len(sizes)
        self.counts = [0] * len(sizes)
        # Per layer: (step, count) of units that were reset (or born, step 0) within the
        # last `maturity` steps; everything else is mature.
        self.young: list[deque[tuple[int, int]]] = [deque([(0, n)]) for n in sizes]

    @property
    def correction(self) -> torch.Tensor:
        """1 - eta^age [units], the bias correction of the EMAs."""
        return self.stats.correction

    @property
    def activation_ema(self) -> torch.Tensor:
        return self.stats.activation_ema

    @property
    def utility_ema(self) -> torch.Tensor:
        return self.stats.utility_ema

    @property
    def age(self) -> torch.Tensor:
        """a [units]: optimizer steps since each unit was created or last reset."""
        return self.steps - self.born

    def reference(self) -> torch.Tensor:
        """r [units]: the bias-corrected activation EMA (Eq. 10); 0 for age-0 units."""
        return bias_corrected(self.activation_ema, self.correction)

    def corrected_utility(self) -> torch.Tensor:
        """u / (1 - eta^a) [units]: the value units are ranked by; 0 for age-0 units."""
        return bias_corrected(self.utility_ema, self.correction)

    def eligible_count(self, layer: int) -> int:
        """Number of units of `layer` whose age exceeds the maturity threshold."""
        young = self.young[layer]
        while young and self.steps - young[0][0] > self.config.maturity:
            young.popleft()
        return self.sizes[layer] - sum(count for _, count in young)

    @torch.no_grad()
    def after_step(self, taps: Sequence[LayerTaps]) -> int:
        """Update ages, references and utilities, then replace units; returns the count."""
        self.steps += 1
        reference = self.stats.update(taps)
        resets = 0
        for layer, k in self.due():
            self._replace(layer, k, reference)
            resets += k
        return resets

    def due(self) -> list[tuple[int, int]]:
        """(layer, how many units to replace now) after a step, from ages alone: each layer
        accumulates replacement_rate x its mature units and replaces the whole part."""
        due = []
        for i in range(len(self.sizes)):
            eligible = self.eligible_count(i)
            self.accumulated[i] += eligible * self.config.replacement_rate
            k = min(int(self.accumulated[i]), eligible)
            if k > 0:
                self.accumulated[i] -= k
                self.counts[i] += k
                due.append((i, k))
        return due

    def _replace(self, layer: int, k: int, reference: torch.Tensor) -> None:
        sl = self.slices[layer]
        immature = self.age[sl] <= self.config.maturity
        ranked = self.corrected_utility()[sl].masked_fill(immature, float("inf"))
        index = torch.topk(ranked, k, largest=False).indices
        compensate = self.config.compensation == "reference"
        reset_units(self.layers[layer], index, reference[sl][index], self.optimizer,
                    self.generator, compensate)  # fmt: skip
        flat = index + sl.start
        self.born.index_fill_(0, flat, self.steps)
        self.stats.forget(flat)
        self.young[layer].append((self.steps, k))

    def reset_counts(self) -> list[int]:
        """Units replaced so far, per layer."""
        return list(self.counts)

    _TENSORS = ("born", "correction", "activation_ema", "utility_ema")

    def state_dict(self) -> dict:
        return {
            **{name: getattr(self, name).clone() for name in self._TENSORS},
            "steps": self.steps,
            "accumulated": list(self.accumulated),
            "counts": list(self.counts),
            "young": [list(q) for q in self.young],
        }

    def load_state_dict(self, state: dict) -> None:
        for name in self._TENSORS:
            getattr(self, name).copy_(state[name])
        self.steps = int(state["steps"])
        self.accumulated = [float(c) for c in state["accumulated"]]
        self.counts = [int(c) for c in state["counts"]]
        self.young = [deque((int(s), int(c)) for s, c in q) for q in state["young"]]
