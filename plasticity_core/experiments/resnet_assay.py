"""The reset-cost assay on a CIFAR ResNet (paper §5.1, Table 3, ResNet-18 column).

Recipe (defaults = the paper's): all classes, 450 training + 50 validation images per class
taken from the training split; SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 90, lr
x0.2 at epochs 60 / 120 / 160, 200 epochs; flip, 4-pixel crop and 0-15 degree rotation
augmentation; checkpoints after epochs 60, 120, 160, 200. At each checkpoint (eval mode),
every utility is computed per channel on a calibration set of training images (reference
r = the calibration mean of h), and each resettable channel is clamped to r on probe images
from the validation split; Spearman and Shock@5% as for the MLP. Every knob can shrink the
recipe (`epochs`, `checkpoints`, `units_per_layer`: an evenly spaced subset of channels per
layer, `probe`, `calibration`) so it runs on a CPU; the full recipe wants a GPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from plasticity_core.autograd_step import AutogradStep
from plasticity_core.data.augment import augment
from plasticity_core.data.catalog import check_source
from plasticity_core.data.cifar import load_images
from plasticity_core.errors import ConfigError
from plasticity_core.experiments.assay_rows import CheckpointResult, assay_rows, to_numpy
from plasticity_core.models.resnet import MODELS, ResNet, build_resnet
from plasticity_core.models.units import forward_hooks
from plasticity_core.optim import SGD
from plasticity_core.shock import clamp_shocks_repeating_input
from plasticity_core.taps import TAPS
from plasticity_core.utility import UTILITIES, UtilityInputs

CHUNK = 128
"""Images per autograd pass on the calibration set."""


@dataclass(frozen=True)
class ResNetAssayConfig:
    model: str = "resnet18"
    data: str = "embedded-mnist"
    """'cifar100' (the data root's), a folder holding cifar-100-python/ (the paper), or
    'embedded-mnist' (a stand-in)."""
    seeds: int = 3
    epochs: int = 200
    checkpoints: tuple[int, ...] = (60, 120, 160, 200)
    """Epochs after which the assay runs."""
    milestones: tuple[int, ...] = (60, 120, 160)
    """Epochs after which the learning rate is multiplied by 0.2."""
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 90
    train_per_class: int = 450
    val_per_class: int = 50
    augment: bool = True
    calibration: int = 1024
    probe: int = 500
    units_per_layer: int = 0
    """0 = every resettable channel; k = k evenly spaced channels per layer."""
    fraction: float = 0.05
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoints", tuple(int(c) for c in self.checkpoints))
        object.__setattr__(self, "milestones", tuple(int(c) for c in self.milestones))
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; choose from: {', '.join(MODELS)}")
        if not self.checkpoints or any(not 1 <= c <= self.epochs for c in self.checkpoints):
            raise ConfigError(f"checkpoints must be epochs in 1..{self.epochs}")
        if min(self.seeds, self.calibration, self.probe, self.batch_size) < 1:
            raise ConfigError("seeds, calibration, probe and batch_size must be >= 1")
        check_source(self.data)


def split_per_class(y: torch.Tensor, train: int, val: int, generator) -> tuple:
    """Indices of up to `train` training and `val` validation images per class."""
    order = torch.randperm(len(y), generator=generator)
    train_idx, val_idx = [], []
    for c in torch.unique(y).tolist():
        members = order[y[order] == c]
        n_val = min(val, len(members) // 10 or 1)
        val_idx.append(members[:n_val])
        train_idx.append(members[n_val : n_val + train])
    return torch.cat(train_idx), torch.cat(val_idx)


def rotate(x: torch.Tensor, generator: torch.Generator, degrees: float = 15.0) -> torch.Tensor:
    """Rotate each image by a random angle in [-degrees, degrees] (bilinear, zero fill)."""
    angle = (torch.rand(len(x), generator=generator, device=x.device) * 2 - 1) * math.radians(
        degrees
    )
    cos, sin = angle.cos(), angle.sin()
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False)


def run(config: ResNetAssayConfig) -> Iterator[CheckpointResult]:
    """Train one network per seed; yields one result per checkpoint epoch."""
    split = load_images(config.data)
    device = torch.device(config.device)
    for seed in range(config.seeds):
        g = torch.Generator().manual_seed(seed)
        train, val = split_per_class(split.y_train, config.train_per_class, config.val_per_class, g)
        x, y = split.x_train[train].to(device), split.y_train[train].to(device)
        x_val = split.x_train[val].to(device)
        model_gen = torch.Generator(device).manual_seed(seed)
        with device:
            model = build_resnet(config.model, len(split.classes), model_gen)
        optimizer = SGD(list(model.parameters()), config.lr, config.momentum)
        step = AutogradStep(model)
        for epoch in range(1, config.epochs + 1):
            optimizer.lr = config.lr * 0.2 ** sum(epoch > m for m in config.milestones)
            model.train()
            order = torch.randperm(len(y), generator=g).to(device)
            for i in range(0, len(y), config.batch_size):
                batch = order[i : i + config.batch_size]
                xb = x[batch]
                if config.augment:
                    xb = rotate(augment(xb, model_gen), model_gen)
                step(xb, y[batch])
                torch._foreach_add_(step.grads, step.params, alpha=config.weight_decay)
                optimizer.step(step.grads)
            if epoch in config.checkpoints:
                chosen = torch.randperm(len(y), generator=g)[: config.calibration]
                chosen = chosen.to(device)
                key = {
                    "activation": "relu", "norm": "batch", "model": config.model, "seed": seed,
                    "checkpoint": epoch, "reference_mode": "calibration",
                }  # fmt: skip
                yield assay(model, x[chosen], y[chosen], x_val[: config.probe], key, config)
        step.close()


def assay(
    model: ResNet, x_cal, y_cal, x_probe, key: dict, config: ResNetAssayConfig
) -> CheckpointResult:
    """Every utility and the realized clamp shock of (a subset of) every resettable channel,
    in eval mode. x_cal/y_cal: calibration images and labels; x_probe: probe images."""
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    layers = model.unit_layers()
    step = AutogradStep(model, frozenset(TAPS), train=False)
    try:
        references = _calibration_means(model, step, x_cal, y_cal)
        totals: dict[str, list[torch.Tensor]] = {n: [0.0] * len(layers) for n in UTILITIES}
        generator = torch.Generator(x_cal.device).manual_seed(int(key["seed"]))
        for i in range(0, len(y_cal), CHUNK):
            xb, yb = x_cal[i : i + CHUNK], y_cal[i : i + CHUNK]
            step(xb, yb)
            weight = len(yb) / len(y_cal)  # every utility is a mean over examples
            for name in UTILITIES:
                fn = UTILITIES.get(name).fn
                for li, (tap, r, u) in enumerate(zip(step.taps, references, layers, strict=True)):
                    inputs = UtilityInputs(tap, r, u.incoming.weight, u.outgoing.weight, generator)
                    totals[name][li] = totals[name][li] + fn(inputs).detach() * weight
    finally:
        step.close()
    picks = [_subset(u.n_units, config.units_per_layer, x_cal.device) for u in layers]
    scores = {n: [to_numpy(t[p]) for t, p in zip(v, picks, strict=True)] for n, v in totals.items()}
    shocks = [
        clamp_shocks_repeating_input(model, u, x_probe, r[p], p)
        for u, r, p in zip(layers, references, picks, strict=True)
    ]
    model.train(was_training)
    l1 = [to_numpy(s[0]) for s in shocks]
    kl = [to_numpy(s[1]) for s in shocks]
    refs = [to_numpy(r[p]) for r, p in zip(references, picks, strict=True)]
    result = assay_rows(key, layers, scores, refs, l1, kl, config.fraction,
                   unit_ids=[p.tolist() for p in picks])  # fmt: skip
    result.seconds = time.perf_counter() - start
    for row in result.summary:
        row.update(calibration=len(y_cal), probe=len(x_probe), seconds=result.seconds)
    return result


@torch.no_grad()
def _calibration_means(model, step, x_cal, y_cal) -> list[torch.Tensor]:
    """r [channels] per layer: the mean of h over calibration images and positions."""
    sums = None
    for i in range(0, len(y_cal), CHUNK):
        seen = []
        hooks = [(u.tap, lambda m, args, h, s=seen: s.append(h)) for u in model.unit_layers()]
        with forward_hooks(hooks):
            model(x_cal[i : i + CHUNK])
        part = [h.sum((0, 2, 3)) for h in seen]
        sums = part if sums is None else [a + b for a, b in zip(sums, part, strict=True)]
    positions = [len(y_cal) * h.shape[2] * h.shape[3] for h in seen]
    return [s / n for s, n in zip(sums, positions, strict=True)]


def _subset(n: int, k: int, device) -> torch.Tensor:
    if k <= 0 or k >= n:
        return torch.arange(n, device=device)
    return torch.from_numpy(np.linspace(0, n - 1, k).round().astype(np.int64)).to(device)
