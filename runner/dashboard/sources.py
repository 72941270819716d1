"""Finding and reading the result folders a dashboard is built from.

A *results root* is a folder holding

    spec.yaml     an experiment folder of `plasticity sweep` (rows/, trials/, selection.csv)
    rows/         an OUT/<experiment>/ folder of `plasticity run` (rows/stage=run/*.parquet,
                  trials/stage=run/*.json)
    reset-cost/   an output folder of `plasticity assay` (reset-cost/summary/*.parquet)

A location is a root or any folder above roots (e.g. the --out folder of several commands).
The folders inside an experiment or run folder (Tune's trial checkpoints, state/) are not
searched. A location that does not exist is bad input, and so is a set of locations that holds no
results at all; a location that holds nothing beside others that do, or a file that cannot
be read, gives a note on the page and the rest is shown.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from plasticity_core.errors import DataError
from runner.local_run import STAGE as RUN_STAGE
from runner.manifest import load_folder_spec
from runner.results import read_results, read_table
from runner.status import stage_status
from runner.storage import Folder

SWEEP = "spec.yaml"
RUN = "rows"
ASSAY = "reset-cost"


@dataclass
class Sources:
    """Everything found under the given folders."""

    rows: list[pd.DataFrame] = field(default_factory=list)
    """Per-task rows of every sweep and run folder, each with a `source` column naming it."""
    experiments: list[dict] = field(default_factory=list)
    """Per sweep folder: name, folder, stage statuses, selection table and rule."""
    runs: list[dict] = field(default_factory=list)
    """Per `plasticity run` folder: name (its rows' source), folder and trial records."""
    assay: list[pd.DataFrame] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_sources(locations: list[str]) -> Sources:
    """Finds every results root under the given folders (each counted once) and reads it.
    Raises DataError naming every location that does not exist, before reading any."""
    missing = [location for location in locations if not Folder(location).exists()]
    if missing:
        raise DataError("; ".join(f"{location}: no such folder" for location in missing))
    sources = Sources()
    seen: dict[str, bool] = {}
    """Root path -> whether it held anything."""
    for location in locations:
        roots = results_roots(Folder(location))
        for root in roots:
            if root.path not in seen:
                seen[root.path] = _load_root(root, sources)
        if not any(seen[root.path] for root in roots):
            sources.notes.append(f"{location}: no results found (no {SWEEP}, {RUN}/ with "
                                 f"Parquet files or {ASSAY}/ summaries)")  # fmt: skip
    if not any(seen.values()):
        raise DataError(f"{', '.join(locations)}: no results found (no {SWEEP}, {RUN}/ with "
                        f"Parquet files or {ASSAY}/ summaries); run `plasticity demo`, `sweep`, "
                        "`run` or `assay` first")  # fmt: skip
    return sources


def results_roots(folder: Folder) -> list[Folder]:
    """The results roots at or below `folder`, outermost first; an experiment or run
    folder is not searched further, an assay output folder is."""
    children = folder.children()
    names = {Path(child.path).name for child in children}
    if RUN in names or (folder / SWEEP).exists():
        return [folder]
    searched = [
        child
        for child in children
        if Path(child.path).name != ASSAY and not Path(child.path).name.startswith(".")
    ]
    inner = [root for child in searched for root in results_roots(child)]
    return [folder, *inner] if ASSAY in names else inner


def _load_root(root: Folder, sources: Sources) -> bool:
    """Reads what this one root holds; returns whether it held anything."""
    found = False
    if (root / SWEEP).exists():
        found = True
        sources.experiments.append(_load_sweep(root, sources))
    elif (root / RUN).exists():
        found = _load_run(root, sources)
    summaries = (root / ASSAY / "summary").files(".parquet")
    if summaries:
        found = True
        sources.assay.append(_read_all(summaries, sources))
    return found


def _source_name(root: Folder, sources: Sources) -> str:
    """The folder's name, or parent/name where another source took it already (studies
    and runs are never pooled, so two must not share a name)."""
    taken = {e["name"] for e in sources.experiments} | {r["name"] for r in sources.runs}
    name = Path(root.path).name
    return name if name not in taken else "/".join(Path(root.path).parts[-2:])


def _load_run(root: Folder, sources: Sources) -> bool:
    """A `plasticity run` folder: its rows (each file read on its own, so one unreadable
    file hides only itself) and its trial records."""
    files = (root / RUN).files(".parquet")
    records = _read_records(root / "trials" / f"stage={RUN_STAGE}", sources)
    if not files and not records:
        return False
    name = _source_name(root, sources)
    if files:
        sources.rows.append(_read_all(files, sources).assign(source=name))
    sources.runs.append({"name": name, "folder": str(root), "records": records})
    return True


def _read_records(folder: Folder, sources: Sources) -> list[dict]:
    records = []
    for file in folder.files(".json"):
        try:
            records.append(json.loads(file.read_text()))
        except (ValueError, OSError) as err:
            sources.notes.append(f"{file}: not a readable trial record ({err})")
    return records


def _read_all(files: list[Folder], sources: Sources) -> pd.DataFrame:
    frames = []
    for file in files:
        try:
            frames.append(read_table(file).to_pandas())
        except DataError as err:
            sources.notes.append(str(err))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _load_sweep(folder: Folder, sources: Sources) -> dict:
    """A sweep's experiment folder: its rows (an unreadable rows file is named in the notes
    and hides only its own rows), stage statuses and selection. Anything else that cannot be
    read becomes a note too: a broken folder must not hide the others."""
    name = _source_name(folder, sources)
    entry = {"name": name, "folder": str(folder), "stages": [], "selection": None}
    try:
        spec = load_folder_spec(folder)
        rows = read_results(folder, bad_files=sources.notes)
    except Exception as err:
        sources.notes.append(f"{folder}: {err}")
        return entry
    if len(rows):
        sources.rows.append(rows.assign(source=name))
    for stage in ("sweep", "final"):
        try:
            status = stage_status(folder, stage, rows, sources.notes)
        except Exception as err:
            sources.notes.append(f"{folder}/{stage}: stage status unreadable ({err})")
            continue
        if status is not None:
            entry["stages"].append(status)
    if (folder / "selection.csv").exists():
        entry["selection"] = pd.read_csv(io.StringIO((folder / "selection.csv").read_text()))
        entry["per"] = list(spec.select.per)
        entry["metric"] = spec.select.metric
        entry["experiment"] = spec.experiment
    return entry
