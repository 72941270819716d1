"""Utility-based Perturbed Gradient Descent (UPGD; Elsayed & Mahmood 2024, "Addressing loss
of plasticity and catastrophic forgetting in continual learning", ICLR 2024, arXiv
2404.00781): every weight's step and an injected Gaussian perturbation are both gated by one
minus the weight's scaled utility, so useful weights are protected from forgetting and
useless ones are perturbed back into use. The first-order, global-max variant:

    u_t = -g_t * w_t                          first-order utility of each weight
    U_t = beta U_{t-1} + (1 - beta) u_t       the utility trace, U_0 = 0
    eta_t = max of U_t over every weight of the network
    s_t = sigmoid((U_t / (1 - beta^t)) / eta_t)
    w <- (1 - lr kappa) w - 2 lr (g_t + xi_t) (1 - s_t),    xi_t ~ N(0, sigma^2)

beta is `upgd_decay`, sigma `upgd_noise`, kappa `upgd_weight_decay`. Every parameter takes
part (weights and biases; the head included), as in the authors' code. As a method it
replaces the gradients in `before_step` by the direction d = 2 (g + xi) (1 - s) + kappa w,
so plain SGD's w <- w - lr d is the rule above. It therefore runs on `--optimizer sgd` with
momentum 0 only (`check_upgd`): Adam would renormalise the gated direction and momentum
would carry the noise across steps, each a different method (the authors' code keeps an
Adam-based UPGD as an optimizer of its own).

Written from the authors' public code (github mohmdelsayed/upgd): the rule follows the
reference implementation in its README. The paper's own text was not available here (only
its abstract), so the points below were checked against that code, not the paper:
- the factor 2 is the README's (with s = 1/2 at zero utility, such a weight steps as under
  SGD); the code the authors ran their MNIST grids with steps by lr without it, so their
  (alpha, kappa) correspond to `--lr alpha/2 --upgd-weight-decay 2kappa` here;
- eta is the max of the trace without bias correction while the numerator is corrected (as
  in that code), so while 1 - beta^t is small s_t is close to 0 or 1;
- when no utility is positive (eta <= 0, e.g. all zero at the first step) the authors'
  code divides by eta (0/0 = NaN, or flips the ranking for eta < 0); here eta is clamped
  to the smallest positive normal, so zero utility gates by 1/2 and negative utility opens
  the gate fully;
- the defaults (beta 0.9999, sigma 0.1, kappa 0.01) are the configuration the authors'
  scripts name as UPGD's best on input-permuted MNIST (experiments/
  statistics_input_permuted_mnist.py), found with batch size 1 and without the factor 2.
"""

from __future__ import annotations

import math

import torch

from plasticity_core.baselines import Backprop
from plasticity_core.errors import ConfigError


def check_upgd(config) -> None:
    """Raise ConfigError for an out-of-range upgd_* field of a MethodConfig, or for method
    upgd on an optimizer other than plain SGD."""
    if not 0 <= config.upgd_decay < 1:
        raise ConfigError(f"upgd_decay must be in [0, 1), got {config.upgd_decay}")
    for name in ("upgd_noise", "upgd_weight_decay"):
        value = getattr(config, name)
        if not 0 <= value < math.inf:
            raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
    optimizer = getattr(config, "optimizer", "sgd")
    momentum = getattr(config, "momentum", 0.0)
    if config.method == "upgd" and (optimizer != "sgd" or momentum):
        raise ConfigError(
            "method upgd is its own update rule on plain SGD: use --optimizer sgd with "
            f"--momentum 0 (got optimizer {optimizer!r}, momentum {momentum})"
        )


class UtilityPerturbedGD(Backprop):
    """Replaces each step's gradients by UPGD's gated, perturbed direction. State: the
    utility traces U (one per parameter) and the step count t of the bias correction."""

    def __init__(
        self,
        params: list[torch.Tensor],
        decay: float,
        noise: float,
        weight_decay: float,
        generator: torch.Generator,
    ) -> None:
        self.decay = decay
        self.noise = noise
        self.weight_decay = weight_decay
        self.generator = generator
        self.utility = [torch.zeros_like(p) for p in params]
        self.steps = 0
        self._noise = [torch.empty_like(p) for p in params] if noise else []
        self._tiny = torch.finfo(params[0].dtype).tiny

    @torch.no_grad()
    def before_step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        self.steps += 1
        trace = self.utility
        torch._foreach_mul_(trace, self.decay)
        torch._foreach_addcmul_(trace, grads, params, value=-(1 - self.decay))
        # One global scale, kept on the device (no host sync).
        eta = torch.stack(torch._foreach_max(trace)).max().clamp_min(self._tiny)
        # 2 (1 - sigmoid(x)) as 2 sigmoid(-x); dividing by eta before scaling keeps a zero
        # utility at exactly 0 (multiplying by 1 / (bias_correction * tiny) would overflow).
        gate = torch._foreach_div(trace, eta)
        torch._foreach_mul_(gate, -1 / (1 - self.decay**self.steps))
        torch._foreach_sigmoid_(gate)
        torch._foreach_mul_(gate, 2.0)
        if self.noise:
            for xi in self._noise:
                xi.normal_(0, self.noise, generator=self.generator)
            torch._foreach_add_(grads, self._noise)
        torch._foreach_mul_(grads, gate)
        if self.weight_decay:
            torch._foreach_add_(grads, params, alpha=self.weight_decay)

    def state_dict(self) -> dict:
        return {"utility": [u.clone() for u in self.utility], "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        for mine, saved in zip(self.utility, state["utility"], strict=True):
            mine.copy_(saved)
        self.steps = int(state["steps"])
