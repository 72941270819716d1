"""A trial's checkpoints: what one holds, reading it back safely, and finding the newest
readable one of a trial across every attempt at its stage.

A checkpoint is a folder the trainable wrote (`STAGE/attempt-K/TRIAL/checkpoint_N/`):

    state.pt       {"runs": each run's complete state}, loaded with weights_only=True
    rows.parquet   every row the trial's runs produced so far (absent before the first row)
    trials.json    per run its record: status, tasks done, node, device, pack

Nothing here unpickles: a planted file can make a checkpoint unreadable, never run code.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from runner.storage import Folder

ATTEMPT = re.compile(r"attempt-(\d+)$")
CHECKPOINT = re.compile(r"checkpoint_(\d+)$")


@dataclass
class Saved:
    """What one checkpoint holds."""

    records: list[dict]
    states: list | None
    rows: pa.Table | None


def read_checkpoint(folder: Folder, map_location: str = "cpu", states: bool = True) -> Saved:
    """The checkpoint in `folder`; raises OSError/ValueError/RuntimeError when a file of
    it is missing or damaged. `states=False` skips loading the model states."""
    records = json.loads((folder / "trials.json").read_text())
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError("trials.json is not a list of run records")
    saved = None
    if states:
        data = io.BytesIO((folder / "state.pt").read_bytes())
        saved = torch.load(data, weights_only=True, map_location=map_location)["runs"]
    rows = None
    if (folder / "rows.parquet").exists():
        data = (folder / "rows.parquet").read_bytes()
        rows = pq.read_table(pa.BufferReader(data), use_threads=False)
    return Saved(records, saved, rows)


def attempts(stage_folder: Folder) -> list[tuple[int, Folder]]:
    """(K, folder) of each Tune experiment `attempt-K` of a stage, in order; a stage
    folder of the layout before attempts (trials directly inside it) counts as K = -1."""
    found = [(-1, stage_folder)] if (stage_folder / "tuner.pkl").exists() else []
    for child in stage_folder.children():
        match = ATTEMPT.search(child.path)
        if match:
            found.append((int(match.group(1)), child))
    return sorted(found, key=lambda pair: pair[0])


def next_attempt(stage_folder: Folder) -> str:
    done = attempts(stage_folder)
    return f"attempt-{done[-1][0] + 1 if done else 0}"


def trial_checkpoints(stage_folder: Folder, trial_id: str) -> list[Folder]:
    """Every checkpoint folder of one Tune trial, newest first (later attempt, then higher
    index: a resumed trial only ever adds tasks)."""
    found = []
    for k, attempt in attempts(stage_folder):
        for child in (attempt / trial_id).children():
            match = CHECKPOINT.search(child.path)
            if match:
                found.append(((k, int(match.group(1))), child))
    return [folder for _, folder in sorted(found, key=lambda pair: pair[0], reverse=True)]


def newest_readable(
    stage_folder: Folder, trial_id: str, warn
) -> tuple[Folder | None, Saved | None]:
    """The newest checkpoint of a trial that reads back whole, and what it holds (without
    the model states when every run had finished: nothing will load them); each newer one
    that does not read is named through `warn`. (None, None): start from scratch."""
    skipped = []
    for folder in trial_checkpoints(stage_folder, trial_id):
        try:
            saved = read_checkpoint(folder, states=False)
            if any(record.get("status") == "running" for record in saved.records):
                saved = read_checkpoint(folder)
        except Exception as err:  # noqa: BLE001 - any damage means: try an older one
            reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else ""
            skipped.append(f"{_short(folder)} ({err.__class__.__name__}: {reason})")
            continue
        if skipped:
            warn(f"{trial_id}: skipped unreadable {', '.join(skipped)}; continuing from "
                 f"{_short(folder)}")  # fmt: skip
        return folder, saved
    if skipped:
        warn(f"{trial_id}: no readable checkpoint ({', '.join(skipped)}); starting over")
    return None, None


def _short(folder: Folder) -> str:
    """attempt-K/checkpoint_N"""
    parts = folder.path.rstrip("/").split("/")
    return f"{parts[-3]}/{parts[-1]}"


__all__ = ["Saved", "attempts", "newest_readable", "next_attempt", "read_checkpoint",
           "trial_checkpoints"]  # fmt: skip
