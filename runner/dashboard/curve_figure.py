"""The faceted per-task figure every curve view shares: a panel per facet value pair, a
line per curve (mean across seeds) with its ± SE band, per-seed lines on request, and the
smoothing, y-scale, seeds and curve-filter controls."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from runner.dashboard.controls import (
    BAND,
    LINE,
    SEEDS,
    Drawn,
    filter_menu,
    log_menu,
    place,
    seeds_menu,
    smoothing_menu,
)
from runner.dashboard.curves import Curve, panel_order
from runner.dashboard.identity import fill_of, ranked, style_of
from runner.dashboard.smoothing import (
    default_window,
    per_seed,
    rounded,
    smoothed,
    windows_for,
)

ROW_HEIGHT = 330
"""Pixels per row of panels; with at most two columns a panel is >= ~450 px wide on the
page's 1400 px (the paper-size 4 × 4 grid of 250 px panels was unreadable)."""
TOP, BOTTOM = 130, 70
SEED_POINT_BUDGET = 60_000
"""Per-seed lines are offered while curves × seeds × tasks stays under this (~0.5 MB of
page per smoothing): 36 curves × 3 seeds × 150 tasks fits, 36 × 15 × 800 does not."""


@dataclass(frozen=True)
class Options:
    """What a curve view draws besides its lines."""

    band: bool = True
    """The ± SE band around each line (curves with one seed have none)."""
    seed_lines: bool = False
    """Per-seed lines, hidden behind a 'seeds on' button (within SEED_POINT_BUDGET)."""
    log_toggle: bool = True
    """A linear / log y button (not for differences, which go negative)."""
    zero_line: bool = False


def curve_figure(curves: list[Curve], facets: tuple[str, str], title_of: Callable[[int], str],
                 y_title: str, *, order: Sequence[str] | None = None,
                 among: Sequence[str] = (), options: Options = Options()) -> go.Figure:  # fmt: skip
    """The faceted figure of `curves`: facets[0] across the columns and facets[1] down
    the rows (wrapped into two columns when facets[0] has more than two values), curves
    added and listed in `order` (best first; default alphabetical) in the colours of
    `style_of` (dashes told apart among `among`). `title_of(window)` is the title while
    the figure shows that smoothing window (tasks; 1 = raw)."""
    cells, grid = _grid(curves, facets)
    fig = make_subplots(
        rows=grid[0], cols=grid[1], shared_yaxes="all", horizontal_spacing=0.05,
        vertical_spacing=min(0.3, 90 / (ROW_HEIGHT * grid[0])), subplot_titles=grid[2],
    )  # fmt: skip
    tasks = max(c.first_task + c.tasks for c in curves) - min(c.first_task for c in curves)
    windows, default = windows_for(tasks), default_window(tasks)
    labels = ranked({c.label for c in curves}, order)
    styles = {label: style_of(label, [*among, *labels]) for label in labels}
    traces: list[tuple[go.Scatter, Curve]] = []
    drawn: list[Drawn] = []
    for rank, label in enumerate(labels):
        for i, curve in enumerate(c for c in curves if c.label == label):
            new = _curve_traces(curve, styles[label], rank, windows, default, options.band)
            for trace, smoothings, kind in new:
                trace.update(showlegend=kind == LINE and i == 0)
                drawn.append(Drawn(len(traces), label, kind, smoothings))
                traces.append((trace, curve))
    note = _seed_traces(curves, styles, windows, default, traces, drawn) if (
        options.seed_lines) else ""  # fmt: skip
    fig.add_traces([t for t, _ in traces], rows=[cells[c.panel][0] for _, c in traces],
                   cols=[cells[c.panel][1] for _, c in traces])  # fmt: skip
    _layout(fig, grid[0], y_title, title_of(default), options.zero_line)
    _controls(fig, drawn, (windows, default, title_of), options.log_toggle, note, grid[0])
    return fig


def _seed_traces(curves: list[Curve], styles: dict, windows: list[int], default: int,
                 traces: list, drawn: list[Drawn]) -> str:  # fmt: skip
    """Appends each curve's hidden per-seed trace while the page budget allows; else
    returns the note that says why there are none."""
    several = [c for c in curves if c.seeds > 1]  # one seed's line is the curve itself
    points = sum(c.seeds * c.tasks for c in several)
    if points > SEED_POINT_BUDGET:
        return (f"per-seed lines left out: {points:,} points (curves × seeds × tasks) "
                f"exceed the page budget of {SEED_POINT_BUDGET:,}")  # fmt: skip
    for curve in several:
        trace, smoothings = _seed_trace(curve, styles[curve.label], windows, default)
        drawn.append(Drawn(len(traces), curve.label, SEEDS, smoothings))
        traces.append((trace, curve))
    return ""


def _controls(fig: go.Figure, drawn: list[Drawn], smoothing: tuple, log_toggle: bool,
              note: str, rows: int) -> None:  # fmt: skip
    """The menus in a row above the panels, and the note where per-seed lines are out."""
    windows, default, title_of = smoothing
    menus = [smoothing_menu(drawn, windows, default, title_of)] if len(windows) > 1 else []
    if log_toggle:
        menus.append(log_menu(fig))
    if any(d.kind == SEEDS for d in drawn):
        menus.append(seeds_menu(drawn))
    menus.append(filter_menu(drawn))
    plot_height = ROW_HEIGHT * rows
    fig.update_layout(updatemenus=place([m for m in menus if m], 1 + 38 / plot_height))
    if note:
        fig.add_annotation(text=note, xref="paper", yref="paper", x=1, y=1 + 42 / plot_height,
                           xanchor="right", yanchor="bottom", showarrow=False,
                           font={"size": 11, "color": "#777"})  # fmt: skip


