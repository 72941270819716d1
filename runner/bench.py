"""`plasticity bench`: training throughput of the project's engine beside a plain PyTorch loop.

The recipe, for each model and batch size:
1. Every variant trains its own copy of the same MLP (same initial weights, ReLU, SGD lr 0.01)
   on 16 random batches pre-generated on the device, cycled. `plain` is the floor: a plain
   loop with `torch.optim.SGD`, `F.cross_entropy` and `backward`, no method. Every other
   variant, METHOD[:UTILITY] (bp, cbp:gxd, swr, upgd, ...), runs the Permuted MNIST loop
   (hand-written step, method hooks, optimizer step) with the method's defaults, except
   replacement rate 1e-4 and maturity 100 for the reset methods.
2. Each variant takes `WARMUP` untimed steps, past maturity, so CBP resets units while timed
   (`resets`: total over the timed windows).
3. `repeats` rounds each time one window of at least `seconds` per variant, the variants
   interleaved so background load hits them alike; the median window is kept, and
   `spread` = (max - min) / median of the windows flags a disturbed row.
Last, the assay's batched clamping (`clamp_shocks` over every hidden layer, on `PROBE` random
inputs) is timed per model in units/s. Speed claims come from here, never from timed tests.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from plasticity_core.devices import check_device
from plasticity_core.errors import ConfigError
from plasticity_core.methods import MethodConfig, bind_step, build_method
from plasticity_core.models.mlp import MLP
from plasticity_core.models.units import UnitLayer
from plasticity_core.optim import SGD
from plasticity_core.shock import CHUNK_ELEMENTS, clamp_shocks
from plasticity_core.step import MLPStep

LR = 0.01
REPLACEMENT_RATE = 1e-4
MATURITY = 100
WARMUP = MATURITY + 50
"""Untimed steps per variant: past maturity, so every unit is eligible for replacement."""
N_INPUTS, N_CLASSES = 784, 10
POOL = 16  # distinct pre-generated batches, cycled through
CHUNK = 8  # steps between clock reads (and device synchronisations)
PROBE = 1000
"""Random probe inputs of the timed clamp (the assay's probe set with the embedded data)."""
CLAMP_CHUNKS = 4
"""Wide layers time only this many of clamp_shocks' unit chunks (the cost per chunk is flat)."""
CBP_UTILITIES = tuple("activation contribution mc_adaptable loss_gradient gxi gxd gxd_all".split())
VARIANTS = ("plain", "bp", *(f"cbp:{u}" for u in CBP_UTILITIES))

Step = Callable[[torch.Tensor, torch.Tensor], int]
"""One training step on (x [batch, 784], y [batch]); returns the number of units reset."""
Batches = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class BenchConfig:
    models: tuple[str, ...] = ("256x4", "2000x3")
    """MLPs as WIDTHxDEPTH: 256x4 is 784 -> [256] x 4 -> 10."""
    batch_sizes: tuple[int, ...] = (1, 16, 64)
    variants: tuple[str, ...] = VARIANTS
    """plain (always measured: the ratios' reference), or any registered METHOD[:UTILITY]
    (bp, cbp:gxd, swr:gxd_weight, upgd, ...; `plasticity list methods`)."""
    seconds: float = 1.0
    """Wall budget of one timed window, seconds."""
    repeats: int = 5
    """Interleaved rounds; the median window is kept."""
    threads: int | None = None
    """torch.set_num_threads; None keeps torch's default."""
    device: str = "cpu"

    def __post_init__(self) -> None:
        for model in self.models:
            _hidden(model)
        if not self.models or not self.batch_sizes or not self.variants:
            raise ConfigError("choose at least one model, batch size and variant")
        if min(self.batch_sizes) < 1:
            raise ConfigError(f"batch sizes must be >= 1, got {list(self.batch_sizes)}")
        for v in self.variants:
            _check_variant(v)
        if self.seconds <= 0 or self.repeats < 1 or (self.threads is not None and self.threads < 1):
            raise ConfigError(
                "need --seconds > 0, --repeats >= 1, --threads >= 1; got "
                f"{self.seconds:g}, {self.repeats}, {self.threads}"
            )
        check_device(self.device)


def _check_variant(variant: str) -> None:
    """plain, or METHOD[:UTILITY] of the registered methods (cbp:gxd, swr:gxd_weight)."""
    if variant == "plain":
        return
    method, _, utility = variant.partition(":")
    try:
        MethodConfig(method, utility)
    except ConfigError as error:
        raise ConfigError(f"variant {variant!r}: {error} (variants: plain or "
                          "METHOD[:UTILITY], e.g. cbp:gxd)") from None  # fmt: skip


def _hidden(model: str) -> tuple[int, ...]:
    match = re.fullmatch(r"([1-9]\d*)x([1-9]\d*)", model)
    if match is None:
        raise ConfigError(f"unknown model {model!r}; expected WIDTHxDEPTH, e.g. 256x4 or 2000x3")
    return (int(match[1]),) * int(match[2])


def plain_loop(model: MLP) -> Step:
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)

    def step(x: torch.Tensor, y: torch.Tensor) -> int:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return 0

    return step


