"""Normalize-and-Project (NaP; Lyle et al. 2024, "Normalization and effective learning rates
in reinforcement learning", arXiv 2407.01800).

NaP pairs normalisation before every nonlinearity with a projection after every optimizer
step that holds the weights of each normalised layer at their initial norm:

    W_l <- W_l * ||W_l^0||_F / ||W_l||_F      (one radius per layer, not per unit)

Behind a normalisation layer the network is invariant to the scale of W_l, so the
projection changes no function; it stops the parameter norm from growing, which would
otherwise decay the effective learning rate lr / ||W_l||^2 towards zero (the paper's point,
as its abstract states it). Only such scale-invariant weights are projected here: the
incoming weights of the model's unit layers whose pre-activations are normalised (every
hidden layer of an MLP with `norm: layer`; each residual block's first conv on the ResNets,
whose other convs, also followed by BatchNorm, are left free: a known gap). The output head
is not normalised, so scaling it would change the function (and undo Continuous CIFAR's
zeroing of it at each task): it is never projected. Biases and the normalisation affine
(gain, offset) are left unprojected. The paper's own treatment of the head and of the affine
parameters was not checked against its text here (only its abstract was available).

Normalisation is a model choice in this project (`norm: layer` on the MLP; the CIFAR
ResNets have BatchNorm before every ReLU), so `nap` does not insert it: it refuses a model
whose hidden layers are not normalised (`check_normalised`), since projection alone on an
unnormalised network is a different method (a hard weight-norm constraint).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from plasticity_core.baselines import Backprop
from plasticity_core.errors import ConfigError
from plasticity_core.models.units import UnitLayer
from plasticity_core.taps import LayerTaps


def check_normalised(layers: Sequence[UnitLayer]) -> None:
    """Raise ConfigError unless every hidden layer normalises its pre-activations."""
    if any(layer.norm is None for layer in layers):
        raise ConfigError(
            "method nap needs normalised hidden layers (normalize-and-project): use --norm layer"
        )


def scale_invariant_weights(layers: Sequence[UnitLayer]) -> list[torch.Tensor]:
    """The incoming weights of the unit layers whose pre-activations are normalised."""
    return [layer.incoming.weight for layer in layers if layer.norm is not None]


class NormalizeAndProject(Backprop):
    """After each step, scale each given weight back to its initial Frobenius norm.
    State: the initial norms (one 0-d tensor per projected weight)."""

    def __init__(self, weights: list[torch.Tensor]) -> None:
        self.weights = weights
        self.radii = [n.clone() for n in torch._foreach_norm(self.weights)]

    @torch.no_grad()
    def after_step(self, taps: Sequence[LayerTaps]) -> int:
        norms = torch._foreach_norm(self.weights)
        # A weight that is all zero stays zero rather than becoming 0 * inf = NaN.
        torch._foreach_clamp_min_(norms, torch.finfo(self.weights[0].dtype).tiny)
        scales = torch._foreach_div(self.radii, norms)
        torch._foreach_mul_(self.weights, scales)
        return 0

    def state_dict(self) -> dict:
        return {"radii": [r.clone() for r in self.radii]}

    def load_state_dict(self, state: dict) -> None:
        for r, saved in zip(self.radii, state["radii"], strict=True):
            r.copy_(saved)
