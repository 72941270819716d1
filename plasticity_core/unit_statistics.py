"""CBP's per-step statistics of every hidden unit, kept in flat tensors: the bias
corrections 1 - eta^age, the activation EMA f (reference r = f / (1 - eta^a), Eq. 10) and
the utility EMA u.

One run keeps them as [units] vectors; a pack of R runs as [R, units], with its taps
[R, batch, units] and weights [R, out, in]: the same ops then update every run at once.
Every layer's batch sums and utility sums land in slices of flat vectors, so the EMAs, the
1/count and the weight magnitudes are a few ops over all units (each per-layer op saved is
a few microseconds of a ~1 ms step).

With several post-activation features per unit (crelu: F = 2, `models.units`) the
activation EMA and the reference are per feature, [units, F] ([R, units, F] for a pack),
while ages, bias corrections and utilities stay per unit; a utility that scores features
(`Utility.per_feature`) fills a [units, F] buffer whose 'out' magnitudes are per feature
column and whose features are then summed per unit (the rule in `utility.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch

from plasticity_core.models.units import features_per_unit
from plasticity_core.optim import Rate
from plasticity_core.taps import LayerTaps
from plasticity_core.utility import (
    Utility,
    UtilityInputs,
    batch_axes,
    in_magnitude,
    out_magnitude,
    positions,
    sum_features,
)


class UnitStatistics:
    """`update(taps)` once per optimizer step; `layers` are (incoming weight, outgoing
    weight) per unit layer, all with one number of features per unit (more than one only
    for linear units); `decay` is eta, one number or [R] for a pack of `runs`."""

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
        self.features = _common_features(layers, self.packed)
        shape = ((runs,) if self.packed else ()) + (sum(sizes),)
        per_feature = shape + ((self.features,) if self.features > 1 else ())
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.slices = [slice(s, s + n) for s, n in zip(starts, sizes, strict=True)]
        # The bias corrections 1 - eta^age are updated in place each step (c <- eta * c +
        # 1 - eta, a lerp toward ones), one op instead of a pow over ages.
        self.correction = torch.zeros(shape, device=w.device, dtype=w.dtype)
        self._ones = torch.ones_like(self.correction)
        self.activation_ema = torch.zeros(per_feature, device=w.device, dtype=w.dtype)
        self.utility_ema = torch.zeros_like(self.correction)
        self._batch_sum = torch.zeros_like(self.activation_ema)
        self._score = torch.zeros_like(self.correction)
        self._reference = torch.zeros_like(self.activation_ema)
        # Feature scores, summed per unit after their 'out' magnitudes (None: scored per unit).
        self._feature_score = (
            torch.zeros_like(self.activation_ema)
            if self.features > 1 and utility.per_feature
            else None
        )
        if isinstance(decay, float | int):
            self._decay, self._weight = decay, 1 - decay
        else:  # per run, as [R, 1] columns
            self._decay = decay.to(w.device, w.dtype).view(-1, 1)
            self._weight = 1 - self._decay
        # Per-layer views and utility inputs, built once: the step runs millions of times.
        f = self.features
        scores, scored = (self._score, 1) if self._feature_score is None else (
            self._feature_score, f)  # fmt: skip
        self._views = [
            (_layer_view(self._batch_sum, sl, f), _layer_view(scores, sl, scored), sl)
            for sl in self.slices
        ]
        self._inputs = [
            UtilityInputs(None, _layer_view(self._reference, sl, f), w_in, w_out, generator)
            for (w_in, w_out), sl in zip(layers, self.slices, strict=True)
        ]  # taps: per step
        # Weight magnitudes for the utilities that read them, taken once per weight matrix
        # per step into preallocated buffers: a matrix is one layer's outgoing and the next
        # layer's incoming, and a fresh |W| of the 784-wide first layer per step is costly.
        self._magnitudes = _MagnitudePlan(
            layers, self.slices, utility.magnitudes, shape, self.features
        )

    @torch.no_grad()
    def update(self, taps: Sequence[LayerTaps]) -> torch.Tensor:
        """One step's EMAs of activations and utilities; returns the reference r (every age
        is >= 1 here, so the correction is > 0)."""
        self.correction.lerp_(self._ones, self._weight)
        counts = [positions(tap.h) for tap in taps]
        for (batch_sum, _, _), tap in zip(self._views, taps, strict=True):
            torch.sum(tap.h, batch_axes(tap.h), out=batch_sum)
        self._update_ema(self.activation_ema, self._batch_sum, counts)
        correction = self.correction if self.features == 1 else self.correction.unsqueeze(-1)
        reference = torch.div(self.activation_ema, correction, out=self._reference)
        for (_, score, _), inputs, tap in zip(self._views, self._inputs, taps, strict=True):
            inputs.taps = tap
            if inputs.scratch is None or inputs.scratch.shape != tap.h.shape:
                inputs.scratch = torch.empty_like(tap.h)
            self.utility.batch_sum(inputs, score)
        self._magnitudes.weigh(self._score, self._feature_score)
        self._update_ema(self.utility_ema, self._score, counts if self.utility.averaged else None)
        return reference

    def _update_ema(self, ema: torch.Tensor, sums: torch.Tensor, counts: list[int] | None) -> None:
        """ema <- eta * ema + (1 - eta) * sums / count, per layer's count (None: no count)."""
        decay, weight = self._decay, self._weight
        if ema.ndim > self.correction.ndim and isinstance(decay, torch.Tensor):
            decay, weight = decay.unsqueeze(-1), weight.unsqueeze(-1)  # [R, 1, 1]: per feature
        if counts is None:
            ema.lerp_(sums, weight)
        elif all(c == counts[0] for c in counts):  # MLPs: fold the mean into the update
            if isinstance(weight, float):
                ema.mul_(decay).add_(sums, alpha=weight / counts[0])
            else:
                ema.mul_(decay).addcmul_(sums, weight / counts[0])
        else:  # conv layers differ in spatial size
            for (_, _, sl), count in zip(self._views, counts, strict=True):
                sums[..., sl].div_(count)
            ema.lerp_(sums, weight)

    def forget(self, index: torch.Tensor) -> None:
        """Start units `index` (flat, of one run's [units]) afresh: age 0 (every feature)."""
        for t in (self.correction, self.activation_ema, self.utility_ema):
            t.index_fill_(0, index, 0)


