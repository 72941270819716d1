"""The reset operator: replace units of a `UnitLayer` with fresh ones.

`reset_units` is the one reset operator for every model and method: it works on a
`UnitLayer`, so linear and conv units share it, and CBP (reference = the unit's activation
EMA), ReDo / ReGraMa (reference 0) and head resets all call it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from plasticity_core.models.units import UnitLayer
from plasticity_core.optim import Optimizer
from plasticity_core.utility import Utility


class UnitResetMethod:
    """What every utility-driven reset method holds: the layers whose units it resets, the
    utility that ranks them, the optimizer whose state a reset clears and the generator
    new weights are drawn from. Such methods leave the gradient step alone."""

    def __init__(
        self,
        layers: Sequence[UnitLayer],
        utility: Utility,
        optimizer: Optimizer | None,
        generator: torch.Generator | None,
    ) -> None:
        self.layers = list(layers)
        self.utility = utility
        self.needs = utility.needs
        self.optimizer = optimizer
        self.generator = generator

    def before_step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        pass


@torch.no_grad()
def reset_units(
    layer: UnitLayer,
    index: torch.Tensor,
    reference: torch.Tensor,
    optimizer: Optimizer | None,
    generator: torch.Generator | None,
    compensate: bool = True,
) -> None:
    """Replace units `index` [k] of `layer`, moving `reference` into the consumer's bias
    (unless `compensate` is False: then the consumer's bias is left as it is).

    Incoming weights are resampled from the init distribution, the unit's bias is zeroed and
    its norm affine set to (1, 0); outgoing weights are zeroed after adding
    w_out[:, c] * r_c to the consumer bias for every feature c of the units, so the consumer
    sees h_c replaced by r_c. `reference` is [k] for one feature per unit, [k, features]
    for several (crelu: each feature's own reference; a [k] reference then applies to every
    feature of its unit, as ReDo's zeros do). Optimizer state is zeroed for exactly the
    touched rows and columns; the consumer's bias keeps its state (it is shifted, not
    re-initialised), as in the reference implementation.
    """
    w_in = layer.incoming.weight
    w_in.index_copy_(0, index, layer.sample(len(index), generator))
    touched = [(w_in, 0, index)]
    if layer.incoming.bias is not None:
        layer.incoming.bias.index_fill_(0, index, 0)
        touched.append((layer.incoming.bias, 0, index))
    norm = layer.norm
    if norm is not None:
        norm.weight.index_fill_(0, index, 1)
        norm.bias.index_fill_(0, index, 0)
        touched += [(norm.weight, 0, index), (norm.bias, 0, index)]
        if getattr(norm, "running_mean", None) is not None:  # BatchNorm: a fresh channel
            norm.running_mean.index_fill_(0, index, 0)
            norm.running_var.index_fill_(0, index, 1)

    features = layer.features
    columns = feature_columns(index, features)
    if compensate:
        shift_consumer(layer, columns, per_column(reference, features))
    w_out = layer.outgoing.weight
    w_out.index_fill_(1, columns, 0)
    touched.append((w_out, 1, columns))
    if optimizer is not None:
        for param, dim, positions in touched:
            optimizer.reset(param, positions, dim)


def feature_columns(index: torch.Tensor, features: int) -> torch.Tensor:
    """The consumer columns of units `index` [k]: [k * features], unit by unit (`index`
    itself for one feature per unit)."""
    if features == 1:
        return index
    within = torch.arange(features, device=index.device)
    return (index.unsqueeze(1) * features + within).flatten()


def per_column(values: torch.Tensor, features: int) -> torch.Tensor:
    """Per-unit values [k] (one for every feature of the unit) or per-feature values
    [k, features] as one value per consumer column [k * features], unit by unit."""
    if features == 1:
        return values.reshape(-1)
    units = values.shape[0]
    return values.reshape(units, -1).expand(units, features).reshape(-1)


def shift_consumer(layer: UnitLayer, columns: torch.Tensor, values: torch.Tensor) -> None:
    """Add sum_c w_out[:, c] * values_c over the consumer columns `columns` to what the
    consumer adds to its input: the compensation that lets it see those inputs replaced by
    `values` (a full reset's references; a partial reset's moved share of them, `ccbp`)."""
    weights = layer.outgoing.weight.index_select(1, columns)  # [out, columns, *kernel]
    # A conv consumer reads the unit at every kernel tap: the kernel sum of its weights times
    # r is what the unit added at interior positions (zero padding reads fewer taps at the
    # border, so there the compensation is only approximate).
    shift = weights.reshape(*weights.shape[:2], -1).sum(2) @ values
    if layer.outgoing.bias is not None:
        layer.outgoing.bias.add_(shift)
    elif layer.consumer_norm is not None:
        # conv -> BatchNorm: in eval mode BN subtracts the running mean, so lowering it by the
        # shift is adding the shift before the norm; in train mode batch statistics remove
        # any constant offset by themselves.
        layer.consumer_norm.running_mean.sub_(shift)
