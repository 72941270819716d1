"""Initial feature regularisation (InFeR; Lyle, Rowland & Dabney 2022, "Understanding and
preventing capacity loss in reinforcement learning", ICLR 2022, section 5).

k auxiliary linear heads g read the penultimate features phi_theta(x) (the input of
`model.head`) and regress what the initial network, features and heads frozen as they were
at step 0, outputs on the same inputs:

    L_aux(theta, g) = beta / (B k) * sum_x sum_i (g_i(phi_theta(x)) - g0_i(phi_theta0(x)))^2

beta = `infer_strength`, k = `infer_heads`, the mean taken over the batch's B examples and
the k heads (the mean squared error the public reimplementation, github.com/timoklein/infer,
uses; a sum over the batch would fold B into beta). Its gradient is added to the task
gradient of every step; the heads g are the method's own parameters, updated by plain SGD
at the run's learning rate (`lr`, whatever the run's optimizer), in the same step.

A scale factor alpha (`infer_scale`) multiplies the initial outputs the heads regress onto:
in the reimplementation the targets are alpha * g0(phi_theta0(x)) and the trainable heads
start at g0. Here the factor is folded into the heads' init instead: they are drawn as alpha times a
head like `model.head` (Kaiming-uniform, gain 1; zero bias), and the targets are what these
initial heads output. The targets are the same; the trainable heads start where the paper's
objective drives them (alpha * g0) rather than learning that factor first, so L_aux is
exactly 0 at step 0 (the network equals its frozen copy) and a larger alpha weighs the
features' drift by alpha^2.

What could not be verified against the paper's text (only its abstract and secondary
descriptions were available here): k, beta and alpha as the paper sets them, the heads'
bias, and mean versus sum. The public reimplementation (DDQN on Pong, Adam lr 1e-4) uses
k = 10 (which it labels the paper's k), a target scale of 175 (which it labels the paper's
beta) and a loss weight of 0.05. The defaults here, k = 10, beta = 0.1, alpha = 10, were
chosen on this project's protocols instead: stable under plain SGD at their learning rates
(alpha = 100 diverges on the MLP at lr 0.01), and strong enough to keep the initial outputs
readable from the features (tests/core/test_infer.py), at some cost in early accuracy.

The heads draw from the run's generator right after the network's init, so a later draw
from it (`--head-reset-every`) is not the one bp would make; strength 0 is bp bit for bit
where nothing draws from it after the init.

Cost: one InFeR step is the task step plus a forward with autograd and its backward (the
hand-written MLP step computes its gradients without a graph, so the auxiliary gradient
needs its own pass) and a no-grad forward of the initial parameters: up to ~3x a bp step.
Both forwards go through `torch.func.functional_call` with copies of the model's buffers,
so a BatchNorm's running statistics see only the task step's batch, as under bp.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.func import functional_call

from plasticity_core.baselines import Backprop
from plasticity_core.errors import ConfigError
from plasticity_core.models.units import kaiming_uniform_


def check_infer(strength: float, heads: int, scale: float) -> None:
    """Raise ConfigError naming the first bad InFeR hyperparameter."""
    if not 0 <= strength < math.inf:
        raise ConfigError(f"infer_strength must be a finite number >= 0, got {strength}")
    if heads < 1:
        raise ConfigError(f"infer_heads must be >= 1, got {heads}")
    if not 0 < scale < math.inf:
        raise ConfigError(f"infer_scale must be a finite number > 0, got {scale}")


class InitialFeatureRegularization(Backprop):
    """Adds d L_aux / d theta to the gradients before each step and moves the auxiliary
    heads by SGD. State: the heads (weight [k, features], bias [k]), the initial heads and
    the initial parameters (aligned with `model.parameters()`)."""

    def __init__(
        self, strength: float, heads: int, scale: float, lr: float, generator: torch.Generator
    ) -> None:
        self.strength = strength
        self.k = heads
        self.scale = scale
        self.lr = lr
        self.generator = generator
        self._seen: list[torch.Tensor] | None = None  # a list only while a forward runs

    def bind(self, step) -> None:
        """Take the step's model and batch; draw the heads and copy the initial network."""
        self.step = step
        self.model = step.model
        self.names = [name for name, _ in self.model.named_parameters()]
        head = self.model.head
        self.weight = torch.empty(self.k, head.in_features, device=head.weight.device,
                                  dtype=head.weight.dtype)  # fmt: skip
        kaiming_uniform_(self.weight, self.scale, self.generator)
        self.bias = torch.zeros_like(self.weight[:, 0])
        self.initial_weight, self.initial_bias = self.weight.clone(), self.bias.clone()
        self.initial = [p.detach().clone() for p in self.model.parameters()]
        # The hook outlives any one step: it records the head's input only inside `features`.
        head.register_forward_hook(self._record)

    def _record(self, module, inputs: tuple, output: torch.Tensor) -> None:
        if self._seen is not None:
            self._seen.append(inputs[0])

    def features(self, params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """phi(x) [B, features] of the model with `params` (aligned with its parameters),
        on copies of its buffers (BatchNorm statistics stay untouched)."""
        tensors = {name: b.clone() for name, b in self.model.named_buffers()}
        tensors.update(zip(self.names, params, strict=True))
        self._seen = []
        try:
            functional_call(self.model, tensors, (x,))
            return self._seen[0]
        finally:
            self._seen = None

    def loss(self, params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """L_aux (a 0-d tensor, with its graph to `params`) for the current heads."""
        with torch.no_grad():
            target = torch.addmm(self.initial_bias, self.features(self.initial, x),
                                 self.initial_weight.T)  # fmt: skip
        with torch.enable_grad():
            out = torch.addmm(self.bias, self.features(params, x), self.weight.T)
            return self.strength * (out - target).square().mean()

    def before_step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        if not self.strength:
            return
        self.weight.requires_grad_()
        self.bias.requires_grad_()
        try:
            loss = self.loss(params, self.step.batch[0])
            leaves = [*params, self.weight, self.bias]
            found = torch.autograd.grad(loss, leaves, allow_unused=True)
        finally:
            self.weight.requires_grad_(False)
            self.bias.requires_grad_(False)
        with torch.no_grad():
            for buffer, g in zip(grads, found[: len(params)], strict=True):
                if g is not None:  # the output head does not shape phi
                    buffer.add_(g)
            self.weight.sub_(found[-2], alpha=self.lr)
            self.bias.sub_(found[-1], alpha=self.lr)

    def state_dict(self) -> dict:
        return {
            "heads": [self.weight.clone(), self.bias.clone()],
            "initial_heads": [self.initial_weight.clone(), self.initial_bias.clone()],
            "initial": [p.clone() for p in self.initial],
        }

    def load_state_dict(self, state: dict) -> None:
        mine = [self.weight, self.bias, self.initial_weight, self.initial_bias, *self.initial]
        saved = [*state["heads"], *state["initial_heads"], *state["initial"]]
        for t, s in zip(mine, saved, strict=True):
            t.copy_(s)
