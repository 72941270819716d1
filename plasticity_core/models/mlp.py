"""Fully connected network of the Permuted MNIST protocol: 784 -> [256] x 4 -> 10 by default.

Each hidden block is Linear -> optional LayerNorm -> activation. Weights are Kaiming uniform
with the activation's gain (gain 1 for the linear head), biases zero, LayerNorm affine
(1, 0): the same distribution the CBP reset operator resamples from. `hidden` counts units;
an activation with several features per unit (crelu: 2) widens what the next layer reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from plasticity_core.errors import ConfigError
from plasticity_core.models.activations import ACTIVATIONS, Activation
from plasticity_core.models.units import UnitLayer, kaiming_uniform_
from plasticity_core.models.weight_init import WeightInit, kaiming_uniform_init

NORMS = ("none", "layer")


def check_architecture(hidden: Sequence[int], activation: str, norm: str) -> None:
    """Raise ConfigError naming the bad value if the MLP cannot be built."""
    ACTIVATIONS.get(activation)
    if norm not in NORMS:
        raise ConfigError(f"unknown norm {norm!r}; choose from: {', '.join(NORMS)}")
    if not hidden or any(int(w) < 1 for w in hidden):
        raise ConfigError(f"hidden widths must be positive integers, got {list(hidden)}")


class HiddenBlock(nn.Module):
    def __init__(self, n_in: int, n_out: int, activation: Activation, norm: str) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.norm = nn.LayerNorm(n_out) if norm == "layer" else None
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.linear(x)
        if self.norm is not None:
            a = self.norm(a)
        return self.activation.fn(a)


class MLP(nn.Module):
    """x: [batch, n_inputs] -> logits [batch, n_outputs]."""

    def __init__(
        self,
        n_inputs: int = 784,
        hidden: Sequence[int] = (256, 256, 256, 256),
        n_outputs: int = 10,
        activation: str = "relu",
        norm: str = "none",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_architecture(hidden, activation, norm)
        self.act = ACTIVATIONS.get(activation)
        reads = [n_inputs, *(w * self.act.features for w in hidden)]  # each layer's inputs
        self.blocks = nn.ModuleList(
            HiddenBlock(reads[i], hidden[i], self.act, norm) for i in range(len(hidden))
        )
        self.head = nn.Linear(reads[-1], n_outputs)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            for block in self.blocks:
                kaiming_uniform_(block.linear.weight, self.act.gain, generator)
                block.linear.bias.zero_()
                if block.norm is not None:
                    block.norm.reset_parameters()
            kaiming_uniform_(self.head.weight, 1.0, generator)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def unit_layers(self) -> list[UnitLayer]:
        """The resettable hidden layers, input side first."""
        consumers = [b.linear for b in self.blocks[1:]] + [self.head]
        return [
            UnitLayer(f"hidden.{i}", b.linear, b.norm, b, consumer, self.act.gain)
            for i, (b, consumer) in enumerate(zip(self.blocks, consumers, strict=False))
        ]

    def weight_inits(self) -> list[WeightInit]:
        """Every weight matrix with the distribution `reset_parameters` draws it from."""
        hidden = [kaiming_uniform_init(b.linear.weight, self.act.gain) for b in self.blocks]
        return [*hidden, kaiming_uniform_init(self.head.weight, 1.0)]
