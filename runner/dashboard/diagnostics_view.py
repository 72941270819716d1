"""Why a network stays trainable: a figure per plasticity diagnostic of the rows (the mean
over layers), per task, mean ± SE over seeds, faceted and coloured as the accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from plasticity_core.diagnostics import DIAGNOSTICS
from runner.aggregate import by_experiment, facets_of, metric_of
from runner.dashboard.axis_titles import axis_title
from runner.dashboard.controls import smoothing_title
from runner.dashboard.curve_figure import curve_figure
from runner.dashboard.curves import curves_by_column, slim
from runner.summary import preferred_stage

DIAGNOSTIC_COLUMNS = ("dormant_fraction", "effective_rank", "stable_rank",
                      "weight_magnitude", "grad_norm", "train_accuracy", "loss")  # fmt: skip
"""The columns shown, each the mean over layers (its per-layer `<name>_l<i>` are not)."""
DESCRIPTIONS = {
    **DIAGNOSTICS,
    "train_accuracy": "accuracy on the task's training examples while training on them",
    "loss": "training loss, mean over the task's steps",
}


def diagnostics_view(rows: pd.DataFrame, order: Sequence[str] | None = None
                     ) -> list[go.Figure | str]:  # fmt: skip
    """One figure per (experiment, diagnostic present in its rows), curves in `order`
    (best first; default alphabetical); an experiment's own metric is left to the
    accuracy view."""
    if rows.empty:
        return ["No per-task rows yet."]
    items: list[go.Figure | str] = []
    for name, part in by_experiment(preferred_stage(rows)):
        facets = facets_of(name)
        present = [c for c in DIAGNOSTIC_COLUMNS
                   if c != metric_of(name) and c in part and part[c].notna().any()]  # fmt: skip
        if not present:
            continue
        frame = slim(part, facets, present)
        among = frame["curve"].unique()
        seeds = int(part["seed"].nunique()) if "seed" in part else None
        curves = curves_by_column(frame, present, facets)
        for column in (c for c in present if curves[c]):
            what = f"{column}, {DESCRIPTIONS.get(column, column)}"
            title = smoothing_title(f"{name}: {what}" if name else what, seeds)
            items.append(curve_figure(curves[column], facets, title, axis_title(column, name),
                                      order=order, among=among))  # fmt: skip
    return items or ["No diagnostics in the rows (a probe_size of 0, or rows written "
                     "before the diagnostics existed)."]  # fmt: skip
