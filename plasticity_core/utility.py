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
    w_in: torch.Tensor
    w_out: torch.Tensor
    generator: torch.Generator | None = None


@dataclass(frozen=True)
class Utility:
    name: str
    fn: Callable[[UtilityInputs], torch.Tensor]
    """UtilityInputs -> instantaneous score [units], >= 0; low = reset first."""
    needs: frozenset[str]
    description: str


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
    w = u.w_out.abs()
    if w.ndim == 2:  # a column sum as a vector-matrix product: about twice as fast on CPU
        return w.new_ones(w.shape[0]) @ w
    return w.sum(dim=(0, *range(2, w.ndim)))


def _in_magnitude(u: UtilityInputs) -> torch.Tensor:
    """sum_j |w_in[i, j]|: [units]."""
    return u.w_in.abs().sum(dim=1 if u.w_in.ndim == 2 else tuple(range(1, u.w_in.ndim)))


def utility(name: str, needs: tuple[str, ...] = (), description: str = ""):
    def add(fn: Callable[[UtilityInputs], torch.Tensor]):
        UTILITIES.add(name, Utility(name, fn, frozenset(needs), description))
        return fn

    return add


@utility("activation", description="mean |h|: local expression")
def activation(u: UtilityInputs) -> torch.Tensor:
    return _unit_mean(u.taps.h.abs())


@utility("contribution", description="mean |h| * sum_k |w_out|  (Eq. 11)")
def contribution(u: UtilityInputs) -> torch.Tensor:
    return _unit_mean(u.taps.h.abs()) * _out_magnitude(u)


@utility("mc_contribution", description="mean |h - r| * sum_k |w_out|: mean-corrected")
def mc_contribution(u: UtilityInputs) -> torch.Tensor:
    return _unit_mean(_displacement(u).abs_()) * _out_magnitude(u)


@utility("mc_adaptable", description="mean |h - r| * sum_k |w_out| / sum_j |w_in|  (Eq. 12)")
def mc_adaptable(u: UtilityInputs) -> torch.Tensor:
    return mc_contribution(u) / _in_magnitude(u)


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
