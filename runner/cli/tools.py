"""`plasticity list`, `dashboard` and `bench`."""

from __future__ import annotations

import argparse
from pathlib import Path

from plasticity_core.diagnostics import DIAGNOSTICS
from plasticity_core.experiments import EXPERIMENTS, reset_cost
from plasticity_core.methods import METHODS
from plasticity_core.models.activations import ACTIVATIONS
from plasticity_core.models.mlp import NORMS
from plasticity_core.optim import OPTIMIZERS
from plasticity_core.utility import UTILITIES
from runner.bench import BenchConfig, run_bench
from runner.cli.options import add_config_options, given_options
from runner.spec import load_spec, presets

LISTS = {
    "utilities": lambda: [f"{n:16s}{UTILITIES.get(n).description}" for n in UTILITIES],
    "methods": lambda: [f"{n:16s}{METHODS.get(n).description}" for n in METHODS],
    "diagnostics": lambda: [f"{n:24s}{text}" for n, text in DIAGNOSTICS.items()],
    "activations": ACTIVATIONS.names,
    "norms": lambda: list(NORMS),
    "optimizers": OPTIMIZERS.names,
    "experiments": lambda: [f"{n:22s}{EXPERIMENTS.get(n).description}" for n in EXPERIMENTS]
    + [f"{reset_cost.NAME:22s}the reset-cost assay (plasticity assay)"],
    "presets": lambda: [f"{n:22s}{load_spec(n).description}" for n in presets()],
}


def add_parsers(sub) -> None:
    lister = sub.add_parser("list", help="list registered components")
    lister.add_argument("what", choices=sorted(LISTS))

    dash = sub.add_parser("dashboard", help="one offline HTML page of Plotly views of results")
    dash.add_argument("folders", nargs="+", help="experiment or results folders (or URIs)")
    dash.add_argument("--out", default=None, help="HTML file (default: FOLDER/dashboard.html)")
    dash.add_argument("--serve", action="store_true", help="also serve it on 127.0.0.1")
    dash.add_argument("--port", type=int, default=8050, help="port for --serve")

    bench = sub.add_parser("bench", help="training throughput: the engine vs a plain torch loop")
    add_config_options(bench, BenchConfig)
    bench.add_argument("--json", type=Path, default=None, help="write the records here")


def run(args: argparse.Namespace) -> None:
    if args.command == "list":
        print("\n".join(LISTS[args.what]()))
    elif args.command == "bench":
        run_bench(BenchConfig(**given_options(BenchConfig, args)), args.json)
    else:
        _dashboard(args)


def _dashboard(args: argparse.Namespace) -> None:
    from runner.dashboard import serve, write_dashboard
    from runner.storage import is_uri

    first = args.folders[0]
    out = args.out or ("dashboard.html" if is_uri(first) else str(Path(first) / "dashboard.html"))
    path = write_dashboard(args.folders, out)
    size = path.stat().st_size if path.exists() else 0
    print(f"dashboard: {path} ({size / 1e6:.1f} MB, works offline)")
    if args.serve:
        serve(path, args.port)
