"""The dashboard's views: Plotly figures and HTML tables modelled on the paper's figures.

A view returns a figure, an HTML fragment ('<...'), or a sentence saying why there is
nothing to show; the curve views return one item per experiment and take `order`, the
curve labels best first, for their legends. This module holds the accuracy, relative,
sweep and overview views and re-exports the rest, so the page imports views from here:

    curve_figure.py      the faceted per-task figure every curve view shares
    curves.py            rows -> curves (per panel and label: seeds x tasks)
    smoothing.py         moving-average windows, thinning and rounding of the arrays
    controls.py          smoothing / log y / seeds / curve-filter menus (Plotly's own)
    identity.py          one colour per method or utility, dashes for variants, ranking
    axis_titles.py       y-axis titles with units
    diagnostics_view.py  a figure per plasticity diagnostic
    compare_view.py      the first study minus each other study
    assay_view.py        Shock@5% (L1, KL) and the Spearman table beside the paper's
    figure_config.py     FIGURE_CONFIG and MODEBAR_SCRIPT (SVG and PNG downloads)
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from runner.aggregate import (
    by_experiment,
    curve_label,
    facets_of,
    metric_of,
    relative_to_baseline,
)
from runner.dashboard.assay_view import assay_view, spearman_table
from runner.dashboard.axis_titles import axis_title, delta_title
from runner.dashboard.compare_view import compare_view
from runner.dashboard.controls import smoothing_title
from runner.dashboard.curve_figure import Options, curve_figure
from runner.dashboard.curves import by_source, curves_of, prefixed, slim
from runner.dashboard.diagnostics_view import diagnostics_view
from runner.dashboard.figure_config import FIGURE_CONFIG, MODEBAR_SCRIPT
from runner.dashboard.identity import ranked, style_of
from runner.dashboard.sources import ASSAY, RUN_STAGE, Sources
from runner.summary import preferred_stage

__all__ = [
    "FIGURE_CONFIG", "MODEBAR_SCRIPT", "View", "accuracy_view", "assay_view", "compare_view",
    "diagnostics_view", "overview_table", "relative_view", "spearman_table", "style_of",
    "sweep_view",
]  # fmt: skip

View = go.Figure | str


def accuracy_view(rows: pd.DataFrame, order: Sequence[str] | None = None) -> list[View]:
    """Test accuracy (an experiment's metric) per task, mean ± SE across seeds: one figure
    per experiment, faceted by the experiment's two facets (activation × norm for Permuted
    MNIST), curves in `order` (best first; default alphabetical), per-seed lines on request."""
    if rows.empty:
        return ["No per-task rows yet: run `plasticity demo`, `plasticity sweep` or `run`."]
    figures: list[View] = []
    for name, part in by_experiment(preferred_stage(rows)):
        metric, facets = metric_of(name), facets_of(name)
        frame = slim(part, facets, [metric])
        curves = curves_of(frame, metric, facets)
        if not curves:
            continue
        what = "test accuracy" if metric == "accuracy" else axis_title(metric, name)
        title = smoothing_title(_titled(name, f"{what} per task"), _seeds(part))
        figures.append(curve_figure(curves, facets, title, axis_title(metric, name),
                                    order=order, among=frame["curve"].unique(),
                                    options=Options(seed_lines=True)))  # fmt: skip
    return figures


def relative_view(rows: pd.DataFrame, order: Sequence[str] | None = None) -> list[View]:
    """An experiment's metric minus the bp baseline's at each task (paper Fig. 4 right),
    moving-averaged over a tenth of the run (at most 50 tasks, the paper's; the title says
    which, the buttons switch), one figure per experiment."""
    if rows.empty:
        return ["No per-task rows yet."]
    items: list[View] = []
    for name, part in by_experiment(preferred_stage(rows)):
        facets, metric = facets_of(name), metric_of(name)
        parts = by_source(part, facets, [metric])
        if metric not in parts[0][1]:
            continue
        delta = _relative(parts, name, facets, metric)
        curves = curves_of(delta, "delta", facets)
        if not curves:
            items.append(_titled(name, f"no bp baseline in the same {facets[0]} and "
                                       f"{facets[1]}: add method bp to the grid to see "
                                       "accuracy relative to backprop."))  # fmt: skip
            continue
        what = f"{metric} − that of the best bp curve of each panel"
        title = smoothing_title(_titled(name, what), None)
        items.append(curve_figure(
            curves, facets, title, delta_title(metric, name, "bp"), order=order,
            among=prefixed(parts)["curve"].unique(), options=Options(band=False, log_toggle=False,
                                                           zero_line=True),
        ))  # fmt: skip
    return items


def sweep_view(experiment: dict, order: Sequence[str] | None = None) -> View:
    """The selection metric of every swept configuration, per group (the spec's `per`);
    winners starred; groups in `order` (best first; default alphabetical)."""
    table = experiment.get("selection")
    if table is None or table.empty:
        return f"{experiment['name']}: no selection yet (the select stage has not run)."
    per = [c for c in experiment["per"] if c in table]
    summary = {"config_hash", "score", "score_se", "seeds", "diverged", "selected"}
    tuned = [c for c in table.columns if c not in summary and c not in per]
    table = table.assign(
        group=table[per].apply(_group_label, axis=1) if per else "all",
        setting=table[tuned].astype(str).apply(
            lambda r: ", ".join(f"{k}={v}" for k, v in r.items()), axis=1
        ) if tuned else "",
    )  # fmt: skip
    fig = go.Figure()
    groups = ranked(table["group"], order)
    for rank, group in enumerate(groups):
        part, style = table[table["group"] == group], style_of(group, groups)
        fig.add_trace(go.Scatter(
            x=part["setting"], y=part["score"], name=group, mode="markers+lines",
            error_y={"type": "data", "array": part["score_se"].fillna(0)},
            marker={"color": style["color"]}, line={**style, "width": 1},
            legendrank=10 * (rank + 1),
        ))  # fmt: skip
    chosen = table[table["selected"]]
    fig.add_trace(go.Scatter(
        x=chosen["setting"], y=chosen["score"], name="selected", mode="markers",
        marker={"symbol": "star", "size": 16, "color": "gold", "line": {"color": "black",
                                                                         "width": 1}},
        text=chosen["group"], hovertemplate="%{text}: %{y:.4f} (selected)<extra></extra>",
        legendrank=10 * (len(groups) + 1),
    ))  # fmt: skip
    metric, kind = experiment["metric"], experiment.get("experiment", "")
    fig.update_layout(
        title=f"{experiment['name']}: {experiment['metric']} per configuration "
        "(mean ± SE over sweep seeds)",
        xaxis_title=", ".join(tuned) or "configuration",
        yaxis_title=f"{axis_title(metric, kind)}, the selection's mean",
        height=420,
        plot_bgcolor="white",
    )
    fig.update_yaxes(showgrid=True, gridcolor="#e5e5e5")
    return fig


def overview_table(sources: Sources, rows: pd.DataFrame) -> str:
    """Trials, seeds, tasks completed, failed and diverged trials per experiment/stage."""
    lines = []
    for exp in sources.experiments:
        for s in exp["stages"]:
            tasks = f"{s.tasks_saved}/{s.tasks_planned}"
            unfinished = s.running + s.pending
            lines.append(
                (exp["name"], s.stage, s.trials, s.seeds, tasks, unfinished, s.failed, s.diverged)
            )
    lines.extend(_run_line(run, rows) for run in sources.runs)
    for frame in sources.assay:
        lines.append((ASSAY, "assay", len(frame.groupby(["activation", "seed", "checkpoint"])),
                      frame["seed"].nunique(), "", "", "", ""))  # fmt: skip
    if not lines:
        return '<p class="empty">No experiments found.</p>'
    head = ("experiment", "stage", "trials", "seeds", "tasks saved", "unfinished", "failed",
            "diverged")  # fmt: skip
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in line) + "</tr>"
                    for line in lines)  # fmt: skip
    header = "".join(f"<th>{h}</th>" for h in head)
    return f'<table class="data" data-table="overview"><tr>{header}</tr>{cells}</table>'


def _run_line(run: dict, rows: pd.DataFrame) -> tuple:
    """A `plasticity run` folder's line: trials, seeds and tasks from its stage=run rows;
    planned tasks, unfinished (status running) and diverged trials from its records."""
    part = rows
    if not rows.empty:
        part = rows[(rows["source"] == run["name"]) & (rows.get("stage", RUN_STAGE) == RUN_STAGE)]
    records = run["records"]
    trials = {*part.get("trial_id", ()), *(r["trial_id"] for r in records if "trial_id" in r)}
    seeds = {*part.get("seed", ()), *(r["seed"] for r in records if "seed" in r)}
    tasks = str(len(part))
    if not records:
        return run["name"], RUN_STAGE, len(trials), len(seeds), tasks, "", "", ""
    statuses = [r.get("status") for r in records]
    planned = sum(int(r.get("tasks", 0)) for r in records)
    return (run["name"], RUN_STAGE, len(trials), len(seeds), f"{tasks}/{planned}",
            statuses.count("running"), "", statuses.count("diverged"))  # fmt: skip


def _group_label(values: pd.Series) -> str:
    """'cbp+gxd relu' from method, utility and the other per-group values (norm shown
    only when there is one); 'gxd' where the groups are per utility alone."""
    parts = []
    if "method" in values:
        parts.append(curve_label(values["method"], values.get("utility", "none")))
    elif "utility" in values:
        parts.append(str(values["utility"]))
    for key, value in values.items():
        if key in ("method", "utility") or (key == "norm" and value == "none"):
            continue
        parts.append(f"norm={value}" if key == "norm" else str(value))
    return " ".join(parts)


def _titled(experiment: str, text: str) -> str:
    return f"{experiment}: {text}" if experiment else text


def _seeds(rows: pd.DataFrame) -> int | None:
    return int(rows["seed"].nunique()) if "seed" in rows else None


def _relative(parts: list[tuple[str, pd.DataFrame]], name: str, facets: tuple[str, str],
              metric: str) -> pd.DataFrame:  # fmt: skip
    """Per source (the parts of `by_source`), each curve's mean minus the best bp curve's
    of its panel, unsmoothed (the figure smooths); curves prefixed with their source when
    there are several."""
    deltas = []
    for source, frame in parts:
        stats = (frame.groupby([*facets, "curve", "task"], sort=True)[metric].mean()
                 .rename("mean").reset_index().assign(experiment=name))  # fmt: skip
        delta = relative_to_baseline(stats, window=1)
        if len(parts) > 1:
            delta = delta.assign(curve=f"{source}: " + delta["curve"].astype(str))
        deltas.append(delta)
    return pd.concat(deltas, ignore_index=True)