def _grid(curves: list[Curve], facets: tuple[str, str]):
    """(panel -> (row, col), (rows, cols, subplot titles)). facets[0] across and
    facets[1] down when facets[0] has at most two values, else wrapped into two columns."""
    panels = panel_order(c.panel for c in curves)
    across = panel_order((p[0], "") for p in panels)
    down = panel_order(("", p[1]) for p in panels)
    if len(across) <= 2:
        cols, rows = len(across), len(down)
        cells = {p: (down.index(("", p[1])) + 1, across.index((p[0], "")) + 1) for p in panels}
    else:
        cols, rows = 2, math.ceil(len(panels) / 2)
        cells = {p: (i // 2 + 1, i % 2 + 1) for i, p in enumerate(panels)}
    titles = [""] * (rows * cols)
    for panel, (row, col) in cells.items():
        titles[(row - 1) * cols + col - 1] = f"{facets[0]}={panel[0]}, {facets[1]}={panel[1]}"
    return cells, (rows, cols, titles)


def _curve_traces(curve: Curve, style: dict, rank: int, windows: list[int], default: int,
                  band: bool) -> list[tuple[go.Scatter, dict, str]]:  # fmt: skip
    """The curve's lower and upper SE edges (the upper filled down to the lower; one seed:
    none) and its mean line, each with its arrays under every window."""
    series = {w: smoothed(curve.values, curve.first_task, w) for w in windows}
    shown = series[default]
    common = {"legendgroup": curve.label, "legendrank": 10 * (rank + 1), "mode": "lines",
              "x0": shown.x0, "dx": shown.dx}  # fmt: skip
    out = []
    if band and shown.low is not None:
        edge = {"width": 0, "color": style["color"]}
        for part, fill in (("low", "none"), ("high", "tonexty")):
            trace = go.Scatter(
                y=getattr(shown, part).astype(np.float32), name=f"{curve.label} ± SE",
                line=edge, fill=fill, fillcolor=fill_of(style["color"]), hoverinfo="skip",
                **common,
            )  # fmt: skip
            out.append((trace, _arrays(series, part), BAND))
    line = go.Scatter(
        y=shown.mean.astype(np.float32), name=curve.label, line={**style, "width": 1.8},
        hovertemplate=f"{curve.label}: %{{y:.4g}}<extra></extra>", **common,
    )  # fmt: skip
    out.append((line, _arrays(series, "mean"), LINE))
    return out


def _arrays(series: dict, part: str) -> dict[int, dict]:
    return {w: {"y": rounded(getattr(s, part)), "x0": s.x0, "dx": s.dx}
            for w, s in series.items()}  # fmt: skip


def _seed_trace(curve: Curve, style: dict, windows: list[int],
                default: int) -> tuple[go.Scatter, dict]:  # fmt: skip
    """Every seed of a curve as one hidden trace (NaN between seeds), in the curve's
    colour and legend group, so a legend click hides it with its curve."""
    task = np.arange(curve.first_task, curve.first_task + curve.tasks + 1, dtype=np.float32)
    task[-1] = np.nan
    x = np.tile(task, curve.seeds)
    smoothings = {w: {"y": rounded(per_seed(curve.values, w)), "x0": 0, "dx": 1}
                  for w in windows}  # fmt: skip
    trace = go.Scatter(
        x=x, y=per_seed(curve.values, default).astype(np.float32),
        name=f"{curve.label} seeds", legendgroup=curve.label, showlegend=False,
        visible=False, mode="lines", hoverinfo="skip",
        line={"color": fill_of(style["color"], 0.45), "width": 0.8, "dash": style["dash"]},
    )  # fmt: skip
    return trace, smoothings


def _layout(fig: go.Figure, rows: int, y_title: str, title: str, zero_line: bool) -> None:
    plot_height = ROW_HEIGHT * rows
    fig.update_layout(
        title={"text": title, "x": 0, "xref": "paper", "y": 1, "yref": "container",
               "yanchor": "top", "pad": {"t": 12}, "font": {"size": 15}},
        height=plot_height + TOP + BOTTOM, margin={"t": TOP, "b": BOTTOM, "l": 70, "r": 20},
        hovermode="x unified", plot_bgcolor="white",
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": -60 / plot_height,
                "yanchor": "top", "font": {"size": 11}, "groupclick": "togglegroup"},
    )  # fmt: skip
    grid = {"showgrid": True, "gridcolor": "#e5e5e5", "zeroline": False, "linecolor": "#999"}
    fig.update_xaxes(title_text="task", title_standoff=4, **grid)
    fig.update_yaxes(**grid)
    fig.update_yaxes(title_text=y_title, col=1)
    if zero_line:
        fig.add_hline(y=0, line_dash="dot", line_color="#555", row="all", col="all")
