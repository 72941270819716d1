"""The Ray-backed commands: sweep, resume, status and demo (see runner.cli)."""

from __future__ import annotations

import argparse
import json

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
        final = read_results(folder, stage="final")
        per_seed = final.groupby(["utility", "lr", "seed"])["accuracy"].mean()
        table = per_seed.groupby(["utility", "lr"]).agg(["mean", "sem", "count"])
        table.columns = ["accuracy", "SE over seeds", "seeds"]
        print("\nfinal runs: test accuracy averaged over the tasks of each seed")
        print(table.to_string(float_format=lambda v: f"{v:.4f}"))
        print(f"\nper-task rows: {folder / 'rows'} (one Parquet file per trial)")
        reader = f"import runner; print(runner.read_results('{folder}'))"
        print(f'read them with: python -c "{reader}"')
    return code


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
