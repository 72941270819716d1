"""Neuron-utility measures (paper Table 2, Eqs. 6, 8, 11, 12).

A utility maps what one training step saw of a layer to one instantaneous score per unit;
CBP keeps an EMA of it. Each declares the extra taps it needs (see `taps.TAPS`), so the
engine runs only the backward rows that some utility will read.

Every score has the same shape: the mean over examples (and spatial positions) of a
per-example term, times sum_k |w_out| when the utility reads 'out' magnitudes and divided by
sum_j |w_in| when it reads 'in' (Eqs. 11, 12). A utility therefore gives only its term's
*sum* over the batch (`Utility.batch_sum`); `Utility.fn` completes one layer's score, and the
CBP engine completes every layer's at once on flat vectors, folding the 1/count into its EMA
update: on a 256-unit layer each per-layer op saved is a few microseconds of a ~1 ms step.

Shapes: `h` is [batch, units] for linear layers and [batch, channels, H, W] for conv layers;
sums run over every axis but the unit axis (1). A pack of R MLP runs (`packed/`) gives
[R, batch, units] against references [R, units]: sums then run over the batch axis (1) and
give [R, units]. Weights follow PyTorch: incoming `w_in[i]` and outgoing `w_out[:, i]`
belong to unit i.

Several features per unit (crelu: h = (relu(a), relu(-a)), `models.units`): the taps are
[batch, units * F] with unit i's features at i * F .. (i + 1) * F - 1, the reference is per
feature, and a unit's score is what it is for one feature with every feature of the unit
counted, so that it still measures what resetting the unit (all its features at once)
changes:
- a term that is |a first-order change of the output| (gxi, gxd) sums the features' signed
  changes before the absolute value: gxd = mean_x |sum_c (h_c - r_c) dz_y/dh_c|, the
  first-order change of z_y when the unit's features are set to their references;
- every other term is summed over the features, each feature's score completed with its own
  consumer column's sum_k |w_out[k, c]| ('out') before the sum and the unit's
  sum_j |w_in[i, j]| ('in') after it: activation = mean_x sum_c |h_c|, contribution =
  sum_c mean_x |h_c| sum_k |w_out[k, c]| (exact per example for crelu, which has at most
  one non-zero feature), loss_gradient = mean_x sum_c |dl/dh_c|. gxd_all stays the sum of
  the features' ||J_c (h_c - r_c)||_1, an upper bound on ||J (h - r)||_1 of the unit: the
  step's logits_grad tap already summed |dz_k/dh_c| over the logits k per feature.
`Utility.per_feature` says which of the two a utility is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from plasticity_core.models.units import features_per_unit
from plasticity_core.registry import Registry
from plasticity_core.taps import LayerTaps


@dataclass
class UtilityInputs:
    """What a utility reads of one layer. Not frozen: the CBP engine keeps one per layer and
    only swaps in each step's taps."""

    taps: LayerTaps
    reference: torch.Tensor
    """r [units]: bias-corrected EMA of the unit's batch-mean activation (Eq. 10); per
    feature [units * features] with several features per unit (`Utility.fn` also takes
    [units, features])."""
    w_in: torch.Tensor
    w_out: torch.Tensor
    generator: torch.Generator | None = None
    scratch: torch.Tensor | None = None
    """A buffer shaped like `taps.h` that `batch_sum` may overwrite (else it allocates)."""
    features: int = field(init=False, default=1)
    """Post-activation features per unit (crelu: 2), from the weights' shapes."""

    def __post_init__(self) -> None:
        self.features = features_per_unit(self.w_in, self.w_out)


