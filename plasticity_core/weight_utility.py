"""Weight utilities: one score per individual weight, for weight-level resets (`swr`) and the
weight-level reset-cost assay. Low = reset first.

- magnitude: |w| (Hernandez-Garcia et al. 2025, selective weight reinitialization);
- gradient:  |w * g|, g the batch-mean loss gradient ("gradient flow" / saliency; the same
  paper);
- gxd_weight: mean over examples of |dz_y/dw * (w - E[w_new])|, new in this project: the
  first-order change of the target logit z_y when the weight moves to its reset endpoint,
  the mean of the distribution a reset draws from (0 for every Kaiming init here). It is the
  weight-level counterpart of GXD (paper Eq. 8): a unit reset moves h_i to its reference
  r_i, a weight reset moves w to E[w_new]. One example's dz_y/dW is an outer product of the
  layer's target gradient and its input, so the mean of its absolute value is one matrix
  product of absolute values (`step.MLPStep`, the 'target_weight_grad' tap);
- random: uniform noise, the baseline ranking.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from plasticity_core.registry import Registry


@dataclass(frozen=True)
class WeightInputs:
    """What a weight utility reads of one weight tensor."""

    weight: torch.Tensor
    grad: torch.Tensor
    """The batch-mean loss gradient of the step."""
    target_abs: torch.Tensor | None
    """Mean over the batch of |dz_y/dW| (the 'target_weight_grad' tap), when needed."""
    endpoint: float
    """E[w_new]: the mean of the distribution a reset draws the weight from."""
    generator: torch.Generator | None = None


@dataclass(frozen=True)
class WeightUtility:
    name: str
    fn: Callable[[WeightInputs], torch.Tensor]
    """-> a score per weight, shaped like the weight, >= 0."""
    needs: frozenset[str]
    description: str


WEIGHT_UTILITIES: Registry[WeightUtility] = Registry("weight utility")


def _add(name: str, description: str, needs: tuple[str, ...] = ()):
    def add(fn: Callable[[WeightInputs], torch.Tensor]):
        WEIGHT_UTILITIES.add(name, WeightUtility(name, fn, frozenset(needs), description))
        return fn

    return add


@_add("magnitude", "|w| (Hernandez-Garcia et al. 2025)")
def magnitude(u: WeightInputs) -> torch.Tensor:
    return u.weight.abs()


@_add("gradient", "|w * dl/dw|: gradient flow (Hernandez-Garcia et al. 2025)")
def gradient(u: WeightInputs) -> torch.Tensor:
    return (u.weight * u.grad).abs_()


@_add(
    "gxd_weight",
    "mean |dz_y/dw * (w - E[w_new])|: first-order target-logit cost of the reset (new)",
    needs=("target_weight_grad",),
)
def gxd_weight(u: WeightInputs) -> torch.Tensor:
    return (u.weight - u.endpoint).abs_().mul_(u.target_abs)


@_add("random", "uniform noise: a random ranking")
def random(u: WeightInputs) -> torch.Tensor:
    w = u.weight
    return torch.rand(w.shape, generator=u.generator, device=w.device, dtype=w.dtype)
