"""Continual Backpropagation (paper Algorithm 1): the bookkeeping that picks units to reset.

`ContinualBackprop` keeps, for all hidden units of a model in flat tensors, the age a, the
activation EMA f (reference r = f / (1 - eta^a), Eq. 10) and the utility EMA u, and after
every optimizer step replaces the lowest-utility mature units through the shared reset
operator (`reset.reset_units`).

How many units a layer replaces is decided on the host from ages alone (the reset history
of the last `maturity` steps), so the only device work is choosing *which* units: no
host/device synchronisation in the step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch

from plasticity_core.errors import ConfigError
from plasticity_core.models.units import UnitLayer
from plasticity_core.optim import Optimizer
from plasticity_core.reset import UnitResetMethod, reset_units
from plasticity_core.taps import LayerTaps
from plasticity_core.utility import (
    Utility,
    UtilityInputs,
    batch_axes,
    in_magnitude,
    out_magnitude,
    positions,
)


@dataclass(frozen=True)
class CBPConfig:
    replacement_rate: float = 1e-4
    """rho: fraction of a layer's mature units replaced per step (accumulated)."""
    maturity: int = 100
    """m: a unit is eligible for replacement once its age exceeds m steps."""
    decay: float = 0.99
    """eta: decay of the utility and reference EMAs."""

    def __post_init__(self) -> None:
        if not 0 <= self.replacement_rate <= 1:
            raise ConfigError(f"replacement_rate must be in [0, 1], got {self.replacement_rate}")
        if self.maturity < 0:
            raise ConfigError(f"maturity must be >= 0 steps, got {self.maturity}")
        if not 0 <= self.decay < 1:
            raise ConfigError(f"utility decay must be in [0, 1), got {self.decay}")


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
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.slices = [slice(s, s + n) for s, n in zip(starts, sizes, strict=True)]
        w = self.layers[0].incoming.weight
        total = sum(sizes)
        # Ages are steps - born; the bias corrections 1 - eta^age are updated in place each
        # step (c <- eta * c + 1 - eta, a lerp toward ones), one op instead of a pow over ages.
        self.born = torch.zeros(total, device=w.device, dtype=torch.long)
        self.correction = torch.zeros(total, device=w.device, dtype=w.dtype)
        self._ones = torch.ones_like(self.correction)
        self.activation_ema = torch.zeros_like(self.correction)
        self.utility_ema = torch.zeros_like(self.correction)
        # Per step, every layer's batch sums and utility sums land in slices of flat vectors,
        # so the EMAs, the 1/count and the weight magnitudes are a few ops over all units.
        self._batch_sum = torch.zeros_like(self.correction)
        self._score = torch.zeros_like(self.correction)
        self._reference = torch.zeros_like(self.correction)
        # Per-layer views and utility inputs, built once: the step runs millions of times.
        self._views = [(self._batch_sum[sl], self._score[sl], sl) for sl in self.slices]
        self._inputs = [
            UtilityInputs(None, self._reference[sl], layer.incoming.weight,  # taps: per step
                          layer.outgoing.weight, generator)
            for layer, sl in zip(self.layers, self.slices, strict=True)
        ]  # fmt: skip
        # Weight magnitudes for the utilities that read them, taken once per weight matrix
        # per step into preallocated buffers: a matrix is one layer's outgoing and the next
        # layer's incoming, and a fresh |W| of the 784-wide first layer per step is costly.
        self._magnitudes = _MagnitudePlan(self.layers, self.slices, utility.magnitudes)
        self.sizes = sizes
        self.steps = 0
        self.accumulated = [0.0] * len(sizes)
        self.counts = [0] * len(sizes)
        # Per layer: (step, count) of units that were reset (or born, step 0) within the
        # last `maturity` steps; everything else is mature.
        self.young: list[deque[tuple[int, int]]] = [deque([(0, n)]) for n in sizes]

    @property
    def age(self) -> torch.Tensor:
        """a [units]: optimizer steps since each unit was created or last reset."""
        return self.steps - self.born

    def reference(self) -> torch.Tensor:
        """r [units]: the bias-corrected activation EMA (Eq. 10); 0 for age-0 units."""
        return _bias_corrected(self.activation_ema, self.correction)

    def corrected_utility(self) -> torch.Tensor:
        """u / (1 - eta^a) [units]: the value units are ranked by; 0 for age-0 units."""
        return _bias_corrected(self.utility_ema, self.correction)

    def eligible_count(self, layer: int) -> int:
        """Number of units of `layer` whose age exceeds the maturity threshold."""
        young = self.young[layer]
        while young and self.steps - young[0][0] > self.config.maturity:
            young.popleft()
        return self.sizes[layer] - sum(count for _, count in young)

    @torch.no_grad()
    def after_step(self, taps: Sequence[LayerTaps]) -> int:
        """Update ages, references and utilities, then replace units; returns the count."""
        eta = self.config.decay
        self.steps += 1
        self.correction.lerp_(self._ones, 1 - eta)
        counts = [positions(tap.h) for tap in taps]
        for (batch_sum, _, _), tap in zip(self._views, taps, strict=True):
            torch.sum(tap.h, batch_axes(tap.h), out=batch_sum)
        self._update_ema(self.activation_ema, self._batch_sum, counts)
        # Every age is >= 1 here, so the correction is > 0.
        reference = torch.div(self.activation_ema, self.correction, out=self._reference)
        for (_, score, _), inputs, tap in zip(self._views, self._inputs, taps, strict=True):
            inputs.taps = tap
            if inputs.scratch is None or inputs.scratch.shape != tap.h.shape:
                inputs.scratch = torch.empty_like(tap.h)
            self.utility.batch_sum(inputs, score)
        self._magnitudes.weigh(self._score)
        self._update_ema(self.utility_ema, self._score, counts if self.utility.averaged else None)

        resets = 0
        for i in range(len(self.layers)):
            eligible = self.eligible_count(i)
            self.accumulated[i] += eligible * self.config.replacement_rate
            k = min(int(self.accumulated[i]), eligible)
            if k > 0:
                self.accumulated[i] -= k
                self._replace(i, k, reference)
                self.counts[i] += k
                resets += k
        return resets

    def _update_ema(self, ema: torch.Tensor, sums: torch.Tensor, counts: list[int] | None) -> None:
        """ema <- eta * ema + (1 - eta) * sums / count, per layer's count (None: no count)."""
        weight = 1 - self.config.decay
        if counts is None:
            ema.lerp_(sums, weight)
        elif all(c == counts[0] for c in counts):  # MLPs: fold the mean into the update
            ema.mul_(self.config.decay).add_(sums, alpha=weight / counts[0])
        else:  # conv layers differ in spatial size
            for (_, _, sl), count in zip(self._views, counts, strict=True):
                sums[sl].div_(count)
            ema.lerp_(sums, weight)

    def _replace(self, layer: int, k: int, reference: torch.Tensor) -> None:
        sl = self.slices[layer]
        immature = self.age[sl] <= self.config.maturity
        ranked = self.corrected_utility()[sl].masked_fill(immature, float("inf"))
        index = torch.topk(ranked, k, largest=False).indices
        reset_units(self.layers[layer], index, reference[sl][index], self.optimizer, self.generator)
        flat = index + sl.start
        self.born.index_fill_(0, flat, self.steps)
        for t in (self.correction, self.activation_ema, self.utility_ema):
            t.index_fill_(0, flat, 0)
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