@dataclass(frozen=True)
class Utility:
    name: str
    batch_sum: Callable[[UtilityInputs, torch.Tensor | None], torch.Tensor]
    """(inputs, out) -> the per-example term summed over every axis but the unit axis
    [units], >= 0, written into `out` when given; per feature [units * features] with
    several features per unit when `per_feature`."""
    needs: frozenset[str]
    """Extra taps of the step (see `taps.TAPS`)."""
    description: str
    magnitudes: frozenset[str] = frozenset()
    """'out': the score is multiplied by sum_k |w_out|; 'in': divided by sum_j |w_in|."""
    averaged: bool = True
    """False when `batch_sum` is already the score (no per-example term: random)."""
    per_feature: bool = True
    """With several features per unit: True when the unit's score is the sum of its
    features' scores (each with its own 'out' magnitude); False when `batch_sum` scores the
    units itself (gxi, gxd: the features' signed changes summed inside |.|; random)."""

    def __post_init__(self) -> None:
        if not self.per_feature and "out" in self.magnitudes:
            raise ValueError(f"utility {self.name}: an 'out' magnitude is per feature")

    def fn(self, u: UtilityInputs) -> torch.Tensor:
        """The instantaneous score of one layer's units [units], >= 0; low = reset first."""
        features = u.features
        if features > 1 and u.reference.ndim == u.taps.h.ndim:  # r [units, features]
            u = replace(u, reference=u.reference.flatten(-2))
        score = self.batch_sum(u, None)
        if self.averaged:
            score = score / positions(u.taps.h)
        if "out" in self.magnitudes:
            score = score * out_magnitude(u.w_out.abs())
        if features > 1 and self.per_feature:
            score = fold_features(score, features)
        if "in" in self.magnitudes:
            score = score / in_magnitude(u.w_in.abs())
        return score


UTILITIES: Registry[Utility] = Registry("utility")


def batch_axes(t: torch.Tensor) -> int | tuple[int, ...]:
    """Every axis of [batch, units, ...] but the unit axis 1 (a plain int when 2-D: faster);
    the batch axis 1 of a pack's [runs, batch, units]."""
    if t.ndim <= 3:
        return t.ndim - 2
    return (0, *range(2, t.ndim))


def positions(h: torch.Tensor) -> int:
    """How many values of each unit a batch holds: examples x spatial positions (a pack's
    [runs, batch, units]: the batch)."""
    return h.shape[1] if h.ndim == 3 else h.numel() // h.shape[1]


