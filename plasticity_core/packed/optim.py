"""One optimizer over a pack's [R, ...] parameters whose state each run's own optimizer
then views, so a run's per-unit state resets (`Optimizer.reset`) and its task-boundary
clear (`Optimizer.clear`) act on the pack."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from plasticity_core.optim import OPTIMIZERS, SGD, Optimizer, Rate


def pack_optimizer(
    name: str,
    params: Sequence[torch.Tensor],
    runs: Sequence[Optimizer],
    lrs: Sequence[float],
    momenta: Sequence[float],
) -> Optimizer:
    """The pack's optimizer, its state stacked from the runs' (a resumed run keeps its
    moments); equal hyperparameters stay plain numbers, so the update is the one-run op."""
    p0 = params[0]
    lr, momentum = _rate(lrs, p0), _rate(momenta, p0)
    packed = SGD(params, lr, momentum) if name == "sgd" else OPTIMIZERS.get(name)(params, lr)
    for key, tensors in packed.state.items():
        for j, stacked in enumerate(tensors):
            for r, run in enumerate(runs):
                own = run.state.get(key)
                if own is not None:  # sgd without momentum keeps no buffer
                    stacked[r].copy_(own[j])
                    own[j] = stacked[r]
    return packed


def _rate(values: Sequence[float], like: torch.Tensor) -> Rate:
    if all(v == values[0] for v in values):
        return values[0]
    return torch.tensor(values, device=like.device, dtype=like.dtype)
