"""CIFAR residual networks whose resettable units are named: ResNet-18 and an 8-layer ResNet.

Both are stacks of BasicBlocks (He et al. 2016): conv3x3 -> BN -> ReLU -> conv3x3 -> BN,
plus the identity (or a 1x1 conv + BN where the shape changes), then ReLU.

Resettable units: the output channels of each block's FIRST conv. Such a channel, after its
BatchNorm and ReLU (h), is read by exactly one module, the block's second conv, so the reset
operator can zero its outgoing slice and compensate it exactly (in the second conv's
BatchNorm running mean). Every other channel is shared: the stem's and each block's output
channels enter the residual sum and are read by the next block's first conv *and* its
shortcut (and, after the last block, the head), so zeroing one consumer would leave the
others reading a changed unit — they are not resettable here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from plasticity_core.errors import ConfigError
from plasticity_core.models.units import UnitLayer, kaiming_normal_std, kaiming_uniform_
from plasticity_core.models.weight_init import WeightInit, kaiming_normal_init, kaiming_uniform_init

RELU_GAIN = math.sqrt(2.0)


class BasicBlock(nn.Module):
    """x [B, c_in, H, W] -> [B, c_out, H / stride, W / stride]."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = nn.ReLU()  # its output is the units' h: hooks tap or clamp it here
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))

    def unit_layer(self, name: str) -> UnitLayer:
        return UnitLayer(
            name, self.conv1, self.bn1, self.act1, self.conv2, RELU_GAIN,
            consumer_norm=self.bn2, init="kaiming_normal",
        )  # fmt: skip


class ResNet(nn.Module):
    """x [B, in_channels, 32, 32] -> logits [B, n_classes].

    stem: conv3x3(in_channels -> stem) + BN + ReLU; stages: (channels, blocks, stride);
    global average pool; linear head.
    """

    def __init__(
        self,
        stages: Sequence[tuple[int, int, int]],
        n_classes: int,
        stem: int,
        in_channels: int = 3,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(stem)
        blocks, c_in = [], stem
        for channels, count, stride in stages:
            for i in range(count):
                blocks.append(BasicBlock(c_in, channels, stride if i == 0 else 1))
                c_in = channels
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(c_in, n_classes)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Kaiming-normal (fan-out) convs, BatchNorm (1, 0) with fresh statistics, and a
        Kaiming-uniform head with zero bias."""
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    std = kaiming_normal_std(module.weight, RELU_GAIN)
                    module.weight.normal_(0.0, std, generator=generator)
                elif isinstance(module, nn.BatchNorm2d):
                    module.reset_parameters()
            kaiming_uniform_(self.head.weight, 1.0, generator)
            self.head.bias.zero_()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> pooled features [B, channels of the last stage]."""
        x = F.relu(self.stem_bn(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return x.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def unit_layers(self) -> list[UnitLayer]:
        return [block.unit_layer(f"blocks.{i}.conv1") for i, block in enumerate(self.blocks)]

    def weight_inits(self) -> list[WeightInit]:
        """Every weight matrix (convs, head) with the distribution `reset_parameters` draws it
        from."""
        convs = [m.weight for m in self.modules() if isinstance(m, nn.Conv2d)]
        return [*(kaiming_normal_init(w, RELU_GAIN) for w in convs),
                kaiming_uniform_init(self.head.weight, 1.0)]  # fmt: skip


def resnet18(
    n_classes: int = 100, in_channels: int = 3, generator: torch.Generator | None = None
) -> ResNet:
    """CIFAR ResNet-18: 3x3 stem with 64 channels, 4 stages of 2 BasicBlocks with
    [64, 128, 256, 512] channels (strides 1, 2, 2, 2), global pool, linear head; 1,920
    resettable channels (each block's first conv)."""
    stages = [(64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)]
    return ResNet(stages, n_classes, 64, in_channels, generator)


def resnet8(
    n_classes: int = 2, in_channels: int = 3, generator: torch.Generator | None = None
) -> ResNet:
    """The 8-layer ResNet of Continuous CIFAR-100: a 3x3 stem conv (16 channels), three
    stages of one BasicBlock each with [16, 32, 64] channels (strides 1, 2, 2; two convs per
    block), global pool, linear head to `n_classes`: 1 + 6 + 1 = 8 weight layers (plus two
    1x1 shortcut convs), 112 resettable channels."""
    return ResNet([(16, 1, 1), (32, 1, 2), (64, 1, 2)], n_classes, 16, in_channels, generator)


MODELS = {"resnet8": resnet8, "resnet18": resnet18}


def build_resnet(name: str, n_classes: int, generator: torch.Generator | None = None) -> ResNet:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from: {', '.join(MODELS)}")
    return MODELS[name](n_classes, generator=generator)
