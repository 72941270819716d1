"""The spec-driven commands: sweep, resume, status and demo (see runner.cli).

Everything a command can check is checked before Ray is imported (the spec, the folder,
its lock), so bad input costs no Ray start-up. A stage that does not complete never reports
success: the last line says what finished and how to continue, and the exit code is 1
(runs failed, or the driver hit an error such as a full disk) or 130 (interrupted).
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
from collections.abc import Iterator

import pandas as pd

from plasticity_core.data.catalog import missing_folder
from plasticity_core.errors import ConfigError
from runner.lock import folder_lock
from runner.manifest import asked_stages, load_folder_spec, prepare
from runner.results import read_results
from runner.spec import STAGES, SweepSpec, load_spec
from runner.status import experiment_status
from runner.storage import Folder

INTERRUPTED = 130


def sweep(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, dict(args.overrides), max_trials=args.max_trials)
    stages = list(STAGES) if args.stage == "all" else [args.stage]
    _check_data(spec, embedded=args.address is None)
    return _run(spec, prepare(spec, args.out), stages, args)


def resume(args: argparse.Namespace) -> int:
    folder = Folder(args.folder)
    spec = load_folder_spec(folder)
    _check_data(spec, embedded=args.address is None)
    return _run(spec, folder, asked_stages(folder), args)


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
        print(f"ranked table: plasticity summary {folder}")
        print(f"see the curves: plasticity dashboard {folder}")
    return code


def plasticity_lines(final: pd.DataFrame, metric: str = "loss") -> list[str]:
    """Per method, from the seed-mean curve of the final runs: its error over the first and
    the last fifth of the tasks (a growing error is lost plasticity), and bp's late error
    against each other method's on the same streams (a seed draws the same stream for
    every method)."""
    lines = ["final runs: error (mean over seeds) per flip period"]
    early, late = {}, {}
    for (method, utility), runs in final.groupby(["method", "utility"], sort=False):
        curve = runs.groupby("task")[metric].mean()
        fifth = max(1, len(curve) // 5)
        label = method if utility == "none" else f"{method}+{utility}"
        early[label], late[label] = curve.iloc[:fifth].mean(), curve.iloc[-fifth:].mean()
        lines.append(f"  {label:<18} first fifth {early[label]:.3f}  last fifth "
                     f"{late[label]:.3f}  ({runs['seed'].nunique()} seeds)")  # fmt: skip
    growth = {k: late[k] / early[k] for k in late}
    lines.append("error growth (last fifth / first fifth of the steps): "
                 + ", ".join(f"{k} {g:.2f}x" for k, g in growth.items()))  # fmt: skip
    others = [k for k in late if k != "bp"]
    if "bp" in late and others:
        lines.append("bp's late error / theirs: "
                     + ", ".join(f"{k} {late['bp'] / late[k]:.2f}x" for k in others))  # fmt: skip
        kept = [k for k in others if growth[k] < growth["bp"] and late[k] < late["bp"]]
        if kept:
            lines.append(f"=> on the same streams {', '.join(kept)} kept learning and ended "
                         f"below bp, whose error went to {growth['bp']:.2f}x its start: bp "
                         "is losing plasticity")  # fmt: skip
        else:
            lines.append("=> no method kept more plasticity than bp in this run")
    return lines


def _run(spec: SweepSpec, folder: Folder, stages: list[str], args: argparse.Namespace) -> int:
    command = shlex.join(["plasticity", *sys.argv[1:]]) if sys.argv[1:] else "plasticity"
    with folder_lock(folder, command):
        from runner.ray_session import ray_session  # Ray only once the input is known good
        from runner.sweep import run_stages

        try:
            with ray_session(args.address, args.num_cpus, args.num_gpus,
                             args.dashboard) as resources:  # fmt: skip
                with _sigterm_interrupts():  # after ray.init, which installs Ray's (abort)
                    _check_resources(spec, resources, embedded=args.address is None)
                    stopped = run_stages(spec, folder, stages)
        except KeyboardInterrupt:  # a second Ctrl-C, or a signal outside a Tune stage
            print(f"interrupted; continue with `plasticity resume {folder}`", file=sys.stderr)
            return INTERRUPTED
    print(f"results: {folder}")
    if stopped is None:
        return 0
    how = f"stopped by an error: {stopped.error}; " if stopped.error else ""
    print(f"[{stopped.stage}] {how}{stopped.finished}/{stopped.runs} runs finished, "
          f"{stopped.failed} failed, {stopped.unfinished} not finished; fix any cause and "
          f"continue with `plasticity resume {folder}`", file=sys.stderr)  # fmt: skip
    interrupted = not stopped.error and not stopped.failed
    return INTERRUPTED if interrupted else 1


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM as Ctrl-C while the stages run (Ray's handler would abort the driver with a
    stack dump); inside a Tune stage runner.sweep makes it Tune's graceful stop."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_data(spec: SweepSpec, embedded: bool) -> None:
    """Data folders the trials would read, checked before any starts: on this machine's
    Ray they see this disk; a cluster's nodes may have folders this machine lacks."""
    sources = {getattr(spec.build(point, seed=0), "data", None) for point in spec.configurations()}
    missing = sorted(filter(None, (missing_folder(s) for s in sources if isinstance(s, str))))
    if missing and embedded:
        raise ConfigError("; ".join(missing) + " (fix `data` in the spec, or --set data=DIR)")
    for problem in missing:
        print(f"warning: {problem} on this machine; the cluster's trials look on their nodes")


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
