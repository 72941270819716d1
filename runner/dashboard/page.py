"""The dashboard page: the views assembled into one self-contained HTML file (plotly.js
embedded, so it works offline; any JavaScript error shown in a banner at its top), and a
server for it bound to 127.0.0.1."""

from __future__ import annotations

import html
import http.server
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from runner.dashboard.sources import Sources, load_sources
from runner.dashboard.views import (
    View,
    accuracy_view,
    assay_view,
    overview_table,
    relative_view,
    spearman_table,
    sweep_view,
)
from runner.storage import Folder

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
    rows = pd.concat(sources.rows, ignore_index=True) if sources.rows else pd.DataFrame()
    assay = pd.concat(sources.assay, ignore_index=True) if sources.assay else pd.DataFrame()
    parts = [_HEAD, '<div id="errors" hidden></div><h1>Plasticity results</h1>']
    if sources.notes:
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in sources.notes)
        parts.append(f'<ul class="notes" data-notes="{len(sources.notes)}">{notes}</ul>')
    sweeps = [sweep_view(e) for e in sources.experiments] or ["No sweep folders given."]
    panels: list[tuple[str, str, list[View]]] = [
        ("overview", "Run overview", [overview_table(sources, rows)]),
        ("accuracy", "Test accuracy per task (mean ± SE across seeds)", accuracy_view(rows)),
        ("relative", "Accuracy relative to backprop", relative_view(rows)),
        ("sweep", "Sweep: selection metric per configuration", sweeps),
        ("assay", "Reset-cost assay", [assay_view(assay), spearman_table(assay)]),
    ]
    for key, title, items in panels:
        body = "".join(_render(item, f"{key}-{i}") for i, item in enumerate(items))
        parts.append(f'<section id="{key}" data-panel="{key}"><h2>{title}</h2>{body}</section>')
    parts.append(_TAIL)
    return "".join(parts)


def _render(item: View, div_id: str) -> str:
    if isinstance(item, go.Figure):
        return item.to_html(full_html=False, include_plotlyjs=False, div_id=div_id)
    if item.startswith("<"):
        return item
    return f'<p class="empty">{html.escape(item)}</p>' if item else ""


def write_dashboard(locations: list[str], out: str | Path) -> Path:
    """Builds the page from `locations` into `out` (a self-contained HTML file). Raises
    DataError, before writing anything, when a location does not exist."""
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
