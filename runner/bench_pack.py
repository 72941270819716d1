"""`plasticity bench --pack R`: R runs in one packed step beside the same R runs stepped one
after another, in one process.

Workloads: `mlp` is the Permuted MNIST network (784 -> [256] x 4 -> 10, batch 64,
cross-entropy), `regression` the slowly-changing-regression learner (21 -> 5 -> 1, batch 1,
squared error). Every run has its own seed, optimizer (SGD lr 0.01) and method (CBP with
replacement rate 1e-4 and maturity 100 by default, or bp), and steps on pre-generated random
batches. After a warm-up past maturity, `repeats` rounds each time one window of at least
`seconds` for the pack and one for the R runs alone, interleaved so background load hits
them alike; the median is kept. Reported: run-steps/s (runs x steps per second) of each and
their ratio.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from plasticity_core.cbp import ContinualBackprop
from plasticity_core.errors import ConfigError
from plasticity_core.methods import MethodConfig, build_method
from plasticity_core.models.mlp import MLP
from plasticity_core.optim import SGD
from plasticity_core.packed.cbp import PackedBackprop, PackedCBP
from plasticity_core.packed.model import PackedMLP
from plasticity_core.packed.optim import pack_optimizer
from plasticity_core.step import MLPStep
from runner.bench import LR, MATURITY, REPLACEMENT_RATE, WARMUP, _sync

WORKLOADS = {
    "mlp": dict(inputs=784, hidden=(256,) * 4, outputs=10, batch=64, loss="cross_entropy"),
    "regression": dict(inputs=21, hidden=(5,), outputs=1, batch=1, loss="squared_error"),
}
POOL = 4  # distinct batches per run, cycled through


@dataclass(frozen=True)
class PackBenchConfig:
    packs: tuple[int, ...] = (1, 8)
    workloads: tuple[str, ...] = ("mlp", "regression")
    variant: str = "cbp:gxd"
    seconds: float = 1.0
    repeats: int = 3
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.packs or min(self.packs) < 1:
            raise ConfigError(f"--pack needs sizes >= 1, got {list(self.packs)}")
        unknown = [w for w in self.workloads if w not in WORKLOADS]
        if unknown:
            raise ConfigError(f"unknown workload {unknown[0]!r}; choose from {list(WORKLOADS)}")
        method, _, utility = self.variant.partition(":")
        MethodConfig(method, utility)  # a clear error for a bad method or utility
        if method not in ("bp", "cbp"):
            raise ConfigError(f"--pack measures bp or cbp:<utility>, got {self.variant!r}")


Step = Callable[[], None]


def _runs(workload: dict, variant: str, count: int, device: torch.device):
    """`count` independently seeded runs: (model, optimizer, method)."""
    method, _, utility = variant.partition(":")
    config = MethodConfig(method, utility, REPLACEMENT_RATE, MATURITY)
    runs = []
    for seed in range(count):
        generator = torch.Generator(device).manual_seed(seed)
        with device:
            model = MLP(workload["inputs"], workload["hidden"], workload["outputs"],
                        generator=generator)  # fmt: skip
        optimizer = SGD(list(model.parameters()), LR)
        runs.append((model, optimizer, build_method(config, model.unit_layers(), optimizer,
                                                    generator)))  # fmt: skip
    return runs


def _data(workload: dict, count: int, device: torch.device):
    gen = torch.Generator(device).manual_seed(count)
    shape = (POOL, count, workload["batch"])
    x = torch.randn(*shape, workload["inputs"], device=device, generator=gen)
    if workload["loss"] == "cross_entropy":
        y = torch.randint(0, workload["outputs"], shape, device=device, generator=gen)
    else:
        y = torch.randn(shape, device=device, generator=gen)
    return x, y


def alone_steps(workload: dict, variant: str, count: int, device: torch.device) -> Step:
    """One call = one step of each of the `count` runs, one after another."""
    x, y = _data(workload, count, device)
    loops = []
    for model, optimizer, method in _runs(workload, variant, count, device):
        loops.append((MLPStep(model, method.needs, workload["loss"]), optimizer, method))
    calls = [0]

    def step() -> None:
        i = calls[0] % POOL
        calls[0] += 1
        for r, (mlp_step, optimizer, method) in enumerate(loops):
            mlp_step(x[i, r], y[i, r])
            optimizer.step(mlp_step.grads)
            method.after_step(mlp_step.taps)

    return step


def packed_steps(workload: dict, variant: str, count: int, device: torch.device) -> Step:
    """One call = one step of the pack of `count` runs."""
    x, y = _data(workload, count, device)
    runs = _runs(workload, variant, count, device)
    model = PackedMLP([m for m, _, _ in runs])
    mlp_step = MLPStep(model, runs[0][2].needs, workload["loss"])
    params = list(model.parameters())
    optimizer = pack_optimizer("sgd", params, [o for _, o, _ in runs], [LR] * count, [0.0] * count)
    methods = [m for _, _, m in runs]
    if isinstance(methods[0], ContinualBackprop):
        method = PackedCBP(methods, model)
    else:
        method = PackedBackprop(count)
    calls = [0]

    def step() -> None:
        i = calls[0] % POOL
        calls[0] += 1
        mlp_step(x[i], y[i])
        optimizer.step(mlp_step.grads)
        method.after_step(mlp_step.taps)

    return step


def _window(step: Step, budget: float, device: torch.device) -> float:
    """Seconds per call over at least `budget` seconds."""
    calls = 0
    _sync(device)
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < budget or calls == 0:
        for _ in range(4):
            step()
        calls += 4
        _sync(device)
    return elapsed / calls


def bench_pack(cfg: PackBenchConfig, workload: str, count: int) -> dict:
    device = torch.device(cfg.device)
    spec = WORKLOADS[workload]
    steps = {"packed": packed_steps(spec, cfg.variant, count, device),
             "alone": alone_steps(spec, cfg.variant, count, device)}  # fmt: skip
    for step in steps.values():
        for _ in range(WARMUP):
            step()
    windows: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(cfg.repeats):
        for name, step in steps.items():
            windows[name].append(_window(step, cfg.seconds, device))
    packed, alone = (statistics.median(windows[n]) for n in ("packed", "alone"))
    return dict(workload=workload, batch_size=spec["batch"], runs=count, variant=cfg.variant,
                packed_run_steps_per_s=count / packed, alone_run_steps_per_s=count / alone,
                speedup=alone / packed, packed_us_per_step=packed * 1e6)  # fmt: skip


def run_pack_bench(cfg: PackBenchConfig) -> list[dict]:
    print(f"torch {torch.__version__}, device {cfg.device}, {torch.get_num_threads()} threads; "
          f"{cfg.variant}, SGD lr {LR}; {cfg.seconds:g} s windows, median of {cfg.repeats}",
          flush=True)  # fmt: skip
    print(f"{'workload':<11}{'batch':>5}{'runs':>6}{'packed run-steps/s':>20}"
          f"{'alone run-steps/s':>19}{'speedup':>9}{'µs/pack step':>14}", flush=True)  # fmt: skip
    records = []
    for workload in cfg.workloads:
        for count in cfg.packs:
            r = bench_pack(cfg, workload, count)
            records.append(r)
            print(f"{workload:<11}{r['batch_size']:>5}{count:>6}"
                  f"{r['packed_run_steps_per_s']:>20.0f}{r['alone_run_steps_per_s']:>19.0f}"
                  f"{r['speedup']:>9.2f}{r['packed_us_per_step']:>14.0f}", flush=True)  # fmt: skip
    return records