class _MagnitudePlan:
    """sum_j |w_in[i, j]| and sum_k |w_out[k, i]| of every layer's units in flat vectors,
    refreshed once per step: |W| of each distinct weight matrix goes into a preallocated
    buffer and is reduced for every layer that reads it."""

    def __init__(self, layers, slices, which: frozenset[str]) -> None:
        w = layers[0].incoming.weight
        total = slices[-1].stop

        def flat(kind: str) -> torch.Tensor | None:
            return torch.zeros(total, device=w.device, dtype=w.dtype) if kind in which else None

        self.flat_in, self.flat_out = flat("in"), flat("out")
        readers: dict[int, tuple[torch.Tensor, list]] = {}
        for layer, sl in zip(layers, slices, strict=True):
            for weight, target, reduction in (
                (layer.incoming.weight, self.flat_in, _row_sums),
                (layer.outgoing.weight, self.flat_out, _column_sums),
            ):
                if target is not None:
                    readers.setdefault(id(weight), (weight, []))[1].append((reduction, target[sl]))
        # One |W| buffer serves every matrix in turn (it is reduced right away): a smaller
        # working set than a buffer per matrix (CBP's bookkeeping timed alone: 216 -> 200 us).
        largest = max((weight.numel() for weight, _ in readers.values()), default=0)
        buffer = torch.empty(largest, device=w.device, dtype=w.dtype)
        self.matrices = []
        for weight, reads in readers.values():
            absolute = buffer[: weight.numel()].view(weight.shape)
            reductions = [reduction(absolute, target) for reduction, target in reads]
            self.matrices.append((weight, absolute, reductions))

    def weigh(self, score: torch.Tensor) -> None:
        """score [all units] *= sum |w_out| and /= sum |w_in|, as far as the utility reads them."""
        for weight, absolute, reductions in self.matrices:
            torch.abs(weight, out=absolute)
            for reduce in reductions:
                reduce()
        if self.flat_out is not None:
            score.mul_(self.flat_out)
        if self.flat_in is not None:
            score.div_(self.flat_in)


def _row_sums(absolute: torch.Tensor, target: torch.Tensor) -> Callable[[], torch.Tensor]:
    return partial(in_magnitude, absolute, out=target)


def _column_sums(absolute: torch.Tensor, target: torch.Tensor) -> Callable[[], torch.Tensor]:
    if absolute.ndim == 2:  # the transposed view and the ones vector made once, not per step
        ones = absolute.new_ones(absolute.shape[0])
        return partial(torch.mv, absolute.t(), ones, out=target)
    return partial(out_magnitude, absolute, out=target)


def _bias_corrected(ema: torch.Tensor, correction: torch.Tensor) -> torch.Tensor:
    return torch.where(correction > 0, ema / correction, 0.0)