def engine_loop(model: MLP, variant: str) -> Step:
    """The Permuted MNIST loop: hand-written step, method hooks around the optimizer step."""
    method, _, utility = variant.partition(":")
    optimizer = SGD(list(model.parameters()), LR)
    config = MethodConfig(method, utility, REPLACEMENT_RATE, MATURITY)
    generator = torch.Generator(model.head.weight.device).manual_seed(0)
    hooks = build_method(config, model.unit_layers(), optimizer, generator)
    mlp_step = MLPStep(model, hooks.needs)
    bind_step(hooks, mlp_step)
    params = mlp_step.params

    def step(x: torch.Tensor, y: torch.Tensor) -> int:
        mlp_step(x, y)
        hooks.before_step(params, mlp_step.grads)
        optimizer.step(mlp_step.grads)
        return hooks.after_step(mlp_step.taps)

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run_steps(step: Step, batches: Batches, n: int) -> int:
    return sum(step(*batches[i % len(batches)]) for i in range(n))


def _window(step: Step, batches: Batches, budget: float, device: torch.device) -> tuple[float, int]:
    """(seconds per step, units reset) over at least `budget` seconds of wall time."""
    steps = resets = 0
    _sync(device)
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < budget:
        resets += _run_steps(step, batches, CHUNK)
        steps += CHUNK
        _sync(device)
        elapsed = time.perf_counter() - start
    return elapsed / steps, resets


def _model(model: str, device: torch.device) -> MLP:
    init = torch.Generator().manual_seed(0)  # every variant starts from the same weights
    return MLP(N_INPUTS, _hidden(model), N_CLASSES, "relu", generator=init).to(device)


def bench_training(cfg: BenchConfig, model: str, batch: int, variants: list[str]) -> list[dict]:
    """One record per variant: examples/s and its ratio to `plain` at this model and batch."""
    device = torch.device(cfg.device)
    gen = torch.Generator(device).manual_seed(batch)
    x = torch.randn(POOL, batch, N_INPUTS, device=device, generator=gen)
    y = torch.randint(0, N_CLASSES, (POOL, batch), device=device, generator=gen)
    batches = list(zip(x.unbind(0), y.unbind(0), strict=True))
    steps: dict[str, Step] = {}
    for v in variants:
        net = _model(model, device)
        steps[v] = plain_loop(net) if v == "plain" else engine_loop(net, v)
        _run_steps(steps[v], batches, WARMUP)
    windows: dict[str, list[float]] = {v: [] for v in variants}
    resets = dict.fromkeys(variants, 0)
    for _ in range(cfg.repeats):
        for v, step in steps.items():
            seconds, n_reset = _window(step, batches, cfg.seconds, device)
            windows[v].append(seconds)
            resets[v] += n_reset
    plain = statistics.median(windows["plain"])
    records = []
    for v, times in windows.items():
        t, spread = _median_spread(times)
        record = dict(model=model, batch_size=batch, variant=v, examples_per_s=batch / t)
        record.update(ratio_to_plain=plain / t, time_ratio=t / plain, us_per_step=t * 1e6)
        records.append(dict(record, spread=spread, resets=resets[v]))
    return records


