"""Plasticity methods behind one interface: hooks around each optimizer step.

`before_step` may change the gradients (L2); `after_step` may change the parameters after
the update (CBP resets, shrink-and-perturb) and returns how many units it reset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from plasticity_core.cbp import CBPConfig, ContinualBackprop
from plasticity_core.errors import ConfigError
from plasticity_core.models.units import UnitLayer
from plasticity_core.optim import Optimizer
from plasticity_core.registry import Registry
from plasticity_core.step import LayerTaps
from plasticity_core.utility import UTILITIES


@dataclass(frozen=True)
class MethodConfig:
    name: str = "cbp"
    utility: str = "gxd"
    """cbp only: which utility ranks units for replacement."""
    replacement_rate: float = 1e-4
    maturity: int = 100
    utility_decay: float = 0.99
    weight_decay: float = 1e-4
    """l2 only: lambda of the penalty lambda/2 * ||w||^2 added to the loss."""
    shrink: float = 1e-4
    """shrink_perturb only: fraction of every weight removed per step."""
    noise_std: float = 1e-3
    """shrink_perturb only: std of the Gaussian noise added to every weight per step."""

    def __post_init__(self) -> None:
        METHODS.get(self.name)
        UTILITIES.get(self.utility)
        self.cbp()
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.shrink < 1:
            raise ConfigError(f"shrink must be in [0, 1), got {self.shrink}")
        if self.noise_std < 0:
            raise ConfigError(f"noise_std must be >= 0, got {self.noise_std}")

    def cbp(self) -> CBPConfig:
        return CBPConfig(self.replacement_rate, self.maturity, self.utility_decay)


class Method(Protocol):
    needs: frozenset[str]
    """Taps (see step.TAPS) the method reads in after_step."""

    def before_step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None: ...

    def after_step(self, taps: Sequence[LayerTaps]) -> int: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class Backprop:
    """Plain backpropagation: no intervention."""

    needs: frozenset[str] = frozenset()

    def before_step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        pass

    def after_step(self, taps: Sequence[LayerTaps]) -> int:
        return 0

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class L2(Backprop):
    """L2 regularisation: g <- g + lambda * w for every parameter."""

    def __init__(self, weight_decay: float) -> None:
        self.weight_decay = weight_decay

    @torch.no_grad()
    def before_step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        torch._foreach_add_(grads, params, alpha=self.weight_decay)


class ShrinkPerturb(Backprop):
    """Shrink and perturb (Ash & Adams 2020) every step: w <- (1 - shrink) w + N(0, std^2)."""

    def __init__(
        self,
        params: list[torch.Tensor],
        shrink: float,
        noise_std: float,
        generator: torch.Generator,
    ) -> None:
        self.params = params
        self.shrink = shrink
        self.noise_std = noise_std
        self.generator = generator
        self._noise = [torch.empty_like(p) for p in params]

    @torch.no_grad()
    def after_step(self, taps: Sequence[LayerTaps]) -> int:
        torch._foreach_mul_(self.params, 1 - self.shrink)
        for n in self._noise:
            n.normal_(0, self.noise_std, generator=self.generator)
        torch._foreach_add_(self.params, self._noise)
        return 0


MethodFactory = Callable[[MethodConfig, list[UnitLayer], Optimizer, torch.Generator], Method]
METHODS: Registry[MethodFactory] = Registry("method")
METHODS.add("bp", lambda cfg, layers, opt, gen: Backprop())
METHODS.add("l2", lambda cfg, layers, opt, gen: L2(cfg.weight_decay))
METHODS.add(
    "shrink_perturb",
    lambda cfg, layers, opt, gen: ShrinkPerturb(opt.params, cfg.shrink, cfg.noise_std, gen),
)
METHODS.add(
    "cbp",
    lambda cfg, layers, opt, gen: ContinualBackprop(
        layers, UTILITIES.get(cfg.utility), opt, cfg.cbp(), gen
    ),
)


def build_method(
    config: MethodConfig,
    layers: list[UnitLayer],
    optimizer: Optimizer,
    generator: torch.Generator,
) -> Method:
    """Instantiate the method named by `config` for a model's unit layers and optimizer."""
    return METHODS.get(config.name)(config, layers, optimizer, generator)
