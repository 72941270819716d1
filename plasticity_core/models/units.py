"""The description of a layer of resettable units, shared by every model.

A unit is an output feature of `incoming` (row i of a Linear weight, output channel i of a
conv) whose only consumer is `outgoing` (column i of its weight). Models list these
descriptions by name, so the reset operator and the utilities never locate layers by
position in a `Sequential`.

An activation may make several post-activation features of one unit (crelu: relu(a) and
relu(-a)). The unit is still row i of `incoming` (and its bias and norm affine); its
features are the tap's entries i * F .. (i + 1) * F - 1 and the consumer reads them at the
same columns, F = `features_per_unit`. Every user of a unit layer (reset, utilities, CBP
statistics, clamps, diagnostics) treats those features as one unit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class UnitLayer:
    name: str
    incoming: nn.Module
    """Produces the units: `weight[i]` and `bias[i]` belong to unit i."""
    norm: nn.Module | None
    """Optional per-unit affine normalisation between `incoming` and the activation."""
    tap: nn.Module
    """The module whose output is the units' post-activation h: [batch, units, ...]. A forward
    hook here reads or clamps the units (the assay, autograd-based engines): see
    `forward_hooks`."""
    outgoing: nn.Module
    """Consumes the units: `weight[:, i]` reads unit i."""
    gain: float
    """Kaiming gain of the activation."""
    consumer_norm: nn.Module | None = None
    """A BatchNorm right after a bias-free `outgoing` (conv -> BN): a reset moves the removed
    contribution into its running mean, as it would into `outgoing.bias`."""
    init: str = "kaiming_uniform"
    """How incoming weights are drawn at init and at a reset: 'kaiming_uniform' (fan-in,
    U(-bound, bound)) or 'kaiming_normal' (fan-out, N(0, std^2), torchvision's ResNet init)."""

    @property
    def n_units(self) -> int:
        return self.incoming.weight.shape[0]

    @property
    def features(self) -> int:
        """Post-activation features per unit (crelu: 2): see `features_per_unit`."""
        return features_per_unit(self.incoming.weight, self.outgoing.weight)

    @property
    def init_bound(self) -> float:
        """Kaiming-uniform bound gain * sqrt(3 / fan_in) of the incoming weights."""
        fan_in = self.incoming.weight[0].numel()
        return self.gain * math.sqrt(3.0 / fan_in)

    def sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """n fresh incoming weight rows [n, *weight.shape[1:]] from the init distribution."""
        w = self.incoming.weight
        fresh = torch.empty((n, *w.shape[1:]), device=w.device, dtype=w.dtype)
        if self.init == "kaiming_normal":
            return fresh.normal_(0.0, kaiming_normal_std(w, self.gain), generator=generator)
        return fresh.uniform_(-self.init_bound, self.init_bound, generator=generator)


def features_per_unit(w_in: torch.Tensor, w_out: torch.Tensor) -> int:
    """How many post-activation features each unit of `w_in` gives the consumer `w_out`: the
    consumer's input width over the units. 3-D weights are a pack's linear [R, out, in]."""
    packed = w_in.ndim == 3
    return w_out.shape[1 + packed] // w_in.shape[packed]


def kaiming_normal_std(weight: torch.Tensor, gain: float) -> float:
    """gain / sqrt(fan_out), fan_out = out channels x kernel positions (torchvision's
    ResNet init, `kaiming_normal_(mode="fan_out")`)."""
    return gain / math.sqrt(weight.shape[0] * weight[0, 0].numel())


def kaiming_uniform_(weight: torch.Tensor, gain: float, generator: torch.Generator | None) -> None:
    """Fill `weight` [out, fan_in, ...] from U(-b, b), b = gain * sqrt(3 / fan_in)."""
    bound = gain * math.sqrt(3.0 / weight[0].numel())
    with torch.no_grad():
        weight.uniform_(-bound, bound, generator=generator)


ForwardHook = Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor | None]
"""(module, inputs, output) -> None, or a tensor that replaces the module's output."""


@contextmanager
def forward_hooks(pairs: Iterable[tuple[nn.Module, ForwardHook]]) -> Iterator[None]:
    """Register each (module, hook) of `pairs` as a forward hook for the `with` block.

    The hooks are removed however the block ends: a hook left behind by an exception would
    keep reading (or clamping) the units in every later forward of the model."""
    handles = []
    try:
        for module, hook in pairs:
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()
