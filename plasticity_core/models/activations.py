"""Activation functions with the backward pass the hand-written MLP step needs.

Each entry holds the function, its backward g -> g * f'(a) expressed through the
pre-activation `a` or the post-activation `h = f(a)` (whichever the fused kernel reads), the
Kaiming gain used to initialise the layer that feeds it, and how many post-activation
features it makes of one unit.

`crelu` (concatenated ReLU; Shang et al. 2016, used against loss of plasticity by Abbas,
Zhao, Modayil, White and Machado 2023) maps a unit's pre-activation a to the two features
(relu(a), relu(-a)): a hidden Linear with n rows gives 2n features and the next layer reads
2n inputs. Unit i's features sit side by side, at 2i and 2i + 1, so [..., 2n] views as
[..., n, 2]; the usual concatenation [relu(a), relu(-a)] differs only by a permutation of
the consumer's columns (the same network family and, the init being i.i.d. per weight, the
same init distribution).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from plasticity_core.registry import Registry

LEAKY_SLOPE = 0.01


@dataclass(frozen=True)
class Activation:
    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    backward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    """(g, a, h) -> g * f'(a) [..., batch, units]: g [..., batch, units * features] broadcasts
    against a [batch, units] and h [batch, units * features]."""
    gain: float
    """Kaiming gain: std of the init is gain / sqrt(fan_in)."""
    features: int = 1
    """Post-activation features per unit: fn maps [..., units] to [..., units * features],
    unit i's features at i * features .. (i + 1) * features - 1."""


ACTIVATIONS: Registry[Activation] = Registry("activation")

# The backward passes are the fused ATen kernels autograd itself runs: one op each, where
# building f'(a) and multiplying took three (a ReLU layer's mask-and-multiply cost ~25 us at
# batch 64 against ~5 us fused, four times per step).
_aten = torch.ops.aten

ACTIVATIONS.add(
    "relu",
    Activation("relu", F.relu, lambda g, a, h: _aten.threshold_backward(g, h, 0), math.sqrt(2)),
)
ACTIVATIONS.add(
    "leaky_relu",
    Activation(
        "leaky_relu",
        lambda a: F.leaky_relu(a, LEAKY_SLOPE),
        lambda g, a, h: _aten.leaky_relu_backward(g, h, LEAKY_SLOPE, True),
        math.sqrt(2.0 / (1 + LEAKY_SLOPE**2)),
    ),
)
ACTIVATIONS.add(
    "tanh", Activation("tanh", torch.tanh, lambda g, a, h: _aten.tanh_backward(g, h), 5.0 / 3.0)
)
ACTIVATIONS.add(
    "sigmoid",
    Activation("sigmoid", torch.sigmoid, lambda g, a, h: _aten.sigmoid_backward(g, h), 1.0),
)
# torch defines no Kaiming gain for SiLU or ELU; both behave like ReLU for positive inputs,
# so they take ReLU's gain.
ACTIVATIONS.add(
    "silu", Activation("silu", F.silu, lambda g, a, h: _aten.silu_backward(g, a), math.sqrt(2))
)
ACTIVATIONS.add(
    "elu",
    Activation(
        "elu",
        F.elu,
        lambda g, a, h: _aten.elu_backward(g, 1.0, 1.0, 1.0, True, h),
        math.sqrt(2),
    ),
)


def _crelu(a: torch.Tensor) -> torch.Tensor:
    """[..., units] -> [..., 2 units]: (relu(a_i), relu(-a_i)) side by side per unit."""
    return torch.stack((a, a.neg()), -1).relu_().flatten(-2)


def _crelu_backward(g: torch.Tensor, a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """g [..., 2 units] -> g_+ 1[a > 0] - g_- 1[a < 0] [..., units]: ReLU's fused backward on
    every feature, then each pair folded through d(a, -a)/da (autograd's bits: x - y is
    x + (-y) exactly)."""
    passed = _aten.threshold_backward(g.unflatten(-1, (-1, 2)), h.unflatten(-1, (-1, 2)), 0)
    return passed[..., 0] - passed[..., 1]


# A crelu feature is a ReLU of a pre-activation whose pair carries E[h_+^2 + h_-^2] = E[a^2],
# so each of the consumer's 2n inputs has ReLU's second moment: ReLU's gain sqrt(2) over the
# consumer's fan_in 2n keeps the forward variance, as for ReLU over n.
ACTIVATIONS.add("crelu", Activation("crelu", _crelu, _crelu_backward, math.sqrt(2), features=2))
