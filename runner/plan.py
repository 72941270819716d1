"""`plasticity plan`: what a spec will cost, before anything runs.

Trials per stage are exact (sweep = configurations x sweep seeds; final = groups x final
seeds). Time is an estimate: optimizer steps x CPU-microseconds per step from the project's
own benchmark (`plasticity bench`: us/step x threads, i.e. CPU time, assuming a trial's time
scales with the CPUs it gets), plus a per-task allowance for evaluation and diagnostics.
Built-in figures are those of README "Speed" (2-core VM, 784-[256]x4-10, batch 64); pass
`--bench FILE` (`plasticity bench --json FILE` run on a worker) for your own machines. Other
widths and batch sizes are scaled by their matmul FLOPs, which is rough.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from plasticity_core.errors import ConfigError
from plasticity_core.experiments import EXPERIMENTS, StepCost
from runner.safe_yaml import load_yaml
from runner.spec import SweepSpec

REFERENCE_FLOPS = 64 * (784 * 256 + 3 * 256 * 256 + 256 * 10)
"""Matmul FLOPs of one step of the benchmarked MLP (784-[256]x4-10, batch 64)."""
CPU_US_PER_STEP = {
    "bp": 912, "cbp:activation": 1043, "cbp:contribution": 1108, "cbp:mc_adaptable": 1220,
    "cbp:loss_gradient": 1124, "cbp:gxi": 1219, "cbp:gxd": 1217, "cbp:gxd_all": 2337,
    "swr:gradient": 3355, "swr:magnitude": 3029, "swr:gxd_weight": 3908, "upgd": 3624,
    "infer": 3532, "spectral": 1636, "l2_init": 1353, "shrink_perturb": 2400,
}  # fmt: skip
"""us per step of `plasticity bench` on the reference MLP, measured with 2 threads (README
Speed: the 256x4 rerun, whose batch-64 windows spread 1-5%). The methods from swr on were
measured later, on one thread of a noisier machine, and enter as bp's figure times their
ratio to bp in that run (README Speed, "Methods"; plain came out at 1224 against 1230)."""
REFERENCE_THREADS = 2
TASK_OVERHEAD_S = 0.03
"""Per task: test-set evaluation and the diagnostics (0.025 s measured, probe 2,000)."""


def variant(config) -> str:
    """The bench variant whose step cost stands for this config's method: the unit-utility
    methods cost about what CBP with their utility does (the utility is most of it); the
    others are benchmarked under their own name (`swr:<utility>`, `upgd`, ...). A variant
    without a figure is costed as bp."""
    utility = config.resolved_utility
    if config.method in ("cbp", "redo", "regrama", "ccbp") and utility != "none":
        return f"cbp:{utility}"
    if config.method == "swr":
        return f"swr:{utility}"
    return config.method


def cpu_seconds_per_step(config, cost: StepCost, bench: dict[str, float] | None) -> float:
    figures = bench or {k: v * REFERENCE_THREADS for k, v in CPU_US_PER_STEP.items()}
    us = figures.get(variant(config), figures.get("bp"))
    return us * 1e-6 * cost.flops_per_step / REFERENCE_FLOPS


def load_bench(path: str) -> dict[str, float]:
    """CPU-us per step by variant from a `plasticity bench --json` file (256x4, batch 64)."""
    try:
        records = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"--bench {path}: not a readable JSON file ({err})") from None
    figures = {
        r["variant"]: r["us_per_step"] * r.get("threads", 1)
        for r in records
        if r.get("model") == "256x4" and r.get("batch_size") == 64 and "us_per_step" in r
    }
    if "bp" not in figures:
        raise ConfigError(f"--bench {path}: no 256x4 batch-64 'bp' record; run plasticity bench")
    return figures


def worker_slots(cluster: str | None, workers: int | None, spec: SweepSpec) -> tuple[int, str]:
    """How many trials run at once, and a description of where: every worker type of the
    cluster that fits a trial, at its max_workers (or `workers` nodes of each)."""
    need = spec.resources
    if cluster is None:
        return (workers or 1), f"{workers or 1} trial slot(s) (--cluster gives a real count)"
    try:
        definition = load_yaml(Path(cluster).read_bytes(), f"--cluster {cluster}")
        types = definition["available_node_types"]
        head = definition["head_node_type"]
    except (OSError, KeyError, TypeError) as err:
        raise ConfigError(f"--cluster {cluster}: not a Ray cluster-launcher YAML ({err})") from None
    slots, parts = 0, []
    for name, node in types.items():
        if name == head and not workers:
            continue
        res = node.get("resources", {})
        if not need.gpu and res.get("GPU", 0):
            continue  # Ray keeps CPU-only trials off GPU nodes and won't start one for them
        fits = [res.get("CPU", 0) / need.cpu]
        if need.gpu:
            fits.append(res.get("GPU", 0) / need.gpu)
        if need.accelerator:
            fits.append(res.get(need.accelerator, 0) / need.gpu)
        per_node = int(min(fits))
        count = workers if workers else node.get("max_workers", 0)
        if per_node and count:
            slots += per_node * count
            parts.append(f"{count} x {name} ({per_node} trials each)")
    if not slots:
        raise ConfigError(f"--cluster {cluster}: no worker type fits a trial's {need.as_ray()}")
    return slots, " + ".join(parts)


def plan_lines(
    spec: SweepSpec, cluster: str | None = None, workers: int | None = None, bench=None
) -> list[str]:
    figures = load_bench(bench) if bench else None
    configs = spec.configurations()
    groups = {
        tuple(spec.build(p, 0).hyperparameters()[k] for k in spec.select.per) for p in configs
    }
    cost = EXPERIMENTS.get(spec.experiment).cost
    first = cost(spec.build(configs[0], 0))
    examples_per_task = first.examples_per_task if first else 0  # None: counts only
    stages = [("sweep", configs, len(spec.sweep_seeds)), ("final", None, len(spec.final_seeds))]
    slots, where = worker_slots(cluster, workers, spec)
    lines = [
        f"{spec.name} ({spec.experiment}): {len(configs)} configurations, {len(groups)} groups "
        f"by {', '.join(spec.select.per)}; {examples_per_task:,} training examples per task",
        f"{'stage':6s} {'trials':>8s} {'configs x seeds':>16s} {'tasks':>11s} "
        f"{'examples':>10s} {'CPU-h':>9s} {'GPU-h':>7s} {'wall h':>7s}",
    ]
    totals = [0, 0, 0, 0.0, 0.0]
    for stage, points, seeds in stages:
        # The final stage runs one configuration per group; its cost is that of an average
        # swept configuration, as the winners are not known before the sweep.
        n_configs = len(configs) if points is not None else len(groups)
        trials = n_configs * seeds
        per_trial = [_trial_seconds(spec.build(p, 0), cost, figures) for p in configs]
        trial_s = sum(per_trial) / len(per_trial)
        tasks = trials * sum(spec.build(p, 0).tasks for p in configs) // len(configs)
        cpu_h = trials * trial_s / 3600
        gpu_h = cpu_h / spec.resources.cpu * spec.resources.gpu
        wall_h = math.ceil(trials / slots) * trial_s / spec.resources.cpu / 3600
        lines.append(
            f"{stage:6s} {trials:8,d} {f'{n_configs} x {seeds}':>16s} {tasks:11,d} "
            f"{tasks * examples_per_task:10.2e} {cpu_h:9.1f} {gpu_h:7.1f} {wall_h:7.2f}"
        )
        for i, value in enumerate((trials, tasks, tasks * examples_per_task, cpu_h, gpu_h)):
            totals[i] += value
    lines.append(
        f"{'total':6s} {totals[0]:8,d} {'':>16s} {totals[1]:11,d} {totals[2]:10.2e} "
        f"{totals[3]:9.1f} {totals[4]:7.1f}"
    )
    if not examples_per_task:
        lines[0] = lines[0].split(";")[0]
        lines.append(f"time: not estimated for {spec.experiment} (no step costs registered)")
        return lines
    source = f"--bench {bench}" if bench else "built-in `plasticity bench` figures (README Speed)"
    lines.append(
        f"time: optimizer steps x CPU-us per step from {source}, scaled by matmul FLOPs, "
        f"+ {TASK_OVERHEAD_S} s per task for evaluation and diagnostics; GPU-h = trial hours x "
        f"gpu share (CPU figures: an upper bound for GPU trials)"
    )
    lines.append(f"wall: {slots} trials at a time on {where}")
    return lines


def _trial_seconds(config, cost, figures) -> float:
    """CPU-seconds of one trial of `config` (0 when its experiment registers no costs)."""
    step_cost = cost(config)
    if step_cost is None:
        return 0.0
    per_step = cpu_seconds_per_step(config, step_cost, figures)
    return config.tasks * (step_cost.steps_per_task * per_step + TASK_OVERHEAD_S)
