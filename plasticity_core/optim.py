"""SGD and Adam over explicit gradient lists, with per-slice state reset.

The hand-written MLP step produces gradients as a list aligned with `model.parameters()`,
so these optimizers take that list instead of reading `.grad`. Adam keeps a step count per
element (as in the CBP reference implementation) so that the moments *and* the bias
correction of a reset unit restart together while its neighbours continue.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from plasticity_core.errors import ConfigError
from plasticity_core.registry import Registry

Rate = float | torch.Tensor
"""A hyperparameter: one number, or one per run [R] for the [R, ...] parameters of a pack."""


class Optimizer:
    """Common bookkeeping: parameter lookup and per-slice reset of every state tensor."""

    def __init__(self, params: Sequence[torch.Tensor], lr: Rate) -> None:
        self.params = list(params)
        self.lr = lr
        # A pack's per-run learning rates as -lr views broadcasting over each parameter.
        self._neg_lr = None if isinstance(lr, float | int) else per_run(-lr, self.params)
        self._index = {id(p): i for i, p in enumerate(self.params)}
        self.state: dict[str, list[torch.Tensor]] = {}

    def step(self, grads: Sequence[torch.Tensor]) -> None:
        raise NotImplementedError

    def reset(self, param: torch.Tensor, index: torch.Tensor, dim: int) -> None:
        """Zero every state entry of `param` at positions `index` along `dim`."""
        i = self._index[id(param)]
        for tensors in self.state.values():
            tensors[i].index_fill_(dim, index, 0)

    def scale(self, param: torch.Tensor, factors: torch.Tensor, dim: int) -> None:
        """Multiply every state entry of `param` by `factors` [param.shape[dim]] along `dim`:
        a partial reset (0 forgets a slice, as `reset`; 1 keeps it)."""
        shape = [1] * param.ndim
        shape[dim] = -1
        i = self._index[id(param)]
        for tensors in self.state.values():
            tensors[i].mul_(factors.view(shape))

    def reset_elements(self, param: torch.Tensor, index: torch.Tensor) -> None:
        """Zero every state entry of `param` at the flat positions `index` (single weights)."""
        i = self._index[id(param)]
        for tensors in self.state.values():
            tensors[i].view(-1).index_fill_(0, index, 0)

    def clear(self) -> None:
        """Zero all state (momentum, moments, step counts): a fresh optimizer."""
        for tensors in self.state.values():
            torch._foreach_zero_(tensors)

    def state_dict(self) -> dict[str, list[torch.Tensor]]:
        return {k: [t.clone() for t in v] for k, v in self.state.items()}

    def load_state_dict(self, state: dict[str, list[torch.Tensor]]) -> None:
        for k, tensors in self.state.items():
            for t, saved in zip(tensors, state[k], strict=True):
                t.copy_(saved)


def per_run(values: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """values [R] as views [R, 1, ...] broadcasting over each [R, ...] tensor of `like`."""
    return [values.view(-1, *[1] * (t.ndim - 1)) for t in like]


class SGD(Optimizer):
    """p <- p - lr * m, m <- momentum * m + g (PyTorch's convention; plain SGD if momentum 0)."""

    def __init__(self, params: Sequence[torch.Tensor], lr: Rate, momentum: Rate = 0.0) -> None:
        super().__init__(params, lr)
        self.momentum = momentum
        scalar = isinstance(momentum, float | int)
        self._momenta = momentum if scalar else per_run(momentum, self.params)
        if not scalar or momentum:
            self.state["momentum_buffer"] = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor]) -> None:
        if "momentum_buffer" in self.state:
            bufs = self.state["momentum_buffer"]
            torch._foreach_mul_(bufs, self._momenta)
            torch._foreach_add_(bufs, grads)
            grads = bufs
        self._descend(grads)

    def _descend(self, directions: Sequence[torch.Tensor]) -> None:
        """p <- p - lr * d."""
        if self._neg_lr is None:
            torch._foreach_add_(self.params, directions, alpha=-self.lr)
        else:
            torch._foreach_addcmul_(self.params, directions, self._neg_lr)


class Adam(Optimizer):
    """Adam with elementwise bias corrections 1 - beta^t, kept as state and advanced by
    c <- beta c + (1 - beta) each step: one cheap op where a pow over step counts cost most
    of the update, and a kernel that gives every element the same bits however the
    parameter is laid out (pow's vectorised and scalar paths differ in the last bit, so a
    packed run would drift from its run alone). A reset zeroes c with the moments."""

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        lr: Rate,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params, lr)
        self.beta1, self.beta2 = betas
        self.eps = eps
        for key in ("exp_avg", "exp_avg_sq", "correction1", "correction2"):
            self.state[key] = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor]) -> None:
        state = self.state
        m, v = state["exp_avg"], state["exp_avg_sq"]
        torch._foreach_lerp_(m, grads, 1 - self.beta1)
        torch._foreach_mul_(v, self.beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - self.beta2)
        for key, beta in (("correction1", self.beta1), ("correction2", self.beta2)):
            torch._foreach_mul_(state[key], beta)
            torch._foreach_add_(state[key], 1 - beta)
        for i, (p, m_i, v_i) in enumerate(zip(self.params, m, v, strict=True)):
            denom = (v_i / state["correction2"][i]).sqrt_().add_(self.eps)
            update = m_i / state["correction1"][i]
            if self._neg_lr is None:
                p.addcdiv_(update, denom, value=-self.lr)
            else:
                p.addcmul_(update.div_(denom), self._neg_lr[i])


OPTIMIZERS: Registry[type[Optimizer]] = Registry("optimizer")
OPTIMIZERS.add("sgd", SGD)
OPTIMIZERS.add("adam", Adam)


def make_optimizer(
    name: str, params: Sequence[torch.Tensor], lr: float, momentum: float = 0.0
) -> Optimizer:
    check_optimizer(name, lr, momentum)
    return SGD(params, lr, momentum) if name == "sgd" else OPTIMIZERS.get(name)(params, lr)


def check_optimizer(name: str, lr: float, momentum: float = 0.0) -> None:
    """Raise ConfigError naming the bad value if the optimizer cannot be built."""
    OPTIMIZERS.get(name)
    if not lr > 0:
        raise ConfigError(f"learning rate must be > 0, got {lr}")
    if not 0 <= momentum < 1:
        raise ConfigError(f"momentum must be in [0, 1), got {momentum}")
    if momentum and name != "sgd":
        raise ConfigError(f"momentum applies to sgd only; optimizer {name!r} got {momentum}")
