"""`plasticity status DIR`: what an experiment folder holds, without starting Ray.

Trial states come from Ray Tune's experiment state (saved periodically while a stage runs);
tasks completed come from the rows and trial records the runner collected.
"""

from __future__ import annotations

import json

from ray.tune import ExperimentAnalysis

from runner.results import read_results
from runner.storage import Folder
from runner.sweep import load_folder_spec, trial_records


def experiment_status(folder: Folder) -> list[str]:
    spec = load_folder_spec(folder)
    lines = [f"{spec.name} ({spec.experiment}) at {folder}"]
    rows = read_results(folder)
    for stage in ("sweep", "select", "final"):
        if stage == "select":
            done = (folder / "selection.json").exists()
            if done:
                choices = json.loads((folder / "selection.json").read_text())["choices"]
                lines.append(f"  select: {len(choices)} configurations chosen (selection.csv)")
            else:
                lines.append("  select: not run")
            continue
        if not (folder / stage / "tuner.pkl").exists():
            lines.append(f"  {stage}: not started")
            continue
        analysis = ExperimentAnalysis((folder / stage).uri)
        states: dict[str, int] = {}
        for trial in analysis.trials:
            states[trial.status] = states.get(trial.status, 0) + 1
        records = trial_records(folder, stage)
        diverged = sum(r["status"] == "diverged" for r in records.values())
        planned = sum(trial.config["trial"]["tasks"] for trial in analysis.trials)
        stage_rows = int((rows["stage"] == stage).sum()) if len(rows) else 0
        lines.append(
            f"  {stage}: {len(analysis.trials)} trials: {states.get('TERMINATED', 0)} done "
            f"({diverged} diverged), {states.get('RUNNING', 0)} running, "
            f"{states.get('PENDING', 0)} pending, {states.get('ERROR', 0)} failed; "
            f"tasks saved {stage_rows}/{planned}"
        )
    return lines