def _common_features(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], packed: bool) -> int:
    """The layers' one number of post-activation features per unit."""
    features = {features_per_unit(w_in, w_out) for w_in, w_out in layers}
    if len(features) > 1:
        raise ValueError(f"unit layers differ in features per unit: {sorted(features)}")
    (common,) = features
    if common > 1 and any(w_in.ndim != 2 + packed for w_in, _ in layers):
        raise ValueError("several features per unit are kept for linear units only")
    return common


def _layer_view(t: torch.Tensor, sl: slice, features: int) -> torch.Tensor:
    """The units `sl` of a buffer [(R,) units] (features == 1) or [(R,) units, features], laid
    out as the tap lays out their features: [(R,) len(sl) * features], a view (written in
    place)."""
    if features == 1:
        return t[..., sl]
    part = t[..., sl, :]
    return part.view(*part.shape[:-2], -1)


class _MagnitudePlan:
    """sum_j |w_in[i, j]| and sum_k |w_out[k, i]| of every layer's units in flat vectors
    `shape` ([units], or [R, units] for a pack), refreshed once per step: |W| of each
    distinct weight matrix goes into a preallocated buffer and is reduced for every layer
    that reads it. With several `features` per unit the column sums are per feature,
    [(R,) units, features]."""

    def __init__(
        self, layers, slices, which: frozenset[str], shape: tuple[int, ...], features: int = 1
    ) -> None:
        w = layers[0][0]
        packed = len(shape) == 2

        def flat(kind: str, shape: tuple[int, ...]) -> torch.Tensor | None:
            return torch.zeros(shape, device=w.device, dtype=w.dtype) if kind in which else None

        self.flat_in = flat("in", shape)
        self.flat_out = flat("out", shape + ((features,) if features > 1 else ()))
        readers: dict[int, tuple[torch.Tensor, list]] = {}
        for (w_in, w_out), sl in zip(layers, slices, strict=True):
            for weight, target, reduction in (
                (w_in, self.flat_in, _packed_row_sums if packed else _row_sums),
                (w_out, self.flat_out, _packed_column_sums if packed else _column_sums),
            ):
                if target is not None:
                    per_unit = target is self.flat_in
                    view = _layer_view(target, sl, 1 if per_unit else features)
                    readers.setdefault(id(weight), (weight, []))[1].append((reduction, view))
        # One |W| buffer serves every matrix in turn (it is reduced right away): a smaller
        # working set than a buffer per matrix (CBP's bookkeeping timed alone: 216 -> 200 us).
        largest = max((weight.numel() for weight, _ in readers.values()), default=0)
        buffer = torch.empty(largest, device=w.device, dtype=w.dtype)
        self.matrices = []
        for weight, reads in readers.values():
            absolute = buffer[: weight.numel()].view(weight.shape)
            reductions = [reduction(absolute, target) for reduction, target in reads]
            self.matrices.append((weight, absolute, reductions))

    def weigh(self, score: torch.Tensor, feature_score: torch.Tensor | None = None) -> None:
        """score *= sum |w_out| and /= sum |w_in|, as far as the utility reads them. Given
        per-feature scores [(R,) units, features], each feature is weighed by its own column
        and `score` becomes their sum per unit before the 'in' division."""
        for weight, absolute, reductions in self.matrices:
            torch.abs(weight, out=absolute)
            for reduce in reductions:
                reduce()
        if feature_score is not None:
            if self.flat_out is not None:
                feature_score.mul_(self.flat_out)
            sum_features(feature_score, out=score)
        elif self.flat_out is not None:
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
    """ema / correction where the correction is > 0, else 0 (age-0 units); a per-feature
    ema [(R,) units, features] takes its unit's correction [(R,) units]."""
    if ema.ndim > correction.ndim:
        correction = correction.unsqueeze(-1)
    return torch.where(correction > 0, ema / correction, 0.0)
