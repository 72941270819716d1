"""`plasticity status DIR`: what an experiment folder holds, without starting Ray.

Trial states come from Ray Tune's experiment state (saved periodically while a stage runs);
tasks completed come from the rows and trial records the runner collected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
from ray.tune import ExperimentAnalysis

from runner.results import read_results
from runner.storage import Folder
from runner.sweep import load_folder_spec, trial_records


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


def stage_status(folder: Folder, stage: str, rows: pd.DataFrame) -> StageStatus | None:
    """Counts for one Tune stage of an experiment folder; None if it never started."""
    if not (folder / stage / "tuner.pkl").exists():
        return None
    analysis = ExperimentAnalysis((folder / stage).uri)
    states: dict[str, int] = {}
    seeds, runs = set(), 0
    for trial in analysis.trials:  # a Tune trial may be a pack: count its runs
        members = trial.config["trial"]["runs"]
        states[trial.status] = states.get(trial.status, 0) + len(members)
        seeds.update(run["seed"] for run in members)
        runs += len(members)
    records = trial_records(folder, stage)
    stage_rows = rows[rows["stage"] == stage] if len(rows) else rows
    return StageStatus(
        stage=stage,
        trials=runs,
        done=states.get("TERMINATED", 0),
        running=states.get("RUNNING", 0),
        pending=states.get("PENDING", 0),
        failed=states.get("ERROR", 0),
        diverged=sum(r["status"] == "diverged" for r in records.values()),
        seeds=len(seeds),
        tasks_saved=len(stage_rows),
        tasks_planned=sum(trial.config["trial"]["tasks"] for trial in analysis.trials),
    )


def experiment_status(folder: Folder) -> list[str]:
    spec = load_folder_spec(folder)
    lines = [f"{spec.name} ({spec.experiment}) at {folder}"]
    rows = read_results(folder)
    for stage in ("sweep", "select", "final"):
        if stage == "select":
            if (folder / "selection.json").exists():
                choices = json.loads((folder / "selection.json").read_text())["choices"]
                lines.append(f"  select: {len(choices)} configurations chosen (selection.csv)")
            else:
                lines.append("  select: not run")
            continue
        s = stage_status(folder, stage, rows)
        if s is None:
            lines.append(f"  {stage}: not started")
            continue
        lines.append(
            f"  {stage}: {s.trials} trials: {s.done} done ({s.diverged} diverged), "
            f"{s.running} running, {s.pending} pending, {s.failed} failed; "
            f"tasks saved {s.tasks_saved}/{s.tasks_planned}"
        )
    return lines
