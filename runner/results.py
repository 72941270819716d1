"""Per-task rows on disk as Parquet, written atomically, and read back as one DataFrame.

A file is rewritten whole through a temporary file and an atomic rename, so a reader (or a
crash) never sees half a file and a re-run of a trial replaces its rows instead of adding
duplicates. A sweep keeps one file per trial in a hive-partitioned dataset:

    EXPERIMENT/rows/stage=sweep/<trial_id>.parquet
    EXPERIMENT/rows/stage=final/<trial_id>.parquet
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from plasticity_core.errors import DataError
from plasticity_core.experiments import EXPERIMENTS
from runner.storage import Folder


def parquet_bytes(rows: Sequence[dict]) -> bytes:
    """`rows` (dicts with the same keys) as the bytes of one Parquet file."""
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(list(rows)), sink)
    return sink.getvalue()


def write_rows(rows: Sequence[dict], path: str | Path | Folder) -> None:
    """Write `rows` to the Parquet file `path` (local or URI), atomically."""
    target = path if isinstance(path, Folder) else Folder(path)
    target.write_bytes(parquet_bytes(rows))


def trial_rows_file(experiment: Folder, stage: str, trial_id: str) -> Folder:
    return experiment / "rows" / f"stage={stage}" / f"{trial_id}.parquet"


def read_table(file: Folder) -> pa.Table:
    try:
        # Without threads: with pyarrow 26, a threaded read from memory made the process
        # abort at exit ("terminate called without an active exception") about half the time.
        return pq.read_table(io.BytesIO(file.read_bytes()), use_threads=False)
    except (pa.ArrowException, OSError) as err:
        raise DataError(_unreadable(file, err)) from None


def _unreadable(file: Folder, err: Exception) -> str:
    """The one line naming a rows file that cannot be read, and how to get it back."""
    if "/stage=run/" in file.path:  # a `plasticity run` folder has no `resume` to rewrite it
        remedy = "run the same `plasticity run` command again to redo the run"
    else:
        remedy = "run `plasticity resume` on the experiment to rewrite it from its checkpoint"
    return f"{file}: not a readable Parquet file ({err}); delete it and {remedy}"


def read_results(
    location: str | Path | Folder,
    stage: str | None = None,
    *,
    bad_files: list[str] | None = None,
) -> pd.DataFrame:
    """Every per-task row under an experiment folder (a sweep's, or the OUT/<experiment>
    folder of `plasticity run`), or under each such folder directly inside `location`
    (e.g. the --out folder), as one DataFrame sorted by stage, trial and task. Files of
    different architectures may carry different diagnostic columns; missing ones are
    NaN/None.

    A file that is not readable Parquet (a truncated copy) raises DataError, or, when
    `bad_files` is a list, is skipped with a one-line note appended to it, so one bad file
    hides only its own rows."""
    folder = location if isinstance(location, Folder) else Folder(location)
    if not folder.exists():
        raise DataError(f"{folder} does not exist")
    holders = [folder] if (folder / "rows").exists() else [
        child for child in folder.children() if (child / "rows").exists()
    ]  # fmt: skip
    files = [f for holder in holders for f in (holder / "rows").files(".parquet")
             if stage is None or f"/stage={stage}/" in f.path]  # fmt: skip
    tables = []
    for file in files:
        try:
            table = read_table(file)
        except DataError as err:
            if bad_files is None:
                raise
            bad_files.append(str(err))
            continue
        partition = file.path.rsplit("/", 2)[-2]
        if partition.startswith("stage=") and "stage" not in table.column_names:
            table = table.append_column("stage", pa.array([partition[6:]] * len(table)))
        tables.append(table)
    if not tables:
        return pd.DataFrame()
    frame = _with_later_defaults(pa.concat_tables(tables, promote_options="permissive").to_pandas())
    keys = [k for k in ("stage", "trial_id", "task") if k in frame.columns]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def _with_later_defaults(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows written before a config field existed (`option(..., added_later=True)`) ran at
    its default: fill it in, so old and new rows of one configuration label alike."""
    if "experiment" not in frame:
        return frame
    for name in frame["experiment"].dropna().unique():
        if name not in EXPERIMENTS:
            continue
        mine = frame["experiment"] == name
        for field in dataclasses.fields(EXPERIMENTS.get(name).config):
            if not field.metadata.get("added_later"):
                continue
            if field.name not in frame:
                frame[field.name] = pd.Series([None] * len(frame), dtype=object)
            missing = mine & frame[field.name].isna()
            if missing.any():
                frame[field.name] = frame[field.name].astype(object)
                frame.loc[missing, field.name] = field.default
    return frame
