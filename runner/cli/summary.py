"""`plasticity summary FOLDER... [--last K] [--csv FILE]`: which method or utility keeps
plasticity best, as the ranked table of `runner.summary`, printed and saved as CSV.

The folders are read as the dashboard reads them (`runner.dashboard.sources`), so the two
show the same runs under the same source names.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from plasticity_core.errors import DataError
from runner.storage import Folder, is_uri
from runner.summary import format_summary, last_tasks_by_source, summary_table

CSV_NAME = "summary.csv"
STDOUT = "-"


def add_parser(sub) -> None:
    summary = sub.add_parser(
        "summary", help="rank methods and utilities per experiment, with their difference to bp"
    )
    summary.add_argument("folders", nargs="+", help="experiment or results folders (or URIs)")
    summary.add_argument(
        "--last", type=_tasks, default=None, metavar="K",
        help="score each run by its mean over its last K tasks (0 = every task; default: a "
        "sweep's select.last_tasks, every task for a `plasticity run` folder)",
    )  # fmt: skip
    summary.add_argument(
        "--csv", default=None, metavar="FILE",
        help=f"write the table as CSV here; - prints only the CSV (default: FOLDER/{CSV_NAME} "
        "for one local folder)",
    )  # fmt: skip


def _tasks(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> None:
    # Imported here: the dashboard package pulls in plotly, which other commands never need.
    from runner.dashboard.sources import load_sources

    sources = load_sources(args.folders)
    if not sources.rows:
        found = "; ".join(sources.notes) or "no per-task rows"
        raise DataError(f"nothing to summarise in {', '.join(args.folders)}: {found}")
    for note in sources.notes:
        print(note, file=sys.stderr)
    rows = pd.concat(sources.rows, ignore_index=True)
    last = args.last if args.last is not None else last_tasks_by_source(sources)
    table = summary_table(rows, last)
    if table.empty:
        raise DataError(f"{', '.join(args.folders)}: no rows hold their experiment's metric")
    csv = args.csv if args.csv is not None else _default_csv(args.folders)
    if csv == STDOUT:
        print(table.to_csv(index=False), end="")
        return
    print(format_summary(table))
    if csv:
        Folder(csv).write_text(table.to_csv(index=False))
        print(f"\nsummary: {csv}")
    else:
        print("summary: not saved (no single local folder): add --csv FILE", file=sys.stderr)


def _default_csv(folders: list[str]) -> str | None:
    """FOLDER/summary.csv for one local folder; several folders or a URI have no one home
    for the table, so it is only printed unless --csv names a file."""
    if len(folders) == 1 and not is_uri(folders[0]):
        return str(Folder(folders[0]) / CSV_NAME)
    return None
