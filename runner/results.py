"""Per-task rows on disk as Parquet, written atomically.

A file is rewritten whole through a temporary file and an atomic rename, so a reader (or a
crash) never sees half a file and a re-run of a trial replaces its rows instead of adding
duplicates.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_rows(rows: Sequence[dict], path: Path) -> None:
    """Write `rows` (dicts with the same keys) to the Parquet file `path`, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(list(rows))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
