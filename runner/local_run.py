"""`plasticity run`: one trial without Ray, in a sweep's folder layout.

    OUT/<experiment>/rows/stage=run/<trial_id>.parquet    the rows so far (read_results)
    OUT/<experiment>/trials/stage=run/<trial_id>.json     its record (status, tasks done)
    OUT/<experiment>/state/<trial_id>.pt                  its state at the last task end

Rows and state are rewritten atomically after every task (rows first), so an interrupted
run keeps what it did and `--resume` continues it bit-identically from the state. A run
that exists already is never silently replaced: a longer one only with `--overwrite`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import torch

from plasticity_core.errors import ConfigError, TrainingDiverged
from runner.results import read_table, trial_rows_file, write_rows
from runner.storage import Folder
from runner.trial import Trial

STAGE = "run"


def run_locally(
    trial: Trial,
    out: str,
    *,
    overwrite: bool = False,
    resume: bool = False,
    device: str = "cpu",
    printer: Callable[[str], None] = print,
) -> Folder:
    """Runs `trial` to its end under OUT/<experiment>/; returns that folder. Raises
    ConfigError, before anything is written, when a run of it exists and neither
    `overwrite` nor `resume` says what to do with it."""
    folder = Folder(out) / trial.experiment
    rows_file = trial_rows_file(folder, STAGE, trial.trial_id)
    state_file = folder / "state" / f"{trial.trial_id}.pt"
    config = trial.config(device)
    rows, state = [], None
    if rows_file.exists() and not overwrite:
        rows, state = _existing(trial, rows_file, state_file, resume, device)
        if len(rows) == trial.tasks:
            printer(f"{rows_file}: already holds all {trial.tasks} tasks of this run")
            return folder
    printer(f"{trial.experiment}: {trial.trial_id} -> {rows_file}"
            + (f" (resuming after task {len(rows)})" if rows else ""))  # fmt: skip
    run = trial.entry.run(config, state)
    record = {"trial_id": trial.trial_id, "stage": STAGE, "seed": trial.seed,
              "params": trial.params, "tasks": trial.tasks, "device": device}  # fmt: skip
    try:
        for row in run:
            rows.append({"stage": STAGE, "trial_id": trial.trial_id, **row})
            write_rows(rows, rows_file)
            state_file.write_bytes(_state_bytes(run.state_dict()))
            _write_record(folder, record, "running", len(rows))
            printer(_progress(row, trial.tasks))
    except TrainingDiverged as err:
        _write_record(folder, record, "diverged", len(rows), error=str(err))
        raise
    _write_record(folder, record, "complete", len(rows))
    return folder


def _existing(trial: Trial, rows_file: Folder, state_file: Folder, resume: bool, device: str):
    """The rows and state to continue from, or a ConfigError saying what exists."""
    rows = read_table(rows_file).to_pylist()
    done = len(rows)
    if done > trial.tasks:
        raise ConfigError(
            f"{rows_file} holds {done} tasks of this run, more than the {trial.tasks} asked "
            "for; --overwrite replaces it with the shorter run, or ask for more --tasks"
        )
    if done == trial.tasks:
        return rows, None
    if not resume:
        raise ConfigError(
            f"{rows_file} holds {done} of {trial.tasks} tasks of this run; --resume continues "
            "it from its saved state, --overwrite starts it again"
        )
    if not state_file.exists():
        raise ConfigError(f"{state_file} is missing: cannot --resume; --overwrite starts again")
    state = torch.load(io.BytesIO(state_file.read_bytes()), weights_only=True,
                       map_location=device)  # fmt: skip
    # Rows are written before the state: a crash between the two leaves one row more,
    # which the continuation writes again.
    return rows[: int(state["task"])], state


def _state_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _write_record(folder: Folder, record: dict, status: str, done: int, **extra) -> None:
    path = folder / "trials" / f"stage={STAGE}" / f"{record['trial_id']}.json"
    path.write_text(json.dumps({**record, "status": status, "tasks_done": done, **extra}))


def _progress(row: dict, tasks: int) -> str:
    scores = "".join(f"{label} {row[key]:.3f}  " for key, label in
                     (("accuracy", "acc"), ("train_accuracy", "train"), ("loss", "loss"))
                     if key in row)  # fmt: skip
    return (
        f"task {row['task'] + 1:4d}/{tasks}  {scores}resets {row['resets']:3d}  "
        f"{row['seconds']:.2f} s"
    )
