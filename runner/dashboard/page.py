"""The dashboard page: the ranked summary and the views assembled into one HTML file
(plotly.js embedded, so it works offline, or from Plotly's CDN; any JavaScript error shown
in a banner at its top), the same figures as static SVG files, and a server for the page
bound to 127.0.0.1."""

from __future__ import annotations

import html
import http.server
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs, get_plotlyjs_version

from plasticity_core.errors import DataError
from runner.dashboard.sources import Sources, load_sources
from runner.dashboard.summary_view import curve_order, summary_html, summary_tables
from runner.dashboard.views import (
    FIGURE_CONFIG,
    MODEBAR_SCRIPT,
    View,
    accuracy_view,
    assay_view,
    compare_view,
    diagnostics_view,
    overview_table,
    relative_view,
    spearman_table,
    sweep_view,
)
from runner.storage import Folder
from runner.summary import last_tasks_by_source

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
    """The page's HTML without plotly.js: notes, then one section per panel, each item
    of a panel a div `<panel>-<i>` (accuracy-0 is the first experiment's accuracy)."""
    parts = [_HEAD, '<div id="errors" hidden></div><h1>Plasticity results</h1>']
    if sources.notes:
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in sources.notes)
        parts.append(f'<ul class="notes" data-notes="{len(sources.notes)}">{notes}</ul>')
    for key, title, items in panels(sources):
        body = "".join(_render(item, f"{key}-{i}") for i, item in enumerate(items))
        parts.append(f'<section id="{key}" data-panel="{key}"><h2>{title}</h2>{body}</section>')
    parts.append(_TAIL)
    return "".join(parts)


def panels(sources: Sources) -> list[tuple[str, str, list[View]]]:
    """The page's sections: (key, title, items), in page order. The summary comes first;
    every legend lists its curves in the summary's rank order."""
    rows = pd.concat(sources.rows, ignore_index=True) if sources.rows else pd.DataFrame()
    assay = pd.concat(sources.assay, ignore_index=True) if sources.assay else pd.DataFrame()
    summary = summary_tables(rows, last_tasks_by_source(sources)) if len(rows) else pd.DataFrame()
    order = _merged(curve_order(summary)) if len(summary) else None
    sweeps = [sweep_view(e, order) for e in sources.experiments] or ["No sweep folders given."]
    return [
        ("summary", "Which method keeps plasticity best? (ranked, mean ± SE over seeds)",
         [summary_html(summary) if len(rows) else "No per-task rows to summarise."]),
        ("overview", "Run overview", [overview_table(sources, rows)]),
        ("accuracy", "Per task, mean ± SE across seeds", accuracy_view(rows, order)),
        ("relative", "Relative to backprop", relative_view(rows, order)),
        ("diagnostics", "Plasticity diagnostics per task", diagnostics_view(rows, order)),
        ("compare", "Compare studies", compare_view(rows, order)),
        ("sweep", "Sweep: selection metric per configuration", sweeps),
        ("assay", "Reset-cost assay", [assay_view(assay, order), spearman_table(assay, order)]),
    ]  # fmt: skip


def _merged(orders: dict[tuple[str, str], list[str]]) -> list[str]:
    """One legend order from each study's: their curves in turn, each label once."""
    return list(dict.fromkeys(curve for ranked in orders.values() for curve in ranked))


def _render(item: View, div_id: str) -> str:
    if isinstance(item, go.Figure):
        return item.to_html(
            full_html=False, include_plotlyjs=False, div_id=div_id, config=FIGURE_CONFIG
        )
    if item.startswith("<"):
        return item
    return f'<p class="empty">{html.escape(item)}</p>' if item else ""


PLOTLY_SOURCES = ("embed", "cdn")
"""How the page gets plotly.js: embedded (~4.8 MB, works offline) or from Plotly's CDN."""


def write_dashboard(locations: list[str], out: str | Path, plotly: str = "embed") -> Path:
    """Builds the page from `locations` into `out` (one HTML file). Raises DataError,
    before writing anything, when a location does not exist or none holds results."""
    page = build_page(load_sources(locations))
    if plotly == "cdn":
        script = f'<script src="https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js">'
        script += "</script>"
    else:
        script = f"<script>{get_plotlyjs()}</script>"
    # The PNG download button is added to plots made after plotly.js and before any figure.
    Folder(out).write_text(page.replace("<title>", f"{script}{MODEBAR_SCRIPT}<title>", 1))
    return Path(out)


def write_figures(locations: list[str], folder: str | Path) -> list[Path]:
    """Every figure of the page as a static SVG file `<panel>-<i>.svg` in `folder`, through
    Plotly's image export (kaleido, which drives a Chrome or Chromium of this machine).
    Raises DataError when the export cannot run here."""
    try:
        import kaleido  # noqa: F401 - only to name what is missing
    except ImportError:
        raise DataError("--figures needs kaleido: pip install 'plasticity-bench[figures]' "
                        "(and a Chrome or Chromium on this machine)") from None  # fmt: skip
    figures = [(f"{key}-{i}", _static(item)) for key, _, items in panels(load_sources(locations))
               for i, item in enumerate(items) if isinstance(item, go.Figure)]  # fmt: skip
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.svg" for name, _ in figures]
    try:
        pio.write_images([figure for _, figure in figures], paths)
    except Exception as err:  # kaleido's own errors: no browser, a browser that fails
        raise DataError(f"--figures: Plotly's image export failed here ({err}); it needs "
                        "kaleido and a Chrome or Chromium it can start") from None  # fmt: skip
    return paths


def _static(figure: go.Figure) -> go.Figure:
    """A copy for a file: the page's buttons and sliders mean nothing there."""
    return go.Figure(figure).update_layout(updatemenus=[], sliders=[])


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
