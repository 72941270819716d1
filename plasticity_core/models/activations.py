"""Activation functions with the backward pass the hand-written MLP step needs.

Each entry holds the elementwise function, its backward g -> g * f'(a) expressed through the
pre-activation `a` or the post-activation `h = f(a)` (whichever the fused kernel reads), and
the Kaiming gain used to initialise the layer that feeds it.
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
    """(g, a, h) -> g * f'(a): g [..., batch, units] broadcasts against a and h [batch, units]."""
    gain: float
    """Kaiming gain: std of the init is gain / sqrt(fan_in)."""


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
