"""Training throughput of the hand-written MLP step beside a plain PyTorch autograd loop.

Run from the repository root (package installed): `python benchmarks/bench_step.py`, or e.g.
`python benchmarks/bench_step.py --batch-sizes 1,64 --seconds 1 --repeats 5 --threads 2`.

Each row trains its own copy of the same MLP with SGD (lr 0.01) on random data pre-generated
on the device; hand-written rows run the Permuted MNIST loop (step, before_step, optimizer
step, after_step). CBP uses replacement rate 1e-4 and maturity 100 and warms up past
maturity, so units are reset while timed (`resets`: total over all rounds). Rows get a fixed
wall budget, interleaved over rounds, median kept (`spread`: (max - min) / median over the
rounds; a large one means background load, so rerun on a quiet machine). Ratios are against
`plain autograd` at the same batch size. Speed claims come from this script, never from
timed unit tests.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from plasticity_core.methods import MethodConfig, build_method
from plasticity_core.models.mlp import MLP
from plasticity_core.optim import SGD
from plasticity_core.step import MLPStep

LR = 0.01
REPLACEMENT_RATE = 1e-4
MATURITY = 100
N_INPUTS, N_CLASSES = 784, 10
POOL = 16  # distinct pre-generated batches, cycled through
CHUNK = 8  # steps between clock reads (and device synchronisations)

Step = Callable[[torch.Tensor, torch.Tensor], int]
"""One training step on (x, y); returns the number of units reset."""
Batches = list[tuple[torch.Tensor, torch.Tensor]]


def plain_autograd(model: MLP) -> Step:
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)

    def step(x: torch.Tensor, y: torch.Tensor) -> int:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return 0

    return step


def hand_written(model: MLP, method: str, utility: str = "gxd") -> Step:
    optimizer = SGD(list(model.parameters()), LR)
    config = MethodConfig(method, utility, replacement_rate=REPLACEMENT_RATE, maturity=MATURITY)
    generator = torch.Generator(model.head.weight.device).manual_seed(0)
    hooks = build_method(config, model.unit_layers(), optimizer, generator)
    mlp_step = MLPStep(model, hooks.needs)
    params = mlp_step.params

    def step(x: torch.Tensor, y: torch.Tensor) -> int:
        mlp_step(x, y)
        hooks.before_step(params, mlp_step.grads)
        optimizer.step(mlp_step.grads)
        return hooks.after_step(mlp_step.taps)

    return step


ROWS: dict[str, Callable[[MLP], Step]] = {
    "plain autograd": plain_autograd,
    "hand-written bp": lambda m: hand_written(m, "bp"),
    "cbp + contribution": lambda m: hand_written(m, "cbp", "contribution"),
    "cbp + gxd": lambda m: hand_written(m, "cbp", "gxd"),
    "cbp + gxd_all": lambda m: hand_written(m, "cbp", "gxd_all"),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_steps(step: Step, batches: Batches, n: int) -> int:
    return sum(step(*batches[i % len(batches)]) for i in range(n))


def measure(step: Step, batches: Batches, budget: float, device: torch.device) -> tuple[float, int]:
    """(seconds per step, units reset) over at least `budget` seconds of wall time."""
    steps = resets = 0
    sync(device)
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < budget:
        resets += run_steps(step, batches, CHUNK)
        steps += CHUNK
        sync(device)
        elapsed = time.perf_counter() - start
    return elapsed / steps, resets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1,16,64")
    parser.add_argument("--hidden", default="256,256,256,256")
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed wall budget per row")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; median kept")
    parser.add_argument("--warmup", type=int, default=3 * MATURITY, help="untimed steps per row")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    if args.warmup <= MATURITY:
        parser.error(f"--warmup must exceed the CBP maturity ({MATURITY}) so resets are timed")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    hidden = [int(w) for w in args.hidden.split(",")]

    rows: dict[tuple[int, str], tuple[Step, Batches]] = {}
    for bs in batch_sizes:
        gen = torch.Generator(device).manual_seed(bs)
        x = torch.randn(POOL, bs, N_INPUTS, device=device, generator=gen)
        y = torch.randint(0, N_CLASSES, (POOL, bs), device=device, generator=gen)
        batches = list(zip(x.unbind(0), y.unbind(0), strict=True))
        for name, build in ROWS.items():
            init = torch.Generator().manual_seed(0)  # every row starts from the same weights
            model = MLP(N_INPUTS, hidden, N_CLASSES, args.activation, generator=init)
            model.to(device)
            step = build(model)
            run_steps(step, batches, args.warmup)
            rows[bs, name] = step, batches
    sync(device)

    per_step: dict[tuple[int, str], list[float]] = {key: [] for key in rows}
    resets: dict[tuple[int, str], int] = dict.fromkeys(rows, 0)
    for _ in range(args.repeats):
        for key, (step, batches) in rows.items():
            seconds, n_reset = measure(step, batches, args.seconds, device)
            per_step[key].append(seconds)
            resets[key] += n_reset

    arch = "->".join(map(str, [N_INPUTS, *hidden, N_CLASSES]))
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, MLP {arch}")
    print(f"{args.activation}, {args.seconds:g} s per row, median of {args.repeats} rounds")
    head = f"{'batch':>5}  {'row':<20}{'examples/s':>12}{'ratio':>8}{'µs/step':>11}"
    print(f"{head}{'spread':>8}{'resets':>8}")
    for bs in batch_sizes:
        baseline = statistics.median(per_step[bs, "plain autograd"])
        for name in ROWS:
            times = per_step[bs, name]
            t = statistics.median(times)
            rate, ratio, spread = bs / t, baseline / t, (max(times) - min(times)) / t
            print(
                f"{bs:>5}  {name:<20}{rate:>12.0f}{ratio:>8.2f}{t * 1e6:>11.1f}{spread:>8.0%}"
                f"{resets[bs, name]:>8}"
            )


if __name__ == "__main__":
    main()
