"""Rows as the curves a figure draws: per facet panel and curve label, the values of every
seed at every task."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from runner.aggregate import curve_labels

MISSING = "n/a"


@dataclass(frozen=True)
class Curve:
    """One curve in one facet panel."""

    label: str
    panel: tuple
    """The values of the experiment's two facets (across, down), e.g. ('relu', 'none')."""
    first_task: int
    values: np.ndarray
    """[tasks, seeds]: row i is task first_task + i; NaN where a seed has no row."""

    @property
    def tasks(self) -> int:
        return len(self.values)

    @property
    def seeds(self) -> int:
        return self.values.shape[1]


def slim(rows: pd.DataFrame, facets: tuple[str, str], columns: list[str]) -> pd.DataFrame:
    """One experiment's rows reduced to facets, curve, task, seed and `columns` (those
    present), labelled per source: several sources prefix their curves with their name
    ('study: cbp+gxd'), so studies are never pooled."""
    return prefixed(by_source(rows, facets, columns))


def prefixed(parts: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """The parts of `by_source` as one frame, curves prefixed 'source: ' when several."""
    if len(parts) == 1:
        return parts[0][1]
    return pd.concat([frame.assign(curve=f"{source}: " + frame["curve"])
                      for source, frame in parts], ignore_index=True)  # fmt: skip


def by_source(rows: pd.DataFrame, facets: tuple[str, str],
              columns: list[str]) -> list[tuple[str, pd.DataFrame]]:  # fmt: skip
    """(source, its slim rows with unprefixed labels) per source, in name order; rows of
    one source (or without the column) are one part."""
    if "source" not in rows or rows["source"].nunique() <= 1:
        source = str(rows["source"].iloc[0]) if "source" in rows and len(rows) else ""
        return [(source, _slim(rows, facets, columns))]
    return [(str(source), _slim(part, facets, columns))
            for source, part in rows.groupby("source", sort=True)]  # fmt: skip


def _slim(rows: pd.DataFrame, facets: tuple[str, str], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame({
        facet: rows[facet].astype(object).where(rows[facet].notna(), MISSING)
        if facet in rows else MISSING for facet in facets
    } | {
        "curve": curve_labels(rows, facets),
        "task": rows["task"].astype(int),
        "seed": rows["seed"] if "seed" in rows else 0,
    }, index=rows.index)  # fmt: skip
    for column in columns:
        if column in rows:
            frame[column] = pd.to_numeric(rows[column], errors="coerce")
    return frame.reset_index(drop=True)


def curves_of(frame: pd.DataFrame, column: str, facets: tuple[str, str]) -> list[Curve]:
    """The curves of `column` in a frame of `slim` (or any frame with the facets, curve,
    task, optionally seed, and the column); see `curves_by_column`."""
    return curves_by_column(frame, [column], facets)[column]


def curves_by_column(frame: pd.DataFrame, columns: list[str],
                     facets: tuple[str, str]) -> dict[str, list[Curve]]:  # fmt: skip
    """Column -> its curves, from one grouping of the frame (a paper-size study has
    ~400k rows): tasks filled into a contiguous range, so a curve is drawn from x0 with
    step 1; seeds and curves without a value left out."""
    columns = [c for c in columns if c in frame]
    out: dict[str, list[Curve]] = {c: [] for c in columns}
    if not columns or frame.empty:
        return out
    data = frame if "seed" in frame else frame.assign(seed=0)
    keys = [*facets, "curve", "task", "seed"]
    table = data.groupby(keys, sort=True)[columns].mean()
    for key, part in table.groupby(level=[0, 1, 2], sort=False):
        part = part.droplevel([0, 1, 2])
        for column in columns:
            seeds = part[column].unstack("seed").dropna(axis=1, how="all").dropna(how="all")
            if seeds.empty:
                continue
            first, last = int(seeds.index.min()), int(seeds.index.max())
            values = seeds.reindex(range(first, last + 1)).to_numpy(dtype=float)
            out[column].append(Curve(str(key[2]), (key[0], key[1]), first, values))
    return out


def panel_order(panels) -> list[tuple]:
    """Facet panels down the rows first, then across (8 before 16, text after numbers)."""

    def natural(value) -> tuple:
        try:
            return 0, float(value), ""
        except (TypeError, ValueError):
            return 1, 0.0, str(value)

    return sorted(set(panels), key=lambda p: (natural(p[1]), natural(p[0])))
