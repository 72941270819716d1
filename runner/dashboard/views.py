"""The dashboard's views: Plotly figures and HTML tables modelled on the paper's figures.

A view returns a figure, an HTML fragment ('<...'), or a sentence saying why there is
nothing to show; the accuracy views return one item per experiment.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from runner.aggregate import (
    by_experiment,
    curve_label,
    curve_stats,
    facets_of,
    mean_se,
    metric_of,
    relative_to_baseline,
)
from runner.dashboard.sources import ASSAY, RUN_STAGE, Sources

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip
View = go.Figure | str


def accuracy_view(rows: pd.DataFrame) -> list[View]:
    """Test accuracy per task, mean ± SE across seeds: one figure per experiment, faceted
    by the experiment's two facets (activation × norm for Permuted MNIST)."""
    if rows.empty:
        return ["No per-task rows yet: run `plasticity demo`, `plasticity sweep` or `run`."]
    figures = []
    for name, part in by_experiment(_preferred_stage(rows)):
        metric = metric_of(name)
        if metric not in part:
            continue
        stats = _per_source(part, lambda r, m=metric: curve_stats(r, m))
        label = "test accuracy" if metric == "accuracy" else metric
        figures.append(_faceted(stats, facets_of(name), _titled(name, label), band=True))
    return figures


def relative_view(rows: pd.DataFrame, window: int = 50) -> list[View]:
    """Accuracy minus the bp baseline's, 50-task moving average (paper Fig. 4 right), one
    figure per experiment."""
    if rows.empty:
        return ["No per-task rows yet."]
    items: list[View] = []
    for name, part in by_experiment(_preferred_stage(rows)):
        facets, metric = facets_of(name), metric_of(name)
        if metric not in part:
            continue

        def delta_of(r: pd.DataFrame, m: str = metric) -> pd.DataFrame:
            return relative_to_baseline(curve_stats(r, m), window=window)

        delta = _per_source(part, delta_of)
        if delta.empty:
            items.append(_titled(name, f"no bp baseline in the same {facets[0]} and "
                                       f"{facets[1]}: add method bp to the grid to see "
                                       "accuracy relative to backprop."))  # fmt: skip
            continue
        title = _titled(name, f"{metric} − bp ({window}-task moving average)")
        fig = _faceted(delta.rename(columns={"delta": "mean"}), facets, title, band=False)
        fig.add_hline(y=0, line_dash="dot", line_color="#555")
        items.append(fig)
    return items


def sweep_view(experiment: dict) -> View:
    """The selection metric of every swept configuration, per group; winners starred."""
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
    for i, (group, part) in enumerate(table.groupby("group", sort=False)):
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(
            x=part["setting"], y=part["score"], name=group, mode="markers+lines",
            error_y={"type": "data", "array": part["score_se"].fillna(0)},
            marker={"color": color}, line={"color": color, "width": 1},
        ))  # fmt: skip
    chosen = table[table["selected"]]
    fig.add_trace(go.Scatter(
        x=chosen["setting"], y=chosen["score"], name="selected", mode="markers",
        marker={"symbol": "star", "size": 16, "color": "gold", "line": {"color": "black",
                                                                         "width": 1}},
        text=chosen["group"], hovertemplate="%{text}: %{y:.4f} (selected)<extra></extra>",
    ))  # fmt: skip
    fig.update_layout(
        title=f"{experiment['name']}: {experiment['metric']} per configuration "
        "(mean ± SE over sweep seeds)",
        xaxis_title=", ".join(tuned) or "configuration",
        yaxis_title=experiment["metric"],
        height=420,
    )
    return fig


def assay_view(summary: pd.DataFrame) -> View:
    """Shock@5% per utility with the oracle, mean ± SE over seeds × checkpoints (Fig. 2)."""
    if summary.empty or "shock5_l1" not in summary:
        return "No reset-cost assay results: run `plasticity assay`."
    fig = go.Figure()
    order = list(dict.fromkeys(summary["utility"]))
    for i, (activation, part) in enumerate(summary.groupby("activation", sort=False)):
        stats = [mean_se(part.loc[part["utility"] == u, "shock5_l1"]) for u in order]
        fig.add_trace(go.Bar(
            x=order, y=[m for m, _ in stats], name=activation,
            error_y={"type": "data", "array": [0 if pd.isna(s) else s for _, s in stats]},
            marker_color=PALETTE[i % len(PALETTE)],
        ))  # fmt: skip
    fig.update_layout(
        barmode="group",
        title="Shock@5%: mean logit-L1 shock of each layer's lowest-scoring 5% (lower is "
        "better; oracle = ranking by the shock itself)",
        yaxis_title="Shock@5% (L1)",
        height=420,
    )
    return fig


SPEARMAN_COLUMNS = {
    "spearman_l1_pooled": "L1 pooled", "spearman_l1_per_layer": "L1 per layer",
    "spearman_kl_pooled": "KL pooled", "spearman_kl_per_layer": "KL per layer",
}  # fmt: skip
"""Summary columns of the assay's Spearman table: pooled over every unit, mean per layer."""


