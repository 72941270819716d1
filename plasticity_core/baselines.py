"""The simplest methods: plain backprop, L2 toward zero or the initial weights, and shrink and
perturb. Each only changes gradients before, or parameters after, an optimizer step."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from plasticity_core.taps import LayerTaps


class Backprop:
    """Plain backpropagation: no intervention."""

    needs: frozenset[str] = frozenset()

    def before_step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        pass

    def after_step(self, taps: Sequence[LayerTaps]) -> int:
        return 0

    def reset_counts(self) -> list[int]:
        return []

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


class L2Init(Backprop):
    """Regenerative regularisation toward the initial parameters (Kumar et al. 2023):
    g <- g + lambda * (w - w_0)."""

    def __init__(self, params: list[torch.Tensor], coefficient: float) -> None:
        self.coefficient = coefficient
        self.initial = [p.detach().clone() for p in params]

    @torch.no_grad()
    def before_step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        if self.coefficient:
            torch._foreach_add_(grads, params, alpha=self.coefficient)
            torch._foreach_add_(grads, self.initial, alpha=-self.coefficient)

    def state_dict(self) -> dict:
        return {"initial": [t.clone() for t in self.initial]}

    def load_state_dict(self, state: dict) -> None:
        for t, saved in zip(self.initial, state["initial"], strict=True):
            t.copy_(saved)


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
