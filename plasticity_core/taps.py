"""What a training step taps of each hidden layer, for the utilities and methods to read.

Every engine (the hand-written MLP step, the autograd step) fills one `LayerTaps` per unit
layer: always the post-activations h, and only the extra gradients named in its `needs`
(a subset of `TAPS`), since each costs backward rows or passes. Every tensor is
[batch, units] ([batch, channels, H, W] for conv units).

Kept apart from the engines so the utility math and the reset methods depend on this
record alone, not on the MLP engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TAPS = ("loss_grad", "target_grad", "logits_grad")
"""What a utility may ask for beyond h; see `LayerTaps`."""
WEIGHT_TAPS = ("target_weight_grad",)
"""What a weight utility may ask for: per weight, not per unit. 'target_weight_grad': the
mean over examples of |dz_y/dW| for every weight matrix, which only the hand-written MLP step
computes (`MLPStep.target_weight_grads`)."""


@dataclass
class LayerTaps:
    """What one step saw of one hidden layer; every tensor is [batch, units]."""

    h: torch.Tensor
    """Post-activation values."""
    loss_grad: torch.Tensor | None = None
    """Per-example gradient of that example's cross-entropy w.r.t. h."""
    target_grad: torch.Tensor | None = None
    """Gradient of the target logit z_y w.r.t. h."""
    logits_grad: torch.Tensor | None = None
    """sum over classes c of |dz_c/dh|."""
