"""`PackedLoop`: R runs of one `TaskLoop` recipe stepped together, task by task.

    for results in PackedLoop(PermutedMNIST, [config_seed0, config_seed1, ...]):
        ...  # one entry per run: its row, a TrainingDiverged, or None once it has diverged

Each run is built by the recipe exactly as it runs alone (its seeds, model init, method);
then the pack takes over the per-step work. Per task, every run's `begin_task` crosses its
task boundary (an optimizer reset clears the run's view of the pack's optimizer state) and
gives its examples (a shared pool, e.g. Permuted MNIST's permuted digits, is gathered once
for all runs), and `finish_task` gives its row. A run that diverges gets its
TrainingDiverged and leaves the pack at the task's end; the others go on, untouched (no op
mixes runs).

`state_dict()` is every run's own single-run state (None for a diverged run), so a pack
resumes from any task boundary, and a run can continue alone or in another pack.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Sequence

import torch

from plasticity_core.cbp import ContinualBackprop
from plasticity_core.errors import ConfigError, TrainingDiverged
from plasticity_core.experiments.task_loop import Task, TaskLoop, TaskTotals
from plasticity_core.models.mlp import MLP
from plasticity_core.packed.cbp import PackedBackprop, PackedCBP
from plasticity_core.packed.model import PackedMLP
from plasticity_core.packed.optim import pack_optimizer
from plasticity_core.step import MLPStep

PACKED_FIELDS = ("seed", "lr", "momentum", "replacement_rate", "maturity", "utility_decay")
"""Config fields the runs of one pack may differ in; every other field is shared."""
PACKED_METHODS = ("bp", "cbp")


def pack_key(config) -> tuple:
    """Configs with equal keys can share a pack."""
    fields = dataclasses.asdict(config)
    return tuple(sorted((k, str(v)) for k, v in fields.items() if k not in PACKED_FIELDS))


def check_packable(configs: Sequence) -> None:
    """Raise ConfigError unless `configs` can run as one pack."""
    if not configs:
        raise ConfigError("a pack needs at least one run")
    method = configs[0].method
    if method not in PACKED_METHODS:
        raise ConfigError(f"method {method} cannot run packed (packable: "
                          f"{', '.join(PACKED_METHODS)}); use pack: 1")  # fmt: skip
    key = pack_key(configs[0])
    for config in configs[1:]:
        if pack_key(config) != key:
            differ = sorted(k for (k, v), (_, w) in zip(pack_key(config), key, strict=True)
                            if v != w)  # fmt: skip
            raise ConfigError(f"runs of a pack may differ only in {', '.join(PACKED_FIELDS)}; "
                              f"these differ in {', '.join(differ)}")  # fmt: skip


class PackedLoop:
    """Iterating yields, per task, one entry per run (see the module docstring)."""

    def __init__(self, recipe: type[TaskLoop], configs: Sequence, states=None) -> None:
        check_packable(configs)
        states = states or [None] * len(configs)
        self.loops = [recipe(config, state) for config, state in zip(configs, states, strict=True)]
        if not all(isinstance(loop.model, MLP) for loop in self.loops):
            raise ConfigError(f"experiment {recipe.NAME} has no packable model (MLPs pack)")
        tasks = {loop.task for loop in self.loops}
        if len(tasks) != 1:
            raise ConfigError(f"runs of a pack must be at one task boundary, got {sorted(tasks)}")
        self.task = tasks.pop()
        self.tasks = configs[0].tasks
        self.active = list(range(len(self.loops)))
        self._pack()

    def _pack(self) -> None:
        """The pack's tensors from the active runs' current state."""
        loops = [self.loops[i] for i in self.active]
        first = loops[0]
        self.model = PackedMLP([loop.model for loop in loops])
        self.step = MLPStep(self.model, first.method.needs, first.LOSS)
        cfgs = [loop.config for loop in loops]
        self.optimizer = pack_optimizer(
            first.config.optimizer,
            list(self.model.parameters()),
            [loop.optimizer for loop in loops],
            [c.lr for c in cfgs],
            [c.momentum for c in cfgs],
        )
        if isinstance(first.method, ContinualBackprop):
            self.method = PackedCBP([loop.method for loop in loops], self.model)
        else:
            self.method = PackedBackprop(len(loops))
        self._grad_norm = torch.zeros(len(loops), device=self.model.head.weight.device)
        # Each run's gradients as views, run-major, so its global norm is the one-run op.
        self._run_grads = [g[r] for r in range(len(loops)) for g in self.step.grads]

    def __iter__(self) -> Iterator[list]:
        while self.task < self.tasks and self.active:
            yield self._run_task()

    def _run_task(self) -> list:
        start = time.perf_counter()
        loops = [self.loops[i] for i in self.active]
        tasks = [loop.begin_task() for loop in loops]
        step, method, optimizer = self.step, self.method, self.optimizer
        step.reset_accumulators()
        method.resets = [0] * len(loops)
        grad_norm = self._grad_norm.zero_()
        track = tasks[0].probe is not None
        steps = n = 0
        for x, y in _stacked_batches(tasks):
            step(x, y)
            if track:
                norms = torch.stack(torch._foreach_norm(self._run_grads)).view(len(loops), -1)
                grad_norm += torch.linalg.vector_norm(norms, dim=1)
            optimizer.step(step.grads)
            method.after_step(step.taps)
            steps += 1
            n += y.shape[-1]
        method.sync()
        seconds = (time.perf_counter() - start) / len(loops)  # the pack's time, shared
        loss, correct = step.loss_sum.tolist(), step.correct.tolist()
        norms = [g / steps for g in grad_norm.tolist()] if track else [math.nan] * len(loops)
        results: list = [None] * len(self.loops)
        for j, (i, loop, task) in enumerate(zip(self.active, loops, tasks, strict=True)):
            totals = TaskTotals(loss[j], correct[j], n, steps, method.resets[j], norms[j])
            try:
                results[i] = loop.finish_task(task, totals, seconds)
            except TrainingDiverged as err:
                results[i] = err
            loop.task += 1
        self.task += 1
        diverged = [i for i in self.active if isinstance(results[i], TrainingDiverged)]
        if diverged:
            self.active = [i for i in self.active if i not in diverged]
            if self.active:
                self._pack()
        return results

    def state_dict(self) -> dict:
        """{"runs": each run's single-run state (None once diverged)}."""
        self.method.sync()
        return {"runs": [self.loops[i].state_dict() if i in self.active else None
                         for i in range(len(self.loops))]}  # fmt: skip


class Alone:
    """One run behind the pack's interface (entries per task, states per run): what a pack
    of one, or a run whose method cannot pack, runs on: the single-run loop itself."""

    def __init__(self, loop: TaskLoop) -> None:
        self.loop = loop
        self.task = loop.task
        self.tasks = loop.config.tasks
        self.active = [0]

    def __iter__(self) -> Iterator[list]:
        rows = iter(self.loop)
        while self.task < self.tasks and self.active:
            try:
                result = next(rows)
            except TrainingDiverged as err:
                result, self.active = err, []
            self.task += 1
            yield [result]

    def state_dict(self) -> dict:
        return {"runs": [self.loop.state_dict() if self.active else None]}


def start(recipe: type[TaskLoop], configs: Sequence, states=None) -> PackedLoop | Alone:
    """The runs of `configs` (resumed from `states`, one per run, or None) as one pack, or
    alone when there is one."""
    if len(configs) == 1:
        return Alone(recipe(configs[0], states[0] if states else None))
    return PackedLoop(recipe, configs, states)


def _stacked_batches(tasks: Sequence[Task]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The runs' minibatches as [R, batch, ...]: one gather from a pool the runs share, or
    slices of their stacked pools."""
    first = tasks[0]
    if first.examples is None or any(t.batch_size != first.batch_size for t in tasks):
        raise ConfigError("packed runs need their tasks' examples as a pool (Task.examples)")
    size, count = first.batch_size, len(first.examples[1])
    shared = all(t.examples[0] is first.examples[0] for t in tasks)
    if shared:
        x, y = first.examples
    else:
        x = torch.stack([t.examples[0] for t in tasks])
        y = torch.stack([t.examples[1] for t in tasks])
    ordered = first.order is not None
    order = torch.stack([t.order for t in tasks]) if ordered else None
    runs = torch.arange(len(tasks), device=x.device).unsqueeze(1)
    for i in range(0, count, size):
        if not ordered:
            if shared:
                yield (x[i : i + size].expand(len(tasks), *x[i : i + size].shape),
                       y[i : i + size].expand(len(tasks), -1))  # fmt: skip
            else:
                yield x[:, i : i + size], y[:, i : i + size]
        elif shared:
            yield x[order[:, i : i + size]], y[order[:, i : i + size]]
        else:
            yield x[runs, order[:, i : i + size]], y[runs, order[:, i : i + size]]
