"""R MLPs of one architecture as one module with a leading run axis.

`PackedMLP(models)` stacks the runs' parameters into [R, ...] tensors and then makes every
run's own parameters *views* of its slice: an update of the pack is an update of each run's
model and back. So everything written for one run keeps working on a packed run unchanged:
its reset operator (`reset.reset_units` on its `unit_layers()`), its head reset, its
evaluation and diagnostics, its `state_dict()`. Only the per-step hot path (the step, the
optimizer update, CBP's statistics) runs on the stacked tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from plasticity_core.models.mlp import MLP


class PackedLinear(nn.Module):
    """weight [R, out, in], bias [R, out]."""

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.weight = _stack([layer.weight for layer in layers])
        self.bias = _stack([layer.bias for layer in layers])
        self.out_features = layers[0].out_features


class PackedLayerNorm(nn.Module):
    """weight, bias [R, units]; the normalisation itself is the runs' shared kernel."""

    def __init__(self, norms: Sequence[nn.LayerNorm]) -> None:
        super().__init__()
        self.weight = _stack([norm.weight for norm in norms])
        self.bias = _stack([norm.bias for norm in norms])
        self.normalized_shape = norms[0].normalized_shape
        self.eps = norms[0].eps


class PackedBlock(nn.Module):
    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.linear = PackedLinear([b.linear for b in blocks])
        self.norm = None if blocks[0].norm is None else PackedLayerNorm([b.norm for b in blocks])


class PackedMLP(nn.Module):
    """The runs' MLPs (same widths, activation and norm) as [R, ...] parameters, in the order
    of `MLP.parameters()`; each run's parameters become views of the pack."""

    def __init__(self, models: Sequence[MLP]) -> None:
        super().__init__()
        first = models[0]
        shapes = [tuple(p.shape) for p in first.parameters()]
        for model in models:
            if [tuple(p.shape) for p in model.parameters()] != shapes or model.act != first.act:
                raise ValueError("runs of a pack need one architecture")
        self.runs = len(models)
        self.act = first.act
        self.blocks = nn.ModuleList(PackedBlock([m.blocks[i] for m in models])
                                    for i in range(len(first.blocks)))  # fmt: skip
        self.head = PackedLinear([m.head for m in models])
        for r, model in enumerate(models):
            for own, packed in zip(model.parameters(), self.parameters(), strict=True):
                own.data = packed.data[r]


def _stack(params: Sequence[torch.Tensor]) -> nn.Parameter:
    return nn.Parameter(torch.stack([p.detach() for p in params]), requires_grad=False)