def _median_spread(times: list[float]) -> tuple[float, float]:
    """(median, (max - min) / median) of the windows' seconds."""
    t = statistics.median(times)
    return t, (max(times) - min(times)) / t


def _first_units(layer: UnitLayer, k: int) -> UnitLayer:
    """`layer` seen as its first k units, so that clamp_shocks clamps only those."""
    if k >= layer.n_units:
        return layer
    rows = nn.Module()
    rows.register_buffer("weight", layer.incoming.weight.detach()[:k])
    return replace(layer, incoming=rows)


def bench_clamp(cfg: BenchConfig, model: str) -> dict:
    """Units/s of clamp_shocks over every hidden layer on PROBE random inputs (median pass)."""
    device = torch.device(cfg.device)
    net = _model(model, device)
    gen = torch.Generator(device).manual_seed(0)
    x = torch.randn(PROBE, N_INPUTS, device=device, generator=gen)
    layers, references, h = [], [], x
    with torch.no_grad():
        for unit_layer, block in zip(net.unit_layers(), net.blocks, strict=True):
            h = block(h)
            references.append(h.mean(0))  # the assay's reference: mean activation
            chunk = max(1, CHUNK_ELEMENTS // h.numel())
            layers.append(_first_units(unit_layer, CLAMP_CHUNKS * chunk))
    units = sum(u.n_units for u in layers)
    times = []
    for _ in range(cfg.repeats):
        _sync(device)
        start = time.perf_counter()
        for unit_layer, r in zip(layers, references, strict=True):
            clamp_shocks(net, unit_layer, x, r[: unit_layer.n_units])
        _sync(device)
        times.append(time.perf_counter() - start)
    t, spread = _median_spread(times)
    record = dict(model=model, batch_size=PROBE, variant="assay-clamp", units=units)
    return dict(record, units_per_s=units / t, spread=spread)


def run_bench(cfg: BenchConfig, json_path: Path | None = None) -> list[dict]:
    """Measure, print the table as rows come in, optionally write the records as JSON."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    device = str(torch.device(cfg.device))
    env = dict(threads=torch.get_num_threads(), device=device, torch=torch.__version__)
    variants = ["plain", *(v for v in dict.fromkeys(cfg.variants) if v != "plain")]
    print(
        f"torch {torch.__version__}, device {env['device']}, {env['threads']} threads; "
        f"{cfg.seconds:g} s windows, median of {cfg.repeats}; relu MLPs, SGD lr {LR}; "
        f"cbp rate {REPLACEMENT_RATE:g}, maturity {MATURITY}, warm-up {WARMUP} steps",
        flush=True,
    )
    head = f"{'model':<8}{'batch':>5}  {'variant':<18}{'examples/s':>11}{'ratio':>7}"
    print(f"{head}{'time x':>8}{'µs/step':>11}{'spread':>8}{'resets':>7}", flush=True)
    records = []
    for model in cfg.models:
        for batch in cfg.batch_sizes:
            for r in bench_training(cfg, model, batch, variants):
                records.append({**r, **env})
                print(
                    f"{model:<8}{batch:>5}  {r['variant']:<18}{r['examples_per_s']:>11.0f}"
                    f"{r['ratio_to_plain']:>7.2f}{r['time_ratio']:>8.2f}"
                    f"{r['us_per_step']:>11.1f}{r['spread']:>8.0%}{r['resets']:>7}",
                    flush=True,
                )
    print(f"\nassay clamp (clamp_shocks, probe {PROBE}):\n{'model':<8}{'units':>7}", end="")
    print(f"{'units/s':>10}{'spread':>8}", flush=True)
    for model in cfg.models:
        r = {**bench_clamp(cfg, model), **env}
        records.append(r)
        print(f"{model:<8}{r['units']:>7}{r['units_per_s']:>10.1f}{r['spread']:>8.0%}", flush=True)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(records, indent=1))
    return records
