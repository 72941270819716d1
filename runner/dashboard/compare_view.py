"""Compare two studies: where the rows come from several sources (result folders), the
first source's curves minus each other source's matching curve (same experiment, facet
panel and curve label), per task."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from runner.aggregate import by_experiment, facets_of, metric_of
from runner.dashboard.axis_titles import delta_title
from runner.dashboard.controls import smoothing_title
from runner.dashboard.curve_figure import Options, curve_figure
from runner.dashboard.curves import by_source, curves_of
from runner.summary import preferred_stage

NEED_TWO = ("Compare two studies: give the dashboard two or more result folders (e.g. the "
            "same study run on two machines or code versions).")  # fmt: skip


def compare_view(rows: pd.DataFrame, order: Sequence[str] | None = None
                 ) -> list[go.Figure | str]:  # fmt: skip
    """Per experiment, the difference of the mean across seeds of matching curves, first
    source (in the order the rows came) minus each other, curves in `order`."""
    if rows.empty or "source" not in rows or rows["source"].nunique() < 2:
        return [NEED_TWO]
    items: list[go.Figure | str] = []
    for name, part in by_experiment(preferred_stage(rows)):
        facets, metric = facets_of(name), metric_of(name)
        if part["source"].nunique() < 2 or metric not in part:
            continue
        arrival = list(part["source"].astype(str).unique())
        parts = sorted(by_source(part, facets, [metric]), key=lambda p: arrival.index(p[0]))
        first, others = parts[0], parts[1:]
        delta = pd.concat([_difference(first, other, facets, metric, len(others) > 1)
                           for other in others], ignore_index=True)  # fmt: skip
        curves = curves_of(delta, "delta", facets)
        versus = " and ".join(source for source, _ in others)
        if not curves:
            items.append(f"{name}: {first[0]} and {versus} share no curve (the same "
                         f"{facets[0]}, {facets[1]} and label) to compare.")  # fmt: skip
            continue
        title = smoothing_title(f"{name}: {first[0]} − {versus}, {metric} of matching curves",
                                None)  # fmt: skip
        items.append(curve_figure(
            curves, facets, title, delta_title(metric, name, versus), order=order,
            options=Options(band=False, log_toggle=False, zero_line=True),
        ))  # fmt: skip
    return items or [NEED_TWO]


def _difference(first: tuple[str, pd.DataFrame], other: tuple[str, pd.DataFrame],
                facets: tuple[str, str], metric: str, name_pair: bool) -> pd.DataFrame:  # fmt: skip
    """Columns facets, curve, task, delta: first's mean minus other's at each task both
    have; curves named 'cbp+gxd (A − B)' where several pairs share the figure."""
    keys = [*facets, "curve", "task"]
    means = [frame.groupby(keys, sort=True)[metric].mean() for _, frame in (first, other)]
    delta = (means[0] - means[1]).dropna().rename("delta").reset_index()
    if name_pair:
        delta["curve"] = delta["curve"] + f" ({first[0]} − {other[0]})"
    return delta
