"""Neuron-utility measures (paper Table 2, Eqs. 6, 8, 11, 12).

A utility maps what one training step saw of a layer to one instantaneous score per unit;
CBP keeps an EMA of it. Each declares the extra taps it needs (see `step.TAPS`), so the
engine runs only the backward rows that some utility will read.

Shapes: `h` is [batch, units] for linear layers and [batch, channels, H, W] for conv layers;
scores average over every axis but the unit axis (1). Weights follow PyTorch: incoming
`w_in[i]` and outgoing `w_out[:, i]` belong to unit i.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from plasticity_core.registry import Registry
from plasticity_core.step import LayerTaps


@dataclass(frozen=True)
class UtilityInputs:
    taps: LayerTaps
    reference: torch.Tensor
    """r [units]: bias-corrected EMA of the unit's batch-mean activation (Eq. 10)."""
    w_in: torch.Tensor | None
    w_out: torch.Tensor | None
    generator: torch.Generator | None = None
    in_magnitude: torch.Tensor | None = None
    """sum_j |w_in[i, j]| [units], when the engine computed it already (then w_in may be
    None): it scores several layers in one call, and each weight matrix is one layer's
    outgoing and the next one's incoming, so |W| is taken once for both."""
    out_magnitude: torch.Tensor | None = None
    """sum_k |w_out[k, i]| [units], likewise."""


@dataclass(frozen=True)
class Utility:
    name: str
    fn: Callable[[UtilityInputs], torch.Tensor]
    """UtilityInputs -> instantaneous score [units], >= 0; low = reset first."""
    needs: frozenset[str]
    """Extra taps of the step (see `step.TAPS`)."""
    description: str
    magnitudes: frozenset[str] = frozenset()
    """Weight magnitudes it reads: 'in' (sum_j |w_in|) and/or 'out' (sum_k |w_out|)."""


UTILITIES: Registry[Utility] = Registry("utility")


def batch_axes(t: torch.Tensor) -> int | tuple[int, ...]:
    """Every axis of [batch, units, ...] but the unit axis 1 (a plain int when 2-D: faster)."""
    return 0 if t.ndim == 2 else (0, *range(2, t.ndim))


def _unit_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean over every axis but the unit axis 1: [batch, units, ...] -> [units]."""
    return t.mean(batch_axes(t))


def _displacement(u: UtilityInputs) -> torch.Tensor:
    """h - r with r broadcast over batch (and spatial) axes."""
    h = u.taps.h
    return h - u.reference.view(1, -1, *([1] * (h.ndim - 2)))


def _out_magnitude(u: UtilityInputs) -> torch.Tensor:
    """sum_k |w_out[k, i]| (also over kernel positions): [units]."""
    if u.out_magnitude is not None:
        return u.out_magnitude
    return out_magnitude(u.w_out.abs())


def out_magnitude(
    w: torch.Tensor, out: torch.Tensor | None = None, ones: torch.Tensor | None = None
) -> torch.Tensor:
    """Column sums of an already absolute outgoing weight |w|: [units] (into `out`;
    `ones` [w.shape[0]] may be passed preallocated)."""
    if w.ndim == 2:  # a column sum as a matrix-vector product: about twice as fast on CPU
        return torch.mv(w.t(), w.new_ones(w.shape[0]) if ones is None else ones, out=out)
    return torch.sum(w, dim=(0, *range(2, w.ndim)), out=out)


def _in_magnitude(u: UtilityInputs) -> torch.Tensor:
    """sum_j |w_in[i, j]|: [units]."""
    if u.in_magnitude is not None:
        return u.in_magnitude
    return in_magnitude(u.w_in.abs())


def in_magnitude(w: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Row sums of an already absolute incoming weight |w|: [units] (into `out`)."""
    return torch.sum(w, dim=1 if w.ndim == 2 else tuple(range(1, w.ndim)), out=out)


def utility(name: str, needs: tuple[str, ...] = (), description: str = "", magnitudes: tuple = ()):
    def add(fn: Callable[[UtilityInputs], torch.Tensor]):
        UTILITIES.add(name, Utility(name, fn, frozenset(needs), description, frozenset(magnitudes)))
        return fn

    return add


@utility("activation", description="mean |h|: local expression")
def activation(u: UtilityInputs) -> torch.Tensor:
    return _unit_mean(u.taps.h.abs())


@utility("contribution", description="mean |h| * sum_k |w_out|  (Eq. 11)", magnitudes=("out",))
def contribution(u: UtilityInputs) -> torch.Tensor:
    return _unit_mean(u.taps.h.abs()) * _out_magnitude(u)


@utility(
    "mc_contribution",
    description="mean |h - r| * sum_k |w_out|: mean-corrected",
    magnitudes=("out",),
)
def mc_contribution(u: UtilityInputs) -> torch.Tensor:
    return _unit_mean(_displacement(u).abs_()) * _out_magnitude(u)


@utility(
    "mc_adaptable",
    description="mean |h - r| * sum_k |w_out| / sum_j |w_in|  (Eq. 12)",
    magnitudes=("out", "in"),
)
def mc_adaptable(u: UtilityInputs) -> torch.Tensor:
    return mc_contribution(u).div_(_in_magnitude(u))


@utility("loss_gradient", needs=("loss_grad",), description="mean |dl/dh|")
def loss_gradient(u: UtilityInputs) -> torch.Tensor:
    return _unit_mean(u.taps.loss_grad.abs())


@utility("gxi", needs=("target_grad",), description="mean |h * dz_y/dh|: gradient x input")
def gxi(u: UtilityInputs) -> torch.Tensor:
    return _unit_mean((u.taps.h * u.taps.target_grad).abs_())


@utility("gxd", needs=("target_grad",), description="mean |(h - r) * dz_y/dh|  (Eq. 8)")
def gxd(u: UtilityInputs) -> torch.Tensor:
    return _unit_mean((_displacement(u) * u.taps.target_grad).abs_())


@utility(
    "gxd_all",
    needs=("logits_grad",),
    description="mean ||J (h - r)||_1 over all logits  (Eq. 6, L1 norm; = C x the mean)",
)
def gxd_all(u: UtilityInputs) -> torch.Tensor:
    return _unit_mean(_displacement(u).abs_() * u.taps.logits_grad)


@utility("random", description="uniform noise: a random ranking")
def random(u: UtilityInputs) -> torch.Tensor:
    h = u.taps.h
    return torch.rand(h.shape[1], generator=u.generator, device=h.device, dtype=h.dtype)
