"""`plasticity dashboard DIR... [--out FILE.html] [--serve]`: one offline HTML page of Plotly
views over the Parquet results, modelled on the paper's figures.

A DIR may be an experiment folder of `plasticity sweep` (rows/, trials/, selection.csv),
an output folder of `plasticity run` / `plasticity assay` (permuted-mnist/, reset-cost/), or
a folder holding several of those (e.g. `results/`). Whatever subset exists is shown; a
view without data shows why instead of a plot. The page embeds plotly.js, so it works
offline, and records any JavaScript error in a banner at its top.
"""

from __future__ import annotations

import html
import http.server
import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from plasticity_core.errors import DataError
from runner.aggregate import FACETS, curve_label, curve_stats, relative_to_baseline
from runner.assay import mean_se
from runner.results import read_results, read_table
from runner.storage import Folder

SINGLE_RUNS = ("permuted-mnist", "continuous-cifar100")
"""Folders of `plasticity run` outputs, by experiment."""
ASSAY = "reset-cost"
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip


@dataclass
class Sources:
    """Everything found under the given folders."""

    rows: list[pd.DataFrame] = field(default_factory=list)
    experiments: list[dict] = field(default_factory=list)
    """Per sweep folder: name, folder, stage statuses, selection table and rule."""
    assay: list[pd.DataFrame] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_sources(locations: list[str]) -> Sources:
    """Finds every experiment folder, `plasticity run` output and assay output under the
    given folders (each counted once) and reads them."""
    sources = Sources()
    seen: set[str] = set()
    for location in locations:
        folder = Folder(location)
        if not folder.exists():
            sources.notes.append(f"{location}: does not exist")
            continue
        roots = {folder.path} if _holds_results(folder) else set()
        for file in folder.files():
            path = file.path
            if path.endswith("/spec.yaml"):
                roots.add(path.rsplit("/", 1)[0])
            for name in (*SINGLE_RUNS, ASSAY):
                if f"/{name}/" in path and path.endswith(".parquet"):
                    roots.add(path.split(f"/{name}/")[0])
        roots = {r for r in roots if not any(r.startswith(f"{o}/") and _is_experiment(folder, o)
                                             for o in roots)}  # fmt: skip
        found = False
        for root in sorted(roots - seen):
            seen.add(root)
            found |= _load_folder(Folder.on(folder.fs, root), sources)
        if not found:
            runs = "/, ".join(SINGLE_RUNS)
            sources.notes.append(f"{location}: no results found (no rows/, {runs}/ or "
                                 f"{ASSAY}/ with Parquet files)")  # fmt: skip
    return sources


def _holds_results(folder: Folder) -> bool:
    return any((folder / name).exists() for name in ("spec.yaml", *SINGLE_RUNS, ASSAY))


def _is_experiment(folder: Folder, path: str) -> bool:
    """Folders inside an experiment folder (its trial checkpoints) are not roots."""
    return (Folder.on(folder.fs, path) / "spec.yaml").exists()


def _load_folder(folder: Folder, sources: Sources) -> bool:
    """Reads what this one folder holds; returns whether it held anything."""
    found = False
    if (folder / "spec.yaml").exists():
        found = True
        sources.experiments.append(_load_experiment(folder, sources))
    runs = [f for name in SINGLE_RUNS for f in (folder / name).files(".parquet")]
    if runs:
        found = True
        sources.rows.append(_read_all(runs, sources).assign(source=Path(folder.path).name))
    summaries = (folder / ASSAY / "summary").files(".parquet")
    if summaries:
        found = True
        sources.assay.append(_read_all(summaries, sources))
    return found


def _read_all(files: list[Folder], sources: Sources) -> pd.DataFrame:
    frames = []
    for file in files:
        try:
            frames.append(read_table(file).to_pandas())
        except DataError as err:
            sources.notes.append(str(err))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _load_experiment(folder: Folder, sources: Sources) -> dict:
    # Imported here: they import Ray, which a page of run/assay outputs never needs.
    from runner.status import stage_status
    from runner.sweep import load_folder_spec

    name = Path(folder.path).name
    entry = {"name": name, "folder": str(folder), "stages": [], "selection": None}
    try:
        spec = load_folder_spec(folder)
        rows = read_results(folder)
    except Exception as err:  # a broken folder must not hide the others
        sources.notes.append(f"{folder}: {err}")
        return entry
    if len(rows):
        sources.rows.append(rows.assign(source=name))
    for stage in ("sweep", "final"):
        try:
            status = stage_status(folder, stage, rows)
        except Exception as err:
            sources.notes.append(f"{folder}/{stage}: Tune state unreadable ({err})")
            continue
        if status is not None:
            entry["stages"].append(status)
    if (folder / "selection.csv").exists():
        entry["selection"] = pd.read_csv(io.StringIO((folder / "selection.csv").read_text()))
        entry["per"] = list(spec.select.per)
        entry["metric"] = spec.select.metric
    return entry


