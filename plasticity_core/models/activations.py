"""Activation functions with the derivative the hand-written MLP step needs.

Each entry holds the elementwise function, its derivative expressed through the
pre-activation `a` and the post-activation `h = f(a)` (whichever is cheaper), and the
Kaiming gain used to initialise the layer that feeds it.
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
    derivative: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    """(a, h) -> dh/da, both [..., units]."""
    gain: float
    """Kaiming gain: std of the init is gain / sqrt(fan_in)."""


ACTIVATIONS: Registry[Activation] = Registry("activation")


def _silu_derivative(a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(a)
    return s * (1 + a * (1 - s))


ACTIVATIONS.add("relu", Activation("relu", F.relu, lambda a, h: (a > 0).to(a.dtype), math.sqrt(2)))
ACTIVATIONS.add(
    "leaky_relu",
    Activation(
        "leaky_relu",
        lambda a: F.leaky_relu(a, LEAKY_SLOPE),
        lambda a, h: torch.full_like(a, LEAKY_SLOPE).masked_fill_(a > 0, 1.0),
        math.sqrt(2.0 / (1 + LEAKY_SLOPE**2)),
    ),
)
ACTIVATIONS.add("tanh", Activation("tanh", torch.tanh, lambda a, h: 1 - h * h, 5.0 / 3.0))
ACTIVATIONS.add("sigmoid", Activation("sigmoid", torch.sigmoid, lambda a, h: h * (1 - h), 1.0))
# torch defines no Kaiming gain for SiLU or ELU; both behave like ReLU for positive inputs,
# so they take ReLU's gain.
ACTIVATIONS.add("silu", Activation("silu", F.silu, _silu_derivative, math.sqrt(2)))
ACTIVATIONS.add(
    "elu",
    Activation(
        "elu", F.elu, lambda a, h: torch.where(a > 0, torch.ones_like(h), h + 1), math.sqrt(2)
    ),
)
