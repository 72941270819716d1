"""Plasticity diagnostics: why a network stays trainable, with one definition each.

Three definitions of a "dormant" unit are in common use, so every function states its
formula and source. `DEFINITIONS_VERSION` is stored in each row: bump it when a definition
changes, so numbers from different versions are never mixed silently.

All take features `h` [examples, units] of one hidden layer (post-activation) unless said.
With several features per unit (crelu: h [examples, units * 2], unit i at 2i and 2i + 1)
the per-unit definitions (dormant, dead) take `features` and count units, a unit's activity
being the sum of its features'; the ranks and the feature norm describe the features the
next layer reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from plasticity_core.models.units import forward_hooks

DEFINITIONS_VERSION = "1"
SRANK_DELTA = 0.01


def unit_scores(h: torch.Tensor, features: int = 1) -> torch.Tensor:
    """Sokar et al. 2023 score s_i = mean_x |h_i(x)| / ((1/n) sum_k mean_x |h_k(x)|): [units]
    (|h_i| summed over the unit's `features`).

    A layer whose units are all silent gets s = 0 everywhere."""
    activity = h.abs().mean(0)
    if features > 1:
        activity = activity.view(-1, features).sum(-1)
    layer_mean = activity.mean()
    return activity / layer_mean if layer_mean > 0 else torch.zeros_like(activity)


def dormant_fraction(h: torch.Tensor, tau: float = 0.025, features: int = 1) -> float:
    """Fraction in [0, 1] of tau-dormant units (Sokar et al. 2023): s_i <= tau.

    With tau = 0 only units whose activity is exactly zero count."""
    return float((unit_scores(h, features) <= tau).double().mean())


def dead_fraction(h: torch.Tensor, features: int = 1) -> float:
    """Fraction in [0, 1] of units whose activation is zero on every example, every feature
    of the unit (Dohare et al. 2024; meaningful for the ReLU family)."""
    dead = (h == 0).all(0)
    if features > 1:
        dead = dead.view(-1, features).all(-1)
    return float(dead.double().mean())


def singular_values(h: torch.Tensor) -> torch.Tensor:
    """Singular values of h [examples, units], descending, via the float64 Gram matrix
    (eigenvalues of h^T h are sigma^2): much cheaper than an SVD when examples >> units."""
    h = h.double()
    gram = h.T @ h if h.shape[0] >= h.shape[1] else h @ h.T
    eigenvalues = torch.linalg.eigvalsh(gram).clamp_min(0).flip(0)
    return eigenvalues.sqrt()


def effective_rank(sigma: torch.Tensor) -> float:
    """Roy & Vetterli 2007: exp(-sum_k p_k log p_k), p_k = sigma_k / sum_j sigma_j.

    In [1, number of units]; 0 for an all-zero matrix."""
    total = sigma.sum()
    if total <= 0:
        return 0.0
    p = sigma / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def stable_rank(sigma: torch.Tensor, delta: float = SRANK_DELTA) -> int:
    """Kumar et al. 2021 srank_delta: the smallest k with sum_{i<=k} sigma_i >= (1 - delta)
    sum_i sigma_i (sigma descending); 0 for an all-zero matrix."""
    total = sigma.sum()
    if total <= 0:
        return 0
    cumulative = torch.cumsum(sigma, 0) / total
    return int((cumulative < 1 - delta - 1e-12).sum()) + 1


def feature_norm(h: torch.Tensor) -> float:
    """Mean over examples of the L2 norm of the feature vector ||h(x)||_2."""
    return float(h.norm(dim=1).mean())


def weight_magnitude(weights: list[torch.Tensor]) -> tuple[list[float], float]:
    """Mean |w| of each weight tensor, and of all their entries pooled."""
    per_layer = [float(w.abs().mean()) for w in weights]
    total = sum(float(w.abs().sum()) for w in weights)
    return per_layer, total / sum(w.numel() for w in weights)


def layer_diagnostics(
    features: list[torch.Tensor], tau: float, per_unit: Sequence[int] | None = None
) -> dict[str, float]:
    """The per-layer feature diagnostics as columns `<name>_l<i>` plus a mean `<name>`;
    `per_unit`: each layer's features per unit (None: one)."""
    columns: dict[str, list[float]] = {
        "dormant_fraction": [],
        "dormant_fraction_tau0": [],
        "dead_fraction": [],
        "effective_rank": [],
        "stable_rank": [],
        "feature_norm": [],
    }
    for h, f in zip(features, per_unit or [1] * len(features), strict=True):
        sigma = singular_values(h)
        columns["dormant_fraction"].append(dormant_fraction(h, tau, f))
        columns["dormant_fraction_tau0"].append(dormant_fraction(h, 0.0, f))
        columns["dead_fraction"].append(dead_fraction(h, f))
        columns["effective_rank"].append(effective_rank(sigma))
        columns["stable_rank"].append(float(stable_rank(sigma)))
        columns["feature_norm"].append(feature_norm(h))
    row: dict[str, float] = {}
    for name, values in columns.items():
        row[name] = math.fsum(values) / len(values)
        row.update({f"{name}_l{i}": v for i, v in enumerate(values)})
    return row


DIAGNOSTICS = {
    "dormant_fraction": "share of units with s_i <= tau (Sokar et al. 2023; tau=0.025)",
    "dormant_fraction_tau0": "share of units with zero activity (tau = 0)",
    "dead_fraction": "share of units zero on every probe example (Dohare et al. 2024)",
    "effective_rank": "exp entropy of normalised singular values (Roy & Vetterli 2007)",
    "stable_rank": "srank, delta=0.01 (Kumar et al. 2021)",
    "feature_norm": "mean ||h(x)||_2 over probe examples",
    "weight_magnitude": "mean |w| over all weights (and per layer)",
    "grad_norm": "mean global gradient L2 norm over the task's steps",
    "mean_age": "CBP: mean age of hidden units in steps (and per layer)",
    "resets_l<i>": "CBP and reset methods: units reset in layer i during the task",
}
"""Name -> one-line definition; `plasticity list diagnostics` prints this."""


@torch.no_grad()
def network_diagnostics(model: torch.nn.Module, x: torch.Tensor, tau: float) -> dict[str, float]:
    """Feature and weight diagnostics of `model` on probe inputs x [examples, ...].

    Features are read at each resettable layer's tap (any model with `unit_layers()`);
    weights are every parameter with more than one axis, in registration order."""
    features: list[torch.Tensor] = []

    def record(module, inputs, h):
        features.append(h.flatten(1))

    layers = model.unit_layers()
    with forward_hooks((layer.tap, record) for layer in layers):
        model(x)
    row = layer_diagnostics(features, tau, [layer.features for layer in layers])
    weights = [p for p in model.parameters() if p.ndim > 1]
    per_layer, overall = weight_magnitude(weights)
    row["weight_magnitude"] = overall
    row.update({f"weight_magnitude_l{i}": v for i, v in enumerate(per_layer)})
    return row