# ---------------------------------------------------------------- views


def accuracy_view(rows: pd.DataFrame) -> go.Figure | str:
    """Test accuracy per task, mean ± SE across seeds, faceted by activation × norm."""
    if rows.empty or "accuracy" not in rows:
        return "No per-task rows yet: run `plasticity demo`, `plasticity sweep` or `run`."
    stats = _per_source(_preferred_stage(rows), curve_stats)
    return _faceted(stats, "mean", "test accuracy", band=True)


def relative_view(rows: pd.DataFrame, window: int = 50) -> go.Figure | str:
    """Accuracy minus the bp baseline's, 50-task moving average (paper Fig. 4 right)."""
    if rows.empty or "accuracy" not in rows:
        return "No per-task rows yet."
    delta = _per_source(
        _preferred_stage(rows), lambda r: relative_to_baseline(curve_stats(r), window=window)
    )
    if delta.empty:
        return ("No bp baseline in the same activation and norm: add method bp to the grid "
                "to see accuracy relative to backprop.")  # fmt: skip
    stats = delta.rename(columns={"delta": "mean"})
    fig = _faceted(stats, "mean", f"accuracy − bp ({window}-task moving average)", band=False)
    fig.add_hline(y=0, line_dash="dot", line_color="#555")
    return fig


def sweep_view(experiment: dict) -> go.Figure | str:
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


def assay_view(summary: pd.DataFrame) -> go.Figure | str:
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


def spearman_table(summary: pd.DataFrame) -> str:
    """Spearman ρ between each utility and the realized shock (paper Tables 1/7)."""
    if summary.empty or "spearman_l1" not in summary:
        return ""
    order = [u for u in dict.fromkeys(summary["utility"]) if u != "oracle"]
    activations = list(dict.fromkeys(summary["activation"]))
    head = "".join(f"<th>{html.escape(a)} L1</th><th>{html.escape(a)} KL</th>"
                   for a in activations)  # fmt: skip
    body = []
    for utility in order:
        cells = []
        for activation in activations:
            part = summary[(summary["utility"] == utility) & (summary["activation"] == activation)]
            for metric in ("spearman_l1", "spearman_kl"):
                mean, se = mean_se(part[metric]) if metric in part else (float("nan"),) * 2
                cells.append(f"<td>{_pm(mean, se)}</td>")
        body.append(f"<tr><th>{html.escape(utility)}</th>{''.join(cells)}</tr>")
    rows = "".join(body)
    return ('<h3>Spearman ρ between utility and realized shock, mean ± SE over seeds × '
            'checkpoints (higher is better; paper Tables 1/7)</h3><table class="data" '
            f'data-table="spearman"><tr><th>utility</th>{head}</tr>{rows}</table>')  # fmt: skip


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
    if not rows.empty and "source" in rows:
        singles = rows[rows.get("stage", pd.Series("run", index=rows.index)) == "run"]
        for source, part in singles.groupby("source"):
            lines.append((source, "run", part["trial_id"].nunique(), part["seed"].nunique(),
                          str(len(part)), "", "", ""))  # fmt: skip
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


def _per_source(rows: pd.DataFrame, compute) -> pd.DataFrame:
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


def _faceted(stats: pd.DataFrame, y: str, title: str, band: bool) -> go.Figure:
    activations = sorted(stats["activation"].astype(str).unique())
    norms = sorted(stats["norm"].astype(str).unique())
    fig = make_subplots(
        rows=len(norms), cols=len(activations), shared_yaxes=True,
        subplot_titles=[f"{a}, norm={n}" for n in norms for a in activations],
    )  # fmt: skip
    colors = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(sorted(stats["curve"].unique()))}
    shown = set()
    for (activation, norm, curve), part in stats.groupby([*FACETS, "curve"], sort=True):
        row, col = norms.index(str(norm)) + 1, activations.index(str(activation)) + 1
        part = part.sort_values("task")
        color = colors[curve]
        if band and part["se"].notna().any():
            se = part["se"].fillna(0)
            fig.add_trace(go.Scatter(
                x=list(part["task"]) + list(part["task"])[::-1],
                y=list(part[y] + se) + list(part[y] - se)[::-1],
                fill="toself", fillcolor=color, opacity=0.2, line={"width": 0},
                hoverinfo="skip", showlegend=False, legendgroup=curve, name=f"{curve} ± SE",
            ), row=row, col=col)  # fmt: skip
        fig.add_trace(go.Scatter(
            x=part["task"], y=part[y], mode="lines", name=curve, legendgroup=curve,
            line={"color": color}, showlegend=curve not in shown,
        ), row=row, col=col)  # fmt: skip
        shown.add(curve)
    fig.update_layout(title=title, height=320 * len(norms) + 120, hovermode="x unified")
    fig.update_xaxes(title_text="task")
    return fig


