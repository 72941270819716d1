"""`plasticity status DIR`: what an experiment folder holds, without starting Ray.

Read from the project's own records only (runner.manifest): the runs a stage has come from
the spec (and the selection, for final), their states from the run records, tasks saved
from the rows, and whether a command is running the folder now from its lock. A file that
cannot be read is named and skipped; everything else is still counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from runner.lock import held_by_live_process, holder
from runner.manifest import FINISHED, load_folder_spec, stage_trials, trial_records
from runner.results import read_results
from runner.storage import Folder


@dataclass(frozen=True)
class StageStatus:
    stage: str
    trials: int
    done: int
    running: int
    pending: int
    failed: int
    diverged: int
    seeds: int
    tasks_saved: int
    tasks_planned: int
    stopped: int = 0
    """Runs left unfinished by a command that is no longer running (resume continues them)."""


def stage_status(
    folder: Folder, stage: str, rows: pd.DataFrame, bad_files: list[str] | None = None
) -> StageStatus | None:
    """Counts of one Tune stage's runs; None if the stage never started."""
    started = (folder / stage).exists() or bool(trial_records(folder, stage, bad_files=[]))
    if not started or (stage == "final" and not (folder / "selection.json").exists()):
        return None
    runs = [run for config in stage_trials(load_folder_spec(folder), folder, stage)
            for run in config["runs"]]  # fmt: skip
    records = trial_records(folder, stage, bad_files if bad_files is not None else [])
    lock = holder(folder)
    active = lock is not None and held_by_live_process(lock)
    counts = dict.fromkeys(("done", "running", "pending", "failed", "diverged", "stopped"), 0)
    for run in runs:
        status = records.get(run["trial_id"], {}).get("status")
        if status in FINISHED:
            counts["done"] += 1
            counts["diverged"] += status == "diverged"
        elif status == "failed":
            counts["failed"] += 1
        elif status == "running":
            counts["running" if active else "stopped"] += 1
        else:
            counts["pending"] += 1
    ids = {run["trial_id"] for run in runs}
    saved = rows[(rows["stage"] == stage) & rows["trial_id"].isin(ids)] if len(rows) else rows
    return StageStatus(stage=stage, trials=len(runs), seeds=len({r["seed"] for r in runs}),
                       tasks_saved=len(saved), tasks_planned=sum(r["tasks"] for r in runs),
                       **counts)  # fmt: skip


def experiment_status(folder: Folder) -> list[str]:
    spec = load_folder_spec(folder)
    lines = [f"{spec.name} ({spec.experiment}) at {folder}"]
    lock = holder(folder)
    if lock is not None and held_by_live_process(lock):
        lines.append(f"  running now: `{lock['command']}` (pid {lock['pid']} on {lock['host']})")
    bad: list[str] = []
    rows = read_results(folder, bad_files=bad)
    for stage in ("sweep", "select", "final"):
        if stage == "select":
            lines.append(_selection_line(folder))
            continue
        s = stage_status(folder, stage, rows, bad)
        if s is None:
            lines.append(f"  {stage}: not started")
            continue
        stopped = f", {s.stopped} stopped (resume continues them)" if s.stopped else ""
        lines.append(
            f"  {stage}: {s.trials} trials: {s.done} done ({s.diverged} diverged), "
            f"{s.running} running, {s.pending} pending, {s.failed} failed{stopped}; "
            f"tasks saved {s.tasks_saved}/{s.tasks_planned}"
        )
    lines += [f"  skipped {line}" for line in bad]
    return lines


def _selection_line(folder: Folder) -> str:
    if not (folder / "selection.json").exists():
        return "  select: not run"
    try:
        choices = json.loads((folder / "selection.json").read_text())["choices"]
    except (OSError, ValueError, KeyError, TypeError):
        return "  select: selection.json unreadable; `plasticity resume` runs select again"
    return f"  select: {len(choices)} configurations chosen (selection.csv)"
