"""Reset shock: what clamping one unit to its reference does to the output (paper §5.1).

A unit i is clamped, h_i(x) <- r_i, with every parameter unchanged; for a network without
normalisation this is exactly what the CBP reset does to the function (`reset.reset_units`).
A unit with several post-activation features (crelu) has them all clamped, each to its own
reference, as its reset replaces them all.
The realized shock on probe inputs is the mean logit L1 distance ||z - z[i->r_i]||_1 and the
mean KL(softmax z || softmax z[i->r_i]).

Clamps are batched: a forward hook on the layer's tap repeats its output once per clamped
unit ([units, batch, ...] flattened into the batch axis) and overwrites one unit per copy,
so one forward measures a whole chunk of units. This needs every module downstream of the
tap to see the units only through the tap (true for MLPs). In a residual network the
shortcut also reads the block's input, so `clamp_shocks_repeating_input` repeats the probe
inputs instead (the whole forward per copy; exact for any model in eval mode).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from plasticity_core.models.units import UnitLayer, forward_hooks

CHUNK_ELEMENTS = 1 << 24
"""Upper bound on elements of one repeated activation tensor (64 MiB of float32)."""


@torch.no_grad()
def clamp_shocks(
    model: nn.Module, layer: UnitLayer, x: torch.Tensor, reference: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Realized shocks of clamping each unit of `layer`, one at a time, to `reference`.

    x: probe inputs [batch, ...]; reference: r [units], or per feature [units, features]
    (or flat [units * features], the tap's layout) for several features per unit.
    Returns (l1 [units], kl [units]): mean over the probe of ||z - z'||_1 and of
    KL(softmax z || softmax z'), in logit units and nats.
    """
    seen: list[torch.Tensor] = []
    with forward_hooks([(layer.tap, lambda module, inputs, h: seen.append(h))]):
        z = model(x)
    logp = F.log_softmax(z, dim=1)
    n_units, batch, features = layer.n_units, x.shape[0], layer.features
    if features > 1:
        reference = reference.reshape(n_units, features)
    chunk = max(1, min(n_units, CHUNK_ELEMENTS // seen[0].numel()))
    l1 = torch.empty(n_units, device=z.device, dtype=z.dtype)
    kl = torch.empty_like(l1)
    for start in range(0, n_units, chunk):
        units = torch.arange(start, min(start + chunk, n_units), device=z.device)
        with forward_hooks([(layer.tap, _clamp_hook(units, reference[units], features))]):
            clamped = model(x).view(len(units), batch, -1)
        l1[units], kl[units] = output_shocks(clamped, z, logp)
    return l1, kl


def output_shocks(clamped: torch.Tensor, z: torch.Tensor, logp: torch.Tensor):
    """Mean logit-L1 and KL shocks of clamped logits [units, batch, classes] vs z [batch,
    classes] (logp = log_softmax(z)): ([units], [units])."""
    l1 = (clamped - z).abs().sum(-1).mean(-1)
    kl = (logp.exp() * (logp - F.log_softmax(clamped, dim=-1))).sum(-1).mean(-1)
    return l1, kl


def _clamp_copies(
    copies: torch.Tensor, units: torch.Tensor, values: torch.Tensor, features: int = 1
) -> None:
    """In copies [units, batch, unit axis, ...], set unit units[j] of copy j to values[j]
    ([k], or [k, features] for copies [units, batch, units * features]: every feature)."""
    if features > 1:
        copies = copies.view(*copies.shape[:2], -1, features)  # a view: written in place
        values = values.view(len(units), 1, features)  # broadcast over batch
    else:
        values = values.view(len(units), *([1] * (copies.ndim - 2)))  # over batch and space
    copies[torch.arange(len(units)), :, units] = values.to(copies.dtype)


def _clamp_hook(units: torch.Tensor, values: torch.Tensor, features: int):
    """Forward hook: repeat h [batch, units, ...] once per unit in `units`, clamping it."""

    def hook(module: nn.Module, inputs: tuple, h: torch.Tensor) -> torch.Tensor:
        repeated = h.unsqueeze(0).repeat(len(units), *([1] * h.ndim))
        _clamp_copies(repeated, units, values, features)
        return repeated.flatten(0, 1)

    return hook


@torch.no_grad()
def clamp_shocks_repeating_input(
    model: nn.Module,
    layer: UnitLayer,
    x: torch.Tensor,
    reference: torch.Tensor,
    units: torch.Tensor,
    max_batch: int = 512,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like `clamp_shocks` for the units `units` [k] of `layer` (reference [k], or
    [k, features]), for models whose later modules also read what the tap's layer read
    (residual shortcuts): the probe x [P, ...] is repeated once per unit of a chunk (at most
    `max_batch` images per forward) and the tap's hook clamps unit j in copy j.
    Returns (l1 [k], kl [k])."""
    z = model(x)
    logp = F.log_softmax(z, dim=1)
    batch = x.shape[0]
    chunk = max(1, max_batch // batch)
    l1 = torch.empty(len(units), device=z.device, dtype=z.dtype)
    kl = torch.empty_like(l1)
    for start in range(0, len(units), chunk):
        part = torch.arange(start, min(start + chunk, len(units)), device=z.device)
        chosen, values = units[part], reference[part]

        def hook(module, inputs, h, chosen=chosen, values=values):
            copies = h.clone().view(len(chosen), batch, *h.shape[1:])
            _clamp_copies(copies, chosen, values, layer.features)
            return copies.flatten(0, 1)

        with forward_hooks([(layer.tap, hook)]):
            repeated = x.unsqueeze(0).expand(len(part), *x.shape).flatten(0, 1)
            clamped = model(repeated).view(len(part), batch, -1)
        l1[part], kl[part] = output_shocks(clamped, z, logp)
    return l1, kl


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Tie-aware Spearman rank correlation (average ranks); nan if either side is constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(stats.spearmanr(a, b).statistic)


def bottom_fraction(scores: np.ndarray, fraction: float = 0.05) -> np.ndarray:
    """Indices of the ceil(fraction * n) lowest scores (at least one), lowest first.

    Ties break by unit index (a stable sort), so the selection is reproducible.
    """
    k = max(1, math.ceil(fraction * len(scores) - 1e-9))
    return np.argsort(scores, kind="stable")[:k]


def shock_at(scores: list[np.ndarray], shocks: list[np.ndarray], fraction: float = 0.05) -> float:
    """Shock@fraction: mean realized shock over each layer's bottom `fraction` by score.

    scores, shocks: one array [units] per layer; the selected units of all layers are
    pooled, so layers of equal width weigh equally.
    """
    chosen = [s[bottom_fraction(u, fraction)] for u, s in zip(scores, shocks, strict=True)]
    return float(np.concatenate(chosen).mean())
