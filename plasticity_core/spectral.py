"""Spectral regularisation (Lewandowski et al. 2024, "Learning continually by spectral
regularization", arXiv 2406.06811): keep each layer's largest singular value near 1. The
form below (k = 2; weights only, the bias not concatenated) was written from the paper's
abstract and secondary descriptions, not checked against its text: verify before citing
numbers from it.

    R(theta) = lambda * sum_l (sigma_max(W_l)^k - 1)^2,   k = 2

sigma_max comes from power iteration with persistent vectors (as in spectral normalisation,
Miyato et al. 2018): `power_iterations` rounds per optimizer step, continuing from the last
step's left vector u. With sigma = u^T W v, d sigma / dW = u v^T, so the gradient added is

    g_l += lambda * 2 (sigma^k - 1) * k sigma^(k-1) * u v^T.

Every weight of two or more dimensions is a layer's matrix, the output head included; a conv
kernel [out, in, kh, kw] is taken as the matrix [out, in * kh * kw], the reshape spectral
normalisation uses. Biases and normalisation gains (vectors) carry no penalty.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from plasticity_core.baselines import Backprop

K = 2
"""The exponent k on sigma_max (the paper's choice)."""


def power_iteration(
    w: torch.Tensor, u: torch.Tensor, iterations: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """w: [m, n], u: [m] unit vector -> (u [m], v [n], sigma = u^T w v), after `iterations`
    rounds of v <- w^T u / ||w^T u||, u <- w v / ||w v||."""
    for _ in range(iterations):
        v = F.normalize(w.T @ u, dim=0)
        u = F.normalize(w @ v, dim=0)
    return u, v, u @ (w @ v)


def penalty_slope(sigma: torch.Tensor, strength: float) -> torch.Tensor:
    """d/d sigma of strength * (sigma^K - 1)^2."""
    return strength * 2 * (sigma**K - 1) * K * sigma ** (K - 1)


class SpectralRegularization(Backprop):
    """Adds the penalty's gradient to every weight matrix's gradient before each step.
    State: the persistent left singular vectors (v follows from u in each round)."""

    def __init__(self, params: list[torch.Tensor], strength: float, iterations: int) -> None:
        self.strength = strength
        self.iterations = iterations
        self.index = [i for i, p in enumerate(params) if p.ndim >= 2]
        # Start vectors from a private fixed-seed stream: the network's generator then draws
        # what it draws under bp, so strength 0 is bp bit for bit.
        gen = torch.Generator(params[0].device).manual_seed(0)
        weights = [params[i] for i in self.index]
        self.left = [
            F.normalize(
                torch.randn(w.shape[0], generator=gen, device=w.device, dtype=w.dtype), dim=0
            )
            for w in weights
        ]

    @torch.no_grad()
    def before_step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        if not self.strength:
            return
        for j, i in enumerate(self.index):
            w = params[i].flatten(1)
            u, v, sigma = power_iteration(w, self.left[j], self.iterations)
            self.left[j].copy_(u)
            grads[i].view(w.shape).addr_(u * penalty_slope(sigma, self.strength), v)

    def state_dict(self) -> dict:
        return {"left": [u.clone() for u in self.left]}

    def load_state_dict(self, state: dict) -> None:
        for mine, saved in zip(self.left, state["left"], strict=True):
            mine.copy_(saved)
