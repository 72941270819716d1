"""The distribution each weight matrix of a model is drawn from at init, for resets of single
weights (`swr`) and for the reset endpoint E[w_new] that `gxd_weight` measures against."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from plasticity_core.models.units import kaiming_normal_std


@dataclass(frozen=True)
class WeightInit:
    weight: torch.Tensor
    distribution: str
    """'uniform': U(-scale, scale); 'normal': N(0, scale^2)."""
    scale: float

    mean: float = 0.0
    """E[w_new]: both Kaiming inits are centred on 0."""

    def sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """n fresh values [n] from the distribution."""
        w = self.weight
        fresh = torch.empty(n, device=w.device, dtype=w.dtype)
        if self.distribution == "normal":
            return fresh.normal_(self.mean, self.scale, generator=generator)
        return fresh.uniform_(self.mean - self.scale, self.mean + self.scale, generator=generator)


def kaiming_uniform_init(weight: torch.Tensor, gain: float) -> WeightInit:
    """U(-b, b), b = gain * sqrt(3 / fan_in): `units.kaiming_uniform_`."""
    return WeightInit(weight, "uniform", gain * math.sqrt(3.0 / weight[0].numel()))


def kaiming_normal_init(weight: torch.Tensor, gain: float) -> WeightInit:
    """N(0, (gain / sqrt(fan_out))^2): torchvision's ResNet conv init."""
    return WeightInit(weight, "normal", kaiming_normal_std(weight, gain))
