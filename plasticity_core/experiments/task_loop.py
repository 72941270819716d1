"""The skeleton every task-sequence experiment shares; a protocol is a recipe of its
differences (its data, model, step and what one task trains on).

    seed streams -> model / optimizer / method / step
    per task: the optimizer reset if asked (from the second task on), the recipe's batches,
    each one step with the method's hooks around the optimizer update -> divergence check
    -> test accuracy -> diagnostics -> one row
    state_dict() at any task boundary, for a bit-identical continuation

A recipe subclasses `TaskLoop` and names its config class (a `TaskConfig`), its seed
streams, `load_data`, `build_model`, `build_step` and `start_task` (what a task boundary
changes besides the optimizer reset every recipe shares).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from plasticity_core.diagnostics import DEFINITIONS_VERSION, network_diagnostics
from plasticity_core.divergence import divergence
from plasticity_core.errors import ConfigError, TrainingDiverged
from plasticity_core.experiments import state as experiment_state
from plasticity_core.fields import check_choices, later_defaults, option
from plasticity_core.losses import LOSSES
from plasticity_core.methods import MethodConfig, bind_step, build_method
from plasticity_core.optim import OPTIMIZERS, check_optimizer, make_optimizer
from plasticity_core.provenance import code_version, config_hash


@dataclass(frozen=True)
class TaskConfig(MethodConfig):
    """Fields every task-sequence experiment has; a recipe adds its own and may give
    these other defaults."""

    tasks: int = option(800)
    """Number of tasks."""
    seed: int = option(0)
    """Seeds the network init, the resets and the example order."""
    optimizer: str = option("sgd", group="optimizer", choices=lambda: OPTIMIZERS.names())
    """The update rule (see `plasticity list optimizers`)."""
    lr: float = option(0.01, group="optimizer")
    """Learning rate."""
    momentum: float = option(0.0, group="optimizer")
    """SGD momentum (sgd only)."""
    batch_size: int = option(64, group="optimizer")
    """Examples per optimizer step."""
    reset_optimizer: bool = option(False, group="optimizer", added_later=True)
    """Clear the optimizer state (SGD momentum; Adam's moments and bias corrections) at
    every task boundary, so each task starts with a fresh optimizer (Asadi et al. 2023,
    "Resetting the optimizer in deep RL"); combines with any method. The network carries
    over."""
    device: str = option("cpu")
    """cpu, cuda or cuda:N."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tasks < 1 or self.batch_size < 1:
            raise ConfigError(f"tasks and batch_size must be >= 1, got {self.tasks}, "
                              f"{self.batch_size}")  # fmt: skip
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        check_optimizer(self.optimizer, self.lr, self.momentum)
        check_choices(self)

    def hyperparameters(self) -> dict:
        """The columns describing the configuration in each row (the utility as the
        method resolves it)."""
        params = {k: _plain(v) for k, v in dataclasses.asdict(self).items()}
        params["utility"] = self.resolved_utility
        del params["device"]
        return params

    def config_hash(self) -> str:
        """Names the configuration apart from its seed and length: seeds of one
        configuration share it, and a longer run of it continues the same curve. Fields
        added later leave it unchanged at their default (`fields.later_defaults`)."""
        params = self.hyperparameters()
        for name in ("seed", "tasks", *later_defaults(self)):
            del params[name]
        return config_hash(params)


def _plain(value):
    """Tuples as comma-separated text in rows ('256,256'), as Parquet columns want."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


@dataclass
class Task:
    """What one task trains and is tested on, from the recipe's `start_task`. The training
    examples come either as `examples` (a pool) stepped on in `order`, `batch_size` at a
    time, which a pack of runs can gather in one op, or as any iterable of `batches`."""

    x_test: torch.Tensor | None
    """Held-out inputs; None for an online measure (the row's loss is the task's error)."""
    y_test: torch.Tensor | None
    examples: tuple[torch.Tensor, torch.Tensor] | None = None
    """(x [N, ...], y [N]): the pool the task's minibatches are drawn from."""
    order: torch.Tensor | None = None
    """[N] indices into `examples` in the order they are stepped on; None = pool order."""
    batch_size: int = 0
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None
    """The training minibatches (x, y), when they are not a pool (augmented images)."""
    columns: dict = field(default_factory=dict)
    """Row columns naming what the task is (e.g. its classes)."""
    probe: torch.Tensor | None = None
    """Inputs for the task-end diagnostics; None = no diagnostics."""

    def minibatches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.batches is not None:
            yield from self.batches
            return
        x, y = self.examples
        for i in range(0, len(y), self.batch_size):
            if self.order is None:
                yield x[i : i + self.batch_size], y[i : i + self.batch_size]
            else:
                batch = self.order[i : i + self.batch_size]
                yield x[batch], y[batch]


class TaskTotals(NamedTuple):
    """What training on one task adds up to, for its row."""

    loss_sum: float
    correct: int
    examples: int
    steps: int
    resets: int
    grad_norm: float
    """Mean over steps of the gradient's global norm (NaN when not tracked)."""


class TaskLoop:
    """Iterating yields one row (a dict) per remaining task."""

    NAME = ""
    GENERATORS: tuple[tuple[str, str], ...] = (("generator", "device"), ("order_generator", "cpu"))
    """Seed streams (attribute, 'device' | 'cpu'), drawn from the run's seed in this order.
    `generator` draws everything the network draws (init, resets, noise); the others stay
    apart so that changing the method does not change the data order."""
    EVAL_CHUNK = 2048
    LOSS = "cross_entropy"
    """The training loss (`losses.LOSSES`); a regression's rows carry no train_accuracy."""

    def __init__(self, config: TaskConfig, state: dict | None = None) -> None:
        self.config = config
        self.device = torch.device(config.device)
        self.load_data()
        seeds = np.random.SeedSequence(config.seed).generate_state(len(self.GENERATORS))
        for (name, where), seed in zip(self.GENERATORS, seeds, strict=True):
            on = self.device if where == "device" else torch.device("cpu")
            setattr(self, name, torch.Generator(on).manual_seed(int(seed)))
        with self.device:  # built on the device, so the init draws from the device generator
            self.model = self.build_model()
        params = list(self.model.parameters())
        self.optimizer = make_optimizer(config.optimizer, params, config.lr, config.momentum)
        self.method = build_method(config, self.model.unit_layers(), self.optimizer,
                                   self.generator)  # fmt: skip
        self.step = self.build_step()
        bind_step(self.method, self.step)
        self.task = 0
        self.examples_seen = 0
        self._grad_norm = torch.zeros((), device=self.device)
        self._hyperparameters = config.hyperparameters()
        del self._hyperparameters["seed"], self._hyperparameters["tasks"]
        self.config_hash = config.config_hash()
        if state is not None:
            self.load_state_dict(state)
        self._counts = self._reset_counts()

    # ------------------------------------------------------------ the recipe's part

    def load_data(self) -> None:
        """Put the experiment's data on `self.device`."""
        raise NotImplementedError

    def build_model(self) -> torch.nn.Module:
        """The network (with `unit_layers()`), drawing its init from `self.generator`."""
        raise NotImplementedError

    def build_step(self):
        """The training step (a `TrainingStep`) for `self.model` and the method's needs."""
        raise NotImplementedError

    def start_task(self) -> Task:
        """Task `self.task`'s data, after any task-boundary change of the recipe's own
        (head reset)."""
        raise NotImplementedError

    def recipe_state(self) -> dict:
        """What the recipe itself must save besides model, optimizer, method and generators
        (tensors and plain values only: checkpoints load with weights_only=True)."""
        return {}

    def load_recipe_state(self, state: dict) -> None:
        pass

    # ------------------------------------------------------------ the shared loop

    def __iter__(self) -> Iterator[dict]:
        while self.task < self.config.tasks:
            row = self._run_task()
            self.task += 1
            yield row

    def begin_task(self) -> Task:
        """The task boundary every recipe shares, then the recipe's `start_task`. In a pack
        each run's optimizer state is a view of the pack's, so clearing it here clears the
        run's part of the pack's state."""
        if self.config.reset_optimizer and self.task > 0:
            self.optimizer.clear()
        return self.start_task()

    def _run_task(self) -> dict:
        start = time.perf_counter()
        task = self.begin_task()
        step, method, params = self.step, self.method, self.step.params
        step.reset_accumulators()
        self.model.train()
        grad_norm = self._grad_norm.zero_()
        track = task.probe is not None
        resets = steps = n = 0
        for x, y in task.minibatches():
            step(x, y)
            method.before_step(params, step.grads)
            if track:
                grad_norm += torch.linalg.vector_norm(torch.stack(torch._foreach_norm(step.grads)))
            self.optimizer.step(step.grads)
            resets += method.after_step(step.taps)
            steps += 1
            n += len(y)
        totals = TaskTotals(step.loss_sum.item(), int(step.correct.item()), n, steps, resets,
                            grad_norm.item() / steps if track else math.nan)  # fmt: skip
        return self.finish_task(task, totals, time.perf_counter() - start)

    def finish_task(self, task: Task, totals: TaskTotals, seconds: float) -> dict:
        """The task's row, after the divergence check; raises TrainingDiverged."""
        cfg = self.config
        self.examples_seen += totals.examples
        loss = totals.loss_sum / totals.examples
        self._check_divergence(task, totals, loss)
        row = {
            "experiment": self.NAME,
            **self._hyperparameters,
            "seed": cfg.seed,
            "task": self.task,
            **task.columns,
        }
        if task.x_test is not None:
            row["accuracy"] = self.evaluate(task.x_test, task.y_test)
        if LOSSES.get(self.LOSS).classification:
            row["train_accuracy"] = totals.correct / totals.examples
        row.update({
            "loss": loss,
            "resets": totals.resets,
            "examples_seen": self.examples_seen,
            "seconds": seconds,
            "config_hash": self.config_hash,
            "code_version": code_version(),
        })  # fmt: skip
        if task.probe is not None:
            row.update(self._diagnostics(task.probe, totals.grad_norm))
        return row

    def _check_divergence(self, task: Task, totals: TaskTotals, loss: float) -> None:
        """Raise TrainingDiverged when the task's mean training `loss` broke a bound of
        `plasticity_core.divergence`, naming the bound and its numbers."""
        if LOSSES.get(self.LOSS).classification:
            inputs = {"classes": self.model.head.out_features,
                      "accuracy": totals.correct / totals.examples}  # fmt: skip
        elif task.examples is not None:  # a zero output's loss: the targets' mean square
            inputs = {"target_mean_square": task.examples[1].double().square().mean().item()}
        else:
            inputs = {}
        reason = divergence(loss, **inputs)
        if reason is not None:
            cfg = self.config
            raise TrainingDiverged(
                f"training diverged on task {self.task}: {reason} "
                f"(lr={cfg.lr}, method={cfg.method}); lower the learning rate"
            )

    def _reset_counts(self) -> list[int]:
        return self.method.reset_counts() or [0] * len(self.model.unit_layers())

    def _diagnostics(self, probe: torch.Tensor, grad_norm: float) -> dict:
        """Diagnostic columns at a task end; their cost is reported as diagnostics_seconds."""
        start = time.perf_counter()
        row = network_diagnostics(self.model, probe, self.config.dormant_threshold)
        row["grad_norm"] = grad_norm
        counts = self._reset_counts()
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
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy in [0, 1] of the current network in eval mode on (x, y [N])."""
        self.model.eval()
        correct = torch.zeros((), dtype=torch.long, device=x.device)
        for i in range(0, len(y), self.EVAL_CHUNK):
            logits = self.model(x[i : i + self.EVAL_CHUNK])
            correct += (logits.argmax(1) == y[i : i + self.EVAL_CHUNK]).sum()
        self.model.train()
        return correct.item() / max(len(y), 1)

    def state_dict(self) -> dict:
        """Everything needed to continue bit-identically from the current task boundary."""
        return experiment_state.state_dict(self, self._generator_names())

    def load_state_dict(self, state: dict) -> None:
        experiment_state.load_state_dict(self, state, self._generator_names())

    def _generator_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.GENERATORS)