def _unit_sum(t: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """Sum over every axis but the unit axis 1: [batch, units, ...] -> [units]."""
    return torch.sum(t, batch_axes(t), out=out)


def fold_features(t: torch.Tensor, features: int) -> torch.Tensor:
    """Sum each unit's features: [..., units * features] -> [..., units]."""
    return sum_features(t.view(*t.shape[:-1], -1, features))


def sum_features(t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """[..., units, features] -> [..., units] (features >= 2), into `out`: adds of the strided
    features, since a sum over a last axis of 2 is slow on CPU (80 us against 13 us for
    [64, 256, 2])."""
    first, second, *rest = t.unbind(-1)
    out = torch.add(first, second, out=out)
    for part in rest:
        out.add_(part)
    return out


def _abs(t: torch.Tensor, u: UtilityInputs) -> torch.Tensor:
    """|t|, into the scratch buffer when there is one."""
    return t.abs() if u.scratch is None else torch.abs(t, out=u.scratch)


def _displacement(u: UtilityInputs) -> torch.Tensor:
    """h - r with r broadcast over batch (and spatial) axes, into the scratch buffer."""
    h, r = u.taps.h, u.reference
    if h.ndim == 3:  # a pack: r [runs, units] against h [runs, batch, units]
        r = r.unsqueeze(1)
    elif h.ndim > 3:
        r = r.view(-1, *([1] * (h.ndim - 2)))
    return h - r if u.scratch is None else torch.sub(h, r, out=u.scratch)


def out_magnitude(
    w: torch.Tensor, out: torch.Tensor | None = None, ones: torch.Tensor | None = None
) -> torch.Tensor:
    """Column sums of an already absolute outgoing weight |w|: [units] (into `out`;
    `ones` [w.shape[0]] may be passed preallocated)."""
    if w.ndim == 2:  # a column sum as a matrix-vector product: about twice as fast on CPU
        return torch.mv(w.t(), w.new_ones(w.shape[0]) if ones is None else ones, out=out)
    return torch.sum(w, dim=(0, *range(2, w.ndim)), out=out)


def in_magnitude(w: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Row sums of an already absolute incoming weight |w|: [units] (into `out`)."""
    return torch.sum(w, dim=1 if w.ndim == 2 else tuple(range(1, w.ndim)), out=out)


def utility(
    name: str,
    needs: tuple[str, ...] = (),
    description: str = "",
    magnitudes: tuple[str, ...] = (),
    averaged: bool = True,
    per_feature: bool = True,
):
    def add(batch_sum: Callable[[UtilityInputs, torch.Tensor | None], torch.Tensor]):
        UTILITIES.add(
            name,
            Utility(name, batch_sum, frozenset(needs), description, frozenset(magnitudes),
                    averaged, per_feature),
        )  # fmt: skip
        return batch_sum

    return add


# Activation and contribution share their term, as do the two mean-corrected ones: they
# differ only in the weight magnitudes the score is completed with.
@utility("contribution", description="mean |h| * sum_k |w_out|  (Eq. 11)", magnitudes=("out",))
@utility("activation", description="mean |h|: local expression")
def absolute_activation(u: UtilityInputs, out: torch.Tensor | None) -> torch.Tensor:
    return _unit_sum(_abs(u.taps.h, u), out)


@utility(
    "mc_adaptable",
    description="mean |h - r| * sum_k |w_out| / sum_j |w_in|  (Eq. 12)",
    magnitudes=("out", "in"),
)
@utility(
    "mc_contribution",
    description="mean |h - r| * sum_k |w_out|: mean-corrected",
    magnitudes=("out",),
)
def absolute_displacement(u: UtilityInputs, out: torch.Tensor | None) -> torch.Tensor:
    return _unit_sum(_displacement(u).abs_(), out)


@utility("loss_gradient", needs=("loss_grad",), description="mean |dl/dh|")
def loss_gradient(u: UtilityInputs, out: torch.Tensor | None) -> torch.Tensor:
    return _unit_sum(_abs(u.taps.loss_grad, u), out)


@utility(
    "gxi",
    needs=("target_grad",),
    description="mean |h * dz_y/dh|: gradient x input",
    per_feature=False,
)
def gxi(u: UtilityInputs, out: torch.Tensor | None) -> torch.Tensor:
    h, g = u.taps.h, u.taps.target_grad
    return _absolute_change(h * g if u.scratch is None else torch.mul(h, g, out=u.scratch), u, out)


@utility(
    "gxd",
    needs=("target_grad",),
    description="mean |(h - r) * dz_y/dh|  (Eq. 8)",
    per_feature=False,
)
def gxd(u: UtilityInputs, out: torch.Tensor | None) -> torch.Tensor:
    return _absolute_change(_displacement(u).mul_(u.taps.target_grad), u, out)


def _absolute_change(change: torch.Tensor, u: UtilityInputs, out: torch.Tensor | None):
    """Sum of |a unit's signed first-order change| over the batch: a unit's features move
    together, so their changes add before the absolute value."""
    if u.features > 1:
        change = fold_features(change, u.features)
    return _unit_sum(change.abs_(), out)


@utility(
    "gxd_all",
    needs=("logits_grad",),
    description="mean ||J (h - r)||_1 over all logits  (Eq. 6, L1 norm; = C x the mean)",
)
def gxd_all(u: UtilityInputs, out: torch.Tensor | None) -> torch.Tensor:
    return _unit_sum(_displacement(u).abs_().mul_(u.taps.logits_grad), out)


@utility(
    "random",
    description="uniform noise: a random ranking",
    averaged=False,
    per_feature=False,
)
def random(u: UtilityInputs, out: torch.Tensor | None) -> torch.Tensor:
    h = u.taps.h
    if h.ndim != 3:
        return torch.rand(h.shape[1] // u.features, generator=u.generator, device=h.device,
                          dtype=h.dtype, out=out)  # fmt: skip
    # A pack: each run draws from its own generator (a list), as it would alone.
    units = h.shape[2] // u.features
    if out is None:
        out = torch.empty(h.shape[0], units, device=h.device, dtype=h.dtype)
    for r, generator in enumerate(u.generator):
        out[r] = torch.rand(units, generator=generator, device=h.device, dtype=h.dtype)
    return out