# ---------------------------------------------------------------- page

_HEAD = """<!doctype html><html><head><meta charset="utf-8"><title>plasticity dashboard</title>
<script>window.__errors=[];
window.addEventListener("error",function(e){window.__errors.push(String(e.message))});
(function(){var original=console.error;console.error=function(){
window.__errors.push(Array.prototype.join.call(arguments," "));
original.apply(console,arguments)}})();
</script><style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
section{border-top:1px solid #ddd;padding:.5em 0 1em}
.empty{color:#777;font-style:italic;padding:1em;background:#f6f6f6}
#errors{background:#fdd;color:#900;padding:.5em}
table.data{border-collapse:collapse;margin:.5em 0}
table.data td,table.data th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
h3{font-size:1em}
</style></head><body>"""

_TAIL = """<script>window.addEventListener("load",function(){setTimeout(function(){
document.querySelectorAll(".js-plotly-plot").forEach(function(d){
d.setAttribute("data-traces",d.data.length);
d.setAttribute("data-rendered",d.querySelectorAll(".main-svg").length)});
var box=document.getElementById("errors");
if(window.__errors.length){box.hidden=false;
box.textContent="JavaScript errors: "+window.__errors.join(" | ")}
document.body.setAttribute("data-errors",JSON.stringify(window.__errors));
document.body.setAttribute("data-ready","1")},0)});</script></body></html>"""


def build_page(sources: Sources) -> str:
    rows = pd.concat(sources.rows, ignore_index=True) if sources.rows else pd.DataFrame()
    assay = pd.concat(sources.assay, ignore_index=True) if sources.assay else pd.DataFrame()
    parts = [_HEAD, '<div id="errors" hidden></div><h1>Plasticity results</h1>']
    if sources.notes:
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in sources.notes)
        parts.append(f'<ul class="notes" data-notes="{len(sources.notes)}">{notes}</ul>')
    panels = [
        ("overview", "Run overview", overview_table(sources, rows)),
        ("accuracy", "Test accuracy per task (mean ± SE across seeds)", accuracy_view(rows)),
        ("relative", "Accuracy relative to backprop", relative_view(rows)),
    ]
    sweeps = [sweep_view(e) for e in sources.experiments] or ["No sweep folders given."]
    panels.append(("sweep", "Sweep: selection metric per configuration", sweeps))
    panels.append(("assay", "Reset-cost assay", [assay_view(assay), spearman_table(assay)]))
    for key, title, content in panels:
        items = content if isinstance(content, list) else [content]
        body = "".join(_render(item, f"{key}-{i}") for i, item in enumerate(items))
        parts.append(f'<section id="{key}" data-panel="{key}"><h2>{title}</h2>{body}</section>')
    parts.append(_TAIL)
    return "".join(parts)


def _render(item, div_id: str) -> str:
    if isinstance(item, go.Figure):
        return item.to_html(full_html=False, include_plotlyjs=False, div_id=div_id)
    if item.startswith("<"):
        return item
    return f'<p class="empty">{html.escape(item)}</p>' if item else ""


def write_dashboard(locations: list[str], out: str | Path) -> Path:
    """Builds the page from `locations` into `out` (a self-contained HTML file)."""
    page = build_page(load_sources(locations))
    page = page.replace("<title>", f"<script>{get_plotlyjs()}</script><title>", 1)
    Folder(out).write_text(page)
    return Path(out)


def serve(path: Path, port: int = 8050) -> None:
    """Serves the page on 127.0.0.1 only, until interrupted."""
    with make_server(path, port) as server:
        print(f"dashboard at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
        server.serve_forever()


def make_server(path: Path, port: int = 8050) -> http.server.ThreadingHTTPServer:
    """An HTTP server for the page bound to 127.0.0.1 (port 0: any free port)."""
    page = Path(path).read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            if self.path not in ("/", "/index.html"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args) -> None:
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)


__all__ = ["build_page", "load_sources", "make_server", "serve", "write_dashboard"]
