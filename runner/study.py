"""The Ray-backed commands: sweep, resume, status and demo (see runner.cli)."""

from __future__ import annotations

import argparse
import json

import pandas as pd

from plasticity_core.errors import ConfigError
from runner.ray_session import ray_session
from runner.results import read_results
from runner.spec import STAGES, SweepSpec, load_spec
from runner.status import experiment_status
from runner.storage import Folder
from runner.sweep import load_folder_spec, prepare, run_stages


def sweep(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, dict(args.overrides))
    stages = list(STAGES) if args.stage == "all" else [args.stage]
    return _run(spec, prepare(spec, args.out), stages, args)


def resume(args: argparse.Namespace) -> int:
    folder = Folder(args.folder)
    spec = load_folder_spec(folder)
    stages = json.loads((folder / "run.json").read_text())["stages"]
    return _run(spec, folder, stages, args)


def status(args: argparse.Namespace) -> int:
    if args.folder is None and args.address is None:
        raise ConfigError("give an experiment folder, or --address of a cluster's Jobs API")
    if args.address:
        from runner.submit import job_status_lines

        print("\n".join(job_status_lines(args.address, args.job)))
    if args.folder:
        print("\n".join(experiment_status(Folder(args.folder))))
    return 0


def demo(args: argparse.Namespace) -> int:
    spec = load_spec("demo")
    folder = prepare(spec, args.out)
    code = _run(spec, folder, list(STAGES), args)
    if code == 0:
        print("\n".join(plasticity_lines(read_results(folder, stage="final"))))
        print(f"\nper-task rows: {folder / 'rows'} (one Parquet file per run)")
        print(f"see the curves: plasticity dashboard {folder}")
    return code


def plasticity_lines(final: pd.DataFrame, metric: str = "loss") -> list[str]:
    """Per method: its error over the last 10% of tasks against its best, from the
    seed-mean curve of the final runs (a ratio well above 1 is lost plasticity)."""
    lines = ["final runs: error (mean over seeds) per flip period"]
    ratios = {}
    for (method, utility), runs in final.groupby(["method", "utility"], sort=False):
        curve = runs.groupby("task")[metric].mean()
        late = curve.iloc[-max(1, len(curve) // 10) :].mean()
        label = method if utility == "none" else f"{method}+{utility}"
        ratios[label] = late / curve.min()
        seeds = runs["seed"].nunique()
        lines.append(f"  {label:<18} first {curve.iloc[0]:.3f}  best {curve.min():.3f}  "
                     f"last 10% {late:.3f}  ({seeds} seeds)")  # fmt: skip
    lost = [k for k, r in ratios.items() if r > 1.5]
    kept = [k for k, r in ratios.items() if r <= 1.5]
    summary = "; ".join(f"{k} {r:.2f}x" for k, r in ratios.items())
    lines.append(f"error over the last 10% of steps / its best: {summary}")
    if lost:
        lines.append(f"=> {', '.join(lost)} lost plasticity"
                     + (f"; {', '.join(kept)} kept it" if kept else ""))  # fmt: skip
    return lines


def _run(spec: SweepSpec, folder: Folder, stages: list[str], args: argparse.Namespace) -> int:
    with ray_session(args.address, args.num_cpus, args.num_gpus, args.dashboard) as resources:
        _check_resources(spec, resources, embedded=args.address is None)
        failed = run_stages(spec, folder, stages)
    print(f"results: {folder}")
    return 1 if failed else 0


def _check_resources(spec: SweepSpec, resources: dict[str, float], embedded: bool) -> None:
    """Trials asking for more than any node has would wait forever: refuse them now."""
    need = spec.resources
    wanted = [("CPU", need.cpu), ("GPU", need.gpu)]
    if need.accelerator:
        wanted.append((need.accelerator, need.gpu))
    missing = [
        f"{value:g} {name if name == need.accelerator else name.lower()}"
        for name, value in wanted
        if value and resources.get(name, 0) < value
    ]
    if not missing:
        return
    message = (
        f"each trial of {spec.name!r} asks for {' and '.join(missing)}, but this Ray cluster "
        f"has {resources.get('CPU', 0):g} CPU and {resources.get('GPU', 0):g} GPU"
    )
    if embedded:
        raise ConfigError(
            message + "; lower resources in the spec, or run on a machine or cluster "
            "(--address) that has them"
        )
    print(f"warning: {message}; trials wait until the autoscaler adds such a node")
