"""CBP's per-step statistics of every hidden unit, kept in flat tensors: the bias
corrections 1 - eta^age, the activation EMA f (reference r = f / (1 - eta^a), Eq. 10) and
the utility EMA u.

One run keeps them as [units] vectors; a pack of R runs as [R, units], with its taps
[R, batch, units] and weights [R, out, in]: the same ops then update every run at once.
Every layer's batch sums and utility sums land in slices of flat vectors, so the EMAs, the
1/count and the weight magnitudes are a few ops over all units (each per-layer op saved is
a few microseconds of a ~1 ms step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch

from plasticity_core.optim import Rate
from plasticity_core.taps import LayerTaps
from plasticity_core.utility import (
    Utility,
    UtilityInputs,
    batch_axes,
    in_magnitude,
    out_magnitude,
    positions,
)


class UnitStatistics:
    """`update(taps)` once per optimizer step; `layers` are (incoming weight, outgoing
    weight) per unit layer; `decay` is eta, one number or [R] for a pack of `runs`."""

    def __init__(
        self,
        layers: Sequence[tuple[torch.Tensor, torch.Tensor]],
        sizes: Sequence[int],
        utility: Utility,
        decay: Rate,
        generator: torch.Generator | list[torch.Generator] | None,
        runs: int | None = None,
    ) -> None:
        w = layers[0][0]
        self.utility = utility
        self.packed = runs is not None
        shape = ((runs,) if self.packed else ()) + (sum(sizes),)
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.slices = [slice(s, s + n) for s, n in zip(starts, sizes, strict=True)]
        # The bias corrections 1 - eta^age are updated in place each step (c <- eta * c +
        # 1 - eta, a lerp toward ones), one op instead of a pow over ages.
        self.correction = torch.zeros(shape, device=w.device, dtype=w.dtype)
        self._ones = torch.ones_like(self.correction)
        self.activation_ema = torch.zeros_like(self.correction)
        self.utility_ema = torch.zeros_like(self.correction)
        self._batch_sum = torch.zeros_like(self.correction)
        self._score = torch.zeros_like(self.correction)
        self._reference = torch.zeros_like(self.correction)
        if isinstance(decay, float | int):
            self._decay, self._weight = decay, 1 - decay
        else:  # per run, as [R, 1] columns
            self._decay = decay.to(w.device, w.dtype).view(-1, 1)
            self._weight = 1 - self._decay
        # Per-layer views and utility inputs, built once: the step runs millions of times.
        self._views = [(self._batch_sum[..., sl], self._score[..., sl], sl) for sl in self.slices]
        self._inputs = [
            UtilityInputs(None, self._reference[..., sl], w_in, w_out, generator)  # taps: per step
            for (w_in, w_out), sl in zip(layers, self.slices, strict=True)
        ]  # fmt: skip
        # Weight magnitudes for the utilities that read them, taken once per weight matrix
        # per step into preallocated buffers: a matrix is one layer's outgoing and the next
        # layer's incoming, and a fresh |W| of the 784-wide first layer per step is costly.
        self._magnitudes = _MagnitudePlan(layers, self.slices, utility.magnitudes, shape)

    @torch.no_grad()
    def update(self, taps: Sequence[LayerTaps]) -> torch.Tensor:
        """One step's EMAs of activations and utilities; returns the reference r (every age
        is >= 1 here, so the correction is > 0)."""
        self.correction.lerp_(self._ones, self._weight)
        counts = [positions(tap.h) for tap in taps]
        for (batch_sum, _, _), tap in zip(self._views, taps, strict=True):
            torch.sum(tap.h, batch_axes(tap.h), out=batch_sum)
        self._update_ema(self.activation_ema, self._batch_sum, counts)
        reference = torch.div(self.activation_ema, self.correction, out=self._reference)
        for (_, score, _), inputs, tap in zip(self._views, self._inputs, taps, strict=True):
            inputs.taps = tap
            if inputs.scratch is None or inputs.scratch.shape != tap.h.shape:
                inputs.scratch = torch.empty_like(tap.h)
            self.utility.batch_sum(inputs, score)
        self._magnitudes.weigh(self._score)
        self._update_ema(self.utility_ema, self._score, counts if self.utility.averaged else None)
        return reference

    def _update_ema(self, ema: torch.Tensor, sums: torch.Tensor, counts: list[int] | None) -> None:
        """ema <- eta * ema + (1 - eta) * sums / count, per layer's count (None: no count)."""
        weight = self._weight
        if counts is None:
            ema.lerp_(sums, weight)
        elif all(c == counts[0] for c in counts):  # MLPs: fold the mean into the update
            if isinstance(weight, float):
                ema.mul_(self._decay).add_(sums, alpha=weight / counts[0])
            else:
                ema.mul_(self._decay).addcmul_(sums, weight / counts[0])
        else:  # conv layers differ in spatial size
            for (_, _, sl), count in zip(self._views, counts, strict=True):
                sums[..., sl].div_(count)
            ema.lerp_(sums, weight)

    def forget(self, index: torch.Tensor) -> None:
        """Start units `index` (flat, of one run's [units]) afresh: age 0."""
        for t in (self.correction, self.activation_ema, self.utility_ema):
            t.index_fill_(0, index, 0)


class _MagnitudePlan:
    """sum_j |w_in[i, j]| and sum_k |w_out[k, i]| of every layer's units in flat vectors
    `shape` ([units], or [R, units] for a pack), refreshed once per step: |W| of each
    distinct weight matrix goes into a preallocated buffer and is reduced for every layer
    that reads it."""

    def __init__(self, layers, slices, which: frozenset[str], shape: tuple[int, ...]) -> None:
        w = layers[0][0]
        packed = len(shape) == 2

        def flat(kind: str) -> torch.Tensor | None:
            return torch.zeros(shape, device=w.device, dtype=w.dtype) if kind in which else None

        self.flat_in, self.flat_out = flat("in"), flat("out")
        readers: dict[int, tuple[torch.Tensor, list]] = {}
        for (w_in, w_out), sl in zip(layers, slices, strict=True):
            for weight, target, reduction in (
                (w_in, self.flat_in, _packed_row_sums if packed else _row_sums),
                (w_out, self.flat_out, _packed_column_sums if packed else _column_sums),
            ):
                if target is not None:
                    readers.setdefault(id(weight), (weight, []))[1].append(
                        (reduction, target[..., sl])
                    )
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
        """score *= sum |w_out| and /= sum |w_in|, as far as the utility reads them."""
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


def _packed_row_sums(absolute: torch.Tensor, target: torch.Tensor) -> Callable[[], torch.Tensor]:
    return partial(torch.sum, absolute, 2, out=target)  # [R, out, in] -> [R, out]


def _packed_column_sums(absolute: torch.Tensor, target: torch.Tensor) -> Callable[[], torch.Tensor]:
    return partial(torch.sum, absolute, 1, out=target)  # [R, out, in] -> [R, in]


def bias_corrected(ema: torch.Tensor, correction: torch.Tensor) -> torch.Tensor:
    """ema / correction where the correction is > 0, else 0 (age-0 units)."""
    return torch.where(correction > 0, ema / correction, 0.0)
