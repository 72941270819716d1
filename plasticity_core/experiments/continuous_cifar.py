"""Continuous CIFAR-100 (paper §5.3, Appendix A.4), as a recipe.

A sequence of binary tasks: task t trains on two classes drawn from `pair_seed` (the same
sequence for every method; classes recur across tasks). At each task boundary the 2-unit
head is zeroed and the whole optimizer state cleared; the feature extractor carries over.
The network trains `epochs_per_task` epochs on the pair's training images (shuffled, one
optimizer step per minibatch, the method's hooks around it; optional batched on-device
augmentation: random crop with 4-pixel zero padding and horizontal flip), then is tested in
eval mode on the pair's test images. One row per task, in the Permuted MNIST schema plus
`class_a`, `class_b`.

    for row in ContinuousCIFAR(ContinuousCIFARConfig(tasks=10, epochs_per_task=1)):
        print(row["task"], row["classes"], row["accuracy"])

`data="embedded-mnist"` runs the same protocol on the embedded MNIST digits (pairs out of
10, padded to 32x32) — a stand-in that runs anywhere, not CIFAR.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from plasticity_core.autograd_step import AutogradStep
from plasticity_core.data.cifar import load_images
from plasticity_core.errors import ConfigError, TrainingDiverged
from plasticity_core.experiments import state as experiment_state
from plasticity_core.methods import MethodConfig, build_method
from plasticity_core.models.resnet import MODELS, build_resnet
from plasticity_core.optim import check_optimizer, make_optimizer
from plasticity_core.provenance import code_version, config_hash

NAME = "continuous-cifar100"
EVAL_CHUNK = 500
_METHOD = MethodConfig()


@dataclass(frozen=True)
class ContinuousCIFARConfig:
    tasks: int = 500
    """Binary tasks (paper: 500)."""
    seed: int = 0
    """Seeds the network init, resets, example order and augmentation."""
    pair_seed: int = 0
    """Seeds the sequence of class pairs; keep it equal across methods."""
    data: str = "embedded-mnist"
    """A folder holding cifar-100-python/, or 'embedded-mnist' (a stand-in)."""
    model: str = "resnet8"
    epochs_per_task: int = 200
    """Epochs on each task's two classes (paper: 200)."""
    batch_size: int = 100
    augment: bool = False
    """Random crop (4-pixel zero padding) and horizontal flip, batched on the device."""
    method: str = _METHOD.name
    utility: str = ""
    """'' = the method's default (cbp: gxd)."""
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    """Added to every gradient as weight_decay * w, for every method."""
    replacement_rate: float = _METHOD.replacement_rate
    maturity: int = _METHOD.maturity
    utility_decay: float = _METHOD.utility_decay
    shrink: float = _METHOD.shrink
    noise_std: float = _METHOD.noise_std
    l2_init: float = _METHOD.l2_init
    dormant_threshold: float = _METHOD.dormant_threshold
    reset_every: int = _METHOD.reset_every
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.tasks < 1 or self.epochs_per_task < 1 or self.batch_size < 1:
            raise ConfigError("tasks, epochs_per_task and batch_size must be >= 1")
        if self.seed < 0 or self.pair_seed < 0:
            raise ConfigError("seed and pair_seed must be >= 0")
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; choose from: {', '.join(MODELS)}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        object.__setattr__(self, "utility", self.method_config().utility)
        check_optimizer(self.optimizer, self.lr, self.momentum)

    def method_config(self) -> MethodConfig:
        fields = {f.name for f in dataclasses.fields(MethodConfig)} - {"name", "weight_decay"}
        return MethodConfig(self.method, **{k: getattr(self, k) for k in fields})

    def hyperparameters(self) -> dict:
        params = dataclasses.asdict(self)
        del params["device"]
        return params

    def config_hash(self) -> str:
        params = self.hyperparameters()
        del params["seed"], params["tasks"]
        return config_hash(params)


