"""`plasticity list`, `dashboard` and `bench`."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from plasticity_core.diagnostics import DIAGNOSTICS
from plasticity_core.experiments import EXPERIMENTS, reset_cost
from plasticity_core.methods import METHODS, MethodConfig
from plasticity_core.models.activations import ACTIVATIONS
from plasticity_core.models.mlp import NORMS
from plasticity_core.optim import OPTIMIZERS
from plasticity_core.utility import UTILITIES
from plasticity_core.weight_utility import WEIGHT_UTILITIES
from runner.bench import BenchConfig, run_bench
from runner.bench_pack import PackBenchConfig, run_pack_bench
from runner.cli.options import add_config_options, given_options, ints, names
from runner.spec import load_spec, presets

LISTS = {
    "utilities": lambda: [f"{n:16s}{UTILITIES.get(n).description}" for n in UTILITIES],
    "weight_utilities": lambda: [
        f"{n:16s}{WEIGHT_UTILITIES.get(n).description}" for n in WEIGHT_UTILITIES
    ],
    "methods": lambda: (
        [_method_line(n) for n in METHODS]
        + [
            f"{'(any method)':16s}--reset-optimizer: clear the optimizer state at every task "
            "boundary (Asadi et al. 2023)"
        ]
    ),
    "diagnostics": lambda: [f"{n:24s}{text}" for n, text in DIAGNOSTICS.items()],
    "activations": ACTIVATIONS.names,
    "norms": lambda: list(NORMS),
    "optimizers": OPTIMIZERS.names,
    "experiments": lambda: (
        [f"{n:28s}{EXPERIMENTS.get(n).description}" for n in EXPERIMENTS]
        + [f"{reset_cost.NAME:28s}the reset-cost assay (plasticity assay)"]
    ),
    "presets": lambda: [f"{n:28s}{load_spec(n).description}" for n in presets()],
}


def _method_line(name: str) -> str:
    """A method's name, description, default utility and hyperparameters with defaults."""
    spec = METHODS.get(name)
    fields = {f.name: f.default for f in dataclasses.fields(MethodConfig)}
    parts = [f"utility {spec.default_utility}"] if spec.default_utility else []
    parts += [f"{field}={fields[field]}" for field in spec.reads]
    return f"{name:16s}{spec.description}" + (f"\n{'':16s}[{', '.join(parts)}]" if parts else "")


def add_parsers(sub) -> None:
    lister = sub.add_parser("list", help="list registered components")
    lister.add_argument("what", choices=sorted(LISTS))

    dash = sub.add_parser("dashboard", help="one offline HTML page of Plotly views of results")
    dash.add_argument("folders", nargs="+", help="experiment or results folders (or URIs)")
    dash.add_argument("--out", default=None, help="HTML file (default: FOLDER/dashboard.html)")
    dash.add_argument("--serve", action="store_true", help="also serve it on 127.0.0.1")
    dash.add_argument("--port", type=int, default=8050, help="port for --serve")
    dash.add_argument(
        "--plotly", choices=("embed", "cdn"), default="embed",
        help="embed plotly.js (~4.8 MB, works offline; default) or load it from Plotly's CDN",
    )  # fmt: skip
    dash.add_argument(
        "--figures", type=Path, default=None, metavar="DIR",
        help="also write every figure as an SVG file into DIR (needs kaleido and Chromium)",
    )  # fmt: skip

    bench = sub.add_parser("bench", help="training throughput: the engine vs a plain torch loop")
    add_config_options(bench, BenchConfig)
    bench.add_argument("--json", type=Path, default=None, help="write the records here")
    packing = bench.add_argument_group("packed runs (instead of the engine table)")
    packing.add_argument(
        "--pack",
        type=ints,
        default=None,
        metavar="R,...",
        help="R runs in one packed step beside R runs alone, e.g. 1,8,32",
    )
    packing.add_argument(
        "--workloads",
        type=names,
        default=("mlp", "regression"),
        help="mlp (256x4, batch 64) and/or regression (21-5-1, batch 1)",
    )
    packing.add_argument("--pack-variant", default="cbp:gxd", help="bp or cbp:<utility>")


def run(args: argparse.Namespace) -> None:
    if args.command == "list":
        print("\n".join(LISTS[args.what]()))
    elif args.command == "bench" and args.pack:
        _pack_bench(args)
    elif args.command == "bench":
        run_bench(BenchConfig(**given_options(BenchConfig, args)), args.json)
    else:
        _dashboard(args)


def _pack_bench(args: argparse.Namespace) -> None:
    bench = BenchConfig(**given_options(BenchConfig, args))  # validates the shared options
    if bench.threads is not None:
        torch.set_num_threads(bench.threads)
    cfg = PackBenchConfig(args.pack, args.workloads, args.pack_variant,
                          bench.seconds, bench.repeats, bench.device)  # fmt: skip
    records = run_pack_bench(cfg)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1))


def _dashboard(args: argparse.Namespace) -> None:
    from runner.dashboard import serve, write_dashboard, write_figures
    from runner.storage import is_uri

    first = args.folders[0]
    out = args.out or ("dashboard.html" if is_uri(first) else str(Path(first) / "dashboard.html"))
    path = write_dashboard(args.folders, out, plotly=args.plotly)
    size = path.stat().st_size if path.exists() else 0
    offline = "works offline" if args.plotly == "embed" else "loads plotly.js from its CDN"
    print(f"dashboard: {path} ({size / 1e6:.1f} MB, {offline})")
    if args.figures is not None:
        figures = write_figures(args.folders, args.figures)
        print(f"figures: {len(figures)} SVG files in {args.figures}")
    if args.serve:
        serve(path, args.port)