def spearman_table(summary: pd.DataFrame) -> str:
    """Spearman ρ between each utility and the realized shock (paper Tables 1/7), pooled
    and per layer; the best utility of each column in bold."""
    # Rows written before the per-layer columns existed hold the pooled value only.
    summary = summary.rename(columns={"spearman_l1": "spearman_l1_pooled",
                                      "spearman_kl": "spearman_kl_pooled"})  # fmt: skip
    columns = [c for c in SPEARMAN_COLUMNS if c in summary]
    if summary.empty or not columns:
        return ""
    order = [u for u in dict.fromkeys(summary["utility"]) if u != "oracle"]
    activations = list(dict.fromkeys(summary["activation"]))
    head = "".join(f"<th>{html.escape(a)} {SPEARMAN_COLUMNS[c]}</th>"
                   for a in activations for c in columns)  # fmt: skip
    stats = {
        (utility, activation, column): mean_se(
            summary.loc[(summary["utility"] == utility) & (summary["activation"] == activation),
                        column]
        )
        for utility in order for activation in activations for column in columns
    }  # fmt: skip
    best = {
        (activation, column): max(order, key=lambda u: _or_low(stats[u, activation, column][0]))
        for activation in activations for column in columns
    }  # fmt: skip
    body = []
    for utility in order:
        cells = []
        for activation in activations:
            for column in columns:
                text = _pm(*stats[utility, activation, column])
                if best[activation, column] == utility:
                    text = f"<b>{text}</b>"
                cells.append(f"<td>{text}</td>")
        body.append(f"<tr><th>{html.escape(utility)}</th>{''.join(cells)}</tr>")
    rows = "".join(body)
    return ('<h3>Spearman ρ between utility and realized shock, mean ± SE over seeds × '
            'checkpoints (higher is better, best in bold; pooled: every unit in one ranking, '
            'per layer: the mean of each layer\'s; paper Tables 1/7)</h3><table class="data" '
            f'data-table="spearman"><tr><th>utility</th>{head}</tr>{rows}</table>')  # fmt: skip


def _or_low(value: float) -> float:
    return -math.inf if math.isnan(value) else value


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
    only when there is one)."""
    parts = []
    if "method" in values:
        parts.append(curve_label(values["method"], values.get("utility", "none")))
    for key, value in values.items():
        if key in ("method", "utility") or (key == "norm" and value == "none"):
            continue
        parts.append(f"norm={value}" if key == "norm" else str(value))
    return " ".join(parts)


def _pm(mean: float, se: float) -> str:
    if pd.isna(mean):
        return "n/a"
    return f"{mean:.3f}" if pd.isna(se) else f"{mean:.3f} ± {se:.3f}"


def _titled(experiment: str, text: str) -> str:
    return f"{experiment}: {text}" if experiment else text


def _per_source(rows: pd.DataFrame, compute: Callable[[pd.DataFrame], pd.DataFrame]):
    """`compute` on each source's rows (an experiment folder or a run folder); curves are
    prefixed with their source when there are several, so studies are never pooled."""
    if "source" not in rows or rows["source"].nunique() == 1:
        return compute(rows)
    parts = []
    for source, part in rows.groupby("source", sort=True):
        result = compute(part)
        parts.append(result.assign(curve=f"{source}: " + result["curve"].astype(str)))
    return pd.concat(parts, ignore_index=True)


def _preferred_stage(rows: pd.DataFrame) -> pd.DataFrame:
    """Final runs where a study has them (the reported seeds), else everything."""
    if "stage" not in rows:
        return rows
    parts = []
    for _, part in rows.groupby("source", sort=False) if "source" in rows else [(None, rows)]:
        final = part[part["stage"] == "final"]
        parts.append(final if len(final) else part)
    return pd.concat(parts, ignore_index=True)


def _faceted(stats: pd.DataFrame, facets: tuple[str, str], title: str, band: bool) -> go.Figure:
    """A grid of subplots, facets[0] across its columns and facets[1] down its rows; a
    line per curve (and its ± SE band with `band`), one colour and legend entry each."""
    across, down = facets
    columns, rows = _levels(stats[across]), _levels(stats[down])
    fig = make_subplots(
        rows=len(rows), cols=len(columns), shared_yaxes=True,
        subplot_titles=[f"{across}={c}, {down}={r}" for r in rows for c in columns],
    )  # fmt: skip
    colors = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(sorted(stats["curve"].unique()))}
    shown = set()
    for (column, row, curve), part in stats.groupby([across, down, "curve"], sort=True,
                                                    dropna=False):  # fmt: skip
        cell = {"row": rows.index(str(row)) + 1, "col": columns.index(str(column)) + 1}
        part = part.sort_values("task")
        color = colors[curve]
        if band and part["se"].notna().any():
            se = part["se"].fillna(0)
            fig.add_trace(go.Scatter(
                x=list(part["task"]) + list(part["task"])[::-1],
                y=list(part["mean"] + se) + list(part["mean"] - se)[::-1],
                fill="toself", fillcolor=color, opacity=0.2, line={"width": 0},
                hoverinfo="skip", showlegend=False, legendgroup=curve, name=f"{curve} ± SE",
            ), **cell)  # fmt: skip
        fig.add_trace(go.Scatter(
            x=part["task"], y=part["mean"], mode="lines", name=curve, legendgroup=curve,
            line={"color": color}, showlegend=curve not in shown,
        ), **cell)  # fmt: skip
        shown.add(curve)
    fig.update_layout(title=title, height=320 * len(rows) + 120, hovermode="x unified")
    fig.update_xaxes(title_text="task")
    return fig


def _levels(values: pd.Series) -> list[str]:
    """A facet's values in their own order (8 before 16), as the text that labels them."""
    return [str(v) for v in pd.Series(values.unique()).sort_values(na_position="last")]