def task_classes(task: int, pair_seed: int, n_classes: int) -> tuple[int, int]:
    """The two classes of `task`: the same in every process and for every method."""
    a, b = np.random.default_rng([pair_seed, task]).choice(n_classes, 2, replace=False)
    return int(a), int(b)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random 32x32 crops of the 4-pixel zero-padded batch and random horizontal flips,
    drawn per example: [B, C, H, W] -> [B, C, H, W]."""
    batch, _, height, width = x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    dev = x.device
    dy = torch.randint(0, 9, (batch, 1, 1), generator=generator, device=dev)
    dx = torch.randint(0, 9, (batch, 1, 1), generator=generator, device=dev)
    rows = dy + torch.arange(height, device=dev)[None, :, None]
    cols = dx + torch.arange(width, device=dev)[None, None, :]
    flip = torch.rand(batch, generator=generator, device=dev) < 0.5
    cols = torch.where(flip[:, None, None], cols.flip(2), cols)
    examples = torch.arange(batch, device=dev)[:, None, None]
    return padded.permute(0, 2, 3, 1)[examples, rows, cols].permute(0, 3, 1, 2)


class ContinuousCIFAR:
    """Iterating yields one row (a dict) per remaining task."""

    def __init__(self, config: ContinuousCIFARConfig, state: dict | None = None) -> None:
        self.config = config
        device = torch.device(config.device)
        split = load_images(config.data)
        self.n_classes = len(split.classes)
        self.x_train, self.y_train = split.x_train.to(device), split.y_train.to(device)
        self.x_test, self.y_test = split.x_test.to(device), split.y_test.to(device)
        model_seed, order_seed, augment_seed = np.random.SeedSequence(config.seed).generate_state(3)
        self.generator = torch.Generator(device).manual_seed(int(model_seed))
        self.order_generator = torch.Generator().manual_seed(int(order_seed))
        self.augment_generator = torch.Generator(device).manual_seed(int(augment_seed))
        with device:
            self.model = build_resnet(config.model, 2, self.generator)
        params = list(self.model.parameters())
        self.optimizer = make_optimizer(config.optimizer, params, config.lr, config.momentum)
        self.method = build_method(
            config.method_config(), self.model.unit_layers(), self.optimizer, self.generator
        )
        self.step = AutogradStep(self.model, self.method.needs)
        self.task = 0
        self.examples_seen = 0
        self._hyperparameters = config.hyperparameters()
        del self._hyperparameters["seed"], self._hyperparameters["tasks"]
        self.config_hash = config.config_hash()
        if state is not None:
            self.load_state_dict(state)

    def __iter__(self) -> Iterator[dict]:
        while self.task < self.config.tasks:
            row = self._run_task()
            self.task += 1
            yield row

    def _pair(self, x: torch.Tensor, y: torch.Tensor, classes: tuple[int, int]):
        mask = (y == classes[0]) | (y == classes[1])
        return x[mask], (y[mask] == classes[1]).long()  # class_a -> 0, class_b -> 1

    def _run_task(self) -> dict:
        cfg = self.config
        start = time.perf_counter()
        classes = task_classes(self.task, cfg.pair_seed, self.n_classes)
        x, y = self._pair(self.x_train, self.y_train, classes)
        self._reset_head()
        step, method = self.step, self.method
        step.reset_accumulators()
        self.model.train()
        resets = 0
        for _ in range(cfg.epochs_per_task):
            order = torch.randperm(len(y), generator=self.order_generator).to(x.device)
            for i in range(0, len(y), cfg.batch_size):
                batch = order[i : i + cfg.batch_size]
                xb = x[batch]
                if cfg.augment:
                    xb = augment(xb, self.augment_generator)
                step(xb, y[batch])
                if cfg.weight_decay:
                    torch._foreach_add_(step.grads, step.params, alpha=cfg.weight_decay)
                method.before_step(step.params, step.grads)
                self.optimizer.step(step.grads)
                resets += method.after_step(step.taps)
        n = len(y) * cfg.epochs_per_task
        self.examples_seen += n
        loss = step.loss_sum.item() / n
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"training loss became {loss} on task {self.task} "
                f"(lr={cfg.lr}, method={cfg.method}); lower the learning rate"
            )
        x_test, y_test = self._pair(self.x_test, self.y_test, classes)
        return {
            "experiment": NAME,
            **self._hyperparameters,
            "seed": cfg.seed,
            "task": self.task,
            "class_a": classes[0],
            "class_b": classes[1],
            "accuracy": self.evaluate(x_test, y_test),
            "train_accuracy": step.correct.item() / n,
            "loss": loss,
            "resets": resets,
            "examples_seen": self.examples_seen,
            "seconds": time.perf_counter() - start,
            "config_hash": self.config_hash,
            "code_version": code_version(),
        }

    @torch.no_grad()
    def _reset_head(self) -> None:
        """Zero the 2-unit head and clear all optimizer state (the paper's task boundary)."""
        self.model.head.weight.zero_()
        self.model.head.bias.zero_()
        self.optimizer.clear()

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy in [0, 1] in eval mode (BatchNorm running statistics)."""
        self.model.eval()
        correct = torch.zeros((), dtype=torch.long, device=x.device)
        for i in range(0, len(y), EVAL_CHUNK):
            logits = self.model(x[i : i + EVAL_CHUNK])
            correct += (logits.argmax(1) == y[i : i + EVAL_CHUNK]).sum()
        self.model.train()
        return correct.item() / max(len(y), 1)

    GENERATORS = ("generator", "order_generator", "augment_generator")

    def state_dict(self) -> dict:
        """Everything needed to continue bit-identically from the current task boundary."""
        return experiment_state.state_dict(self, self.GENERATORS)

    def load_state_dict(self, state: dict) -> None:
        experiment_state.load_state_dict(self, state, self.GENERATORS)


def run(config: ContinuousCIFARConfig, state: dict | None = None) -> ContinuousCIFAR:
    """The experiment generator: `for row in run(config): ...`."""
    return ContinuousCIFAR(config, state)
