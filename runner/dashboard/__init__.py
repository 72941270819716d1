"""`plasticity dashboard DIR... [--out FILE.html] [--serve]`: one offline HTML page of Plotly
views over the Parquet results, modelled on the paper's figures.

A DIR may be an experiment folder of `plasticity sweep` (spec.yaml, rows/, trials/,
selection.csv), an OUT/<experiment>/ folder of `plasticity run` (rows/, trials/), an output
folder of `plasticity assay` (reset-cost/), or a folder holding several of those (e.g.
`results/`); a DIR that does not exist is a DataError. Whatever subset exists is shown,
each experiment's accuracy faceted by the two fields its registry entry names; a view
without data shows why instead of a plot.

    sources.py   finding and reading the result folders
    views.py     the Plotly figures and HTML tables
    page.py      the page, written to a file or served on 127.0.0.1
"""

from runner.dashboard.page import build_page, make_server, serve, write_dashboard, write_figures
from runner.dashboard.sources import load_sources

__all__ = ["build_page", "load_sources", "make_server", "serve", "write_dashboard",
           "write_figures"]  # fmt: skip
