"""The dashboard's figures answer the question: one identity per method/utility across
views, legends in rank order, units on the axes, smoothing / log / per-seed / filter
controls that change what Chromium draws, and a paper-size study that builds fast and
renders without errors."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from runner.dashboard.identity import BASELINE_COLOR, style_of
from runner.dashboard.page import build_page
from runner.dashboard.sources import Sources
from runner.dashboard.views import (
    FIGURE_CONFIG,
    accuracy_view,
    assay_view,
    compare_view,
    diagnostics_view,
    relative_view,
    spearman_table,
    sweep_view,
)
from runner.select import select_best
from runner.spec import load_spec
from tests.runner.browser import body, figures_page, open_in_chromium, plots, wrap_page
from tests.runner.paper_size import paper_rows


def _lines(fig: go.Figure) -> list[go.Scatter]:
    """The mean lines of a curve figure (not the SE band edges or the per-seed traces)."""
    return [t for t in fig.data if t.name and not t.name.endswith((" ± SE", " seeds"))]


def _line_colours(fig: go.Figure) -> dict[str, str]:
    return {t.name: t.line.color for t in _lines(fig)}


@pytest.fixture(scope="module")
def small():
    """2 activations × 9 curves × 3 seeds × 30 tasks."""
    return paper_rows(tasks=30, seeds=3, activations=2)


def test_a_sweep_per_utility_draws_one_named_trace_per_utility():
    spec = load_spec("pmnist-demo")  # per: [utility], every configuration method cbp
    trials = {t.trial_id: t for t in spec.trials("sweep", spec.configurations(),
                                                  spec.sweep_seeds)}  # fmt: skip
    rows = pd.DataFrame([{"trial_id": i, "task": task, "accuracy": 0.5 + 0.01 * len(i) % 7}
                         for i in trials for task in range(3)])  # fmt: skip
    selection = select_best(spec, rows, {i: {"status": "complete"} for i in trials})
    fig = sweep_view({"name": spec.name, "selection": selection.table,
                      "per": list(spec.select.per), "metric": spec.select.metric})  # fmt: skip
    groups = [t for t in fig.data if t.name != "selected"]
    assert [t.name for t in groups] == ["contribution", "gxd"]  # alphabetical by default
    assert all(len(t.x) == 2 for t in groups), "each utility's two learning rates"
    assert [t.marker.color for t in groups] == [style_of("contribution")["color"],
                                                style_of("gxd")["color"]]  # fmt: skip
    ranked = sweep_view({"name": spec.name, "selection": selection.table,
                         "per": list(spec.select.per), "metric": "accuracy"},
                        order=["cbp+gxd", "cbp+contribution"])  # fmt: skip
    assert [t.name for t in ranked.data][:2] == ["gxd", "contribution"]
    assert ranked.layout.yaxis.title.text.startswith("test accuracy (fraction)")


def test_a_curve_keeps_its_colour_across_accuracy_relative_and_diagnostics(small):
    [accuracy], [relative] = accuracy_view(small), relative_view(small)
    diagnostics = diagnostics_view(small)
    assert len(diagnostics) == 7  # dormant, eff. rank, stable rank, |w|, grad, train acc, loss
    colours = _line_colours(accuracy)
    assert colours["bp"] == BASELINE_COLOR and len(set(colours.values())) == 9
    for fig in [relative, *diagnostics]:
        assert _line_colours(fig).items() <= colours.items()
    assert set(_line_colours(relative)) == set(colours) - {"bp"}
    band = next(t for t in accuracy.data if t.name == "cbp+gxd ± SE" and t.fill == "tonexty")
    assert band.fillcolor == "rgba(214,39,40,0.12)" and band.line.width == 0


def test_curves_differing_by_a_hyperparameter_share_a_colour_and_differ_by_dash():
    among = ["bp", "cbp+gxd lr=0.01", "cbp+gxd lr=0.03", "cbp+contribution lr=0.01"]
    low, high = style_of(among[1], among), style_of(among[2], among)
    assert low["color"] == high["color"] == style_of("gxd")["color"]
    assert low["dash"] != high["dash"]
    assert style_of("study: cbp+gxd")["color"] == style_of("cbp+gxd")["color"]
    unknown = style_of("some_new_utility")
    assert unknown == style_of("some_new_utility") and unknown["color"].startswith("#")


def test_the_legend_follows_the_given_order_best_first(small):
    order = ["cbp+gxd", "cbp+contribution", "bp"]
    [fig] = accuracy_view(small, order=order)
    names = list(dict.fromkeys(t.name for t in _lines(fig)))
    assert names[:3] == order and names[3:] == sorted(names[3:])
    ranks = [t.legendrank for t in _lines(fig) if t.showlegend]
    assert ranks == sorted(ranks)
    [default] = accuracy_view(small)
    assert list(dict.fromkeys(t.name for t in _lines(default))) == sorted(names)


def test_every_figure_has_a_y_title_with_units_and_at_most_two_columns(small):
    figures = [*accuracy_view(small), *relative_view(small), *diagnostics_view(small)]
    titles = {fig.layout.yaxis.title.text for fig in figures}
    assert {"test accuracy (fraction)", "Δ test accuracy vs bp (fraction)", "mean |w|",
            "dormant units (fraction, τ=0.025)"} <= titles  # fmt: skip
    assert all(max(fig._get_subplot_rows_columns()[1]) <= 2 for fig in figures)
    assert figures[0].layout.legend.orientation == "h"


def test_the_moving_average_window_adapts_to_the_run_and_the_title_names_it():
    rows = paper_rows(tasks=20, seeds=2, activations=1, curves=2)
    [relative] = relative_view(rows)
    assert "2-task moving average" in relative.layout.title.text  # 20 tasks: a tenth
    [long] = relative_view(paper_rows(tasks=800, seeds=1, activations=1, curves=2))
    assert "50-task moving average" in long.layout.title.text  # at most the paper's 50
    menu = next(m for m in long.layout.updatemenus if m.name == "smoothing")
    assert [b.label for b in menu.buttons] == ["raw", "5 tasks", "20 tasks", "50 tasks"]
    raw, *_, fifty = (b.args for b in menu.buttons)
    assert "raw" in raw[1]["title.text"] and "50-task" in fifty[1]["title.text"]
    assert len(raw[0]["y"][0]) == 800 and len(fifty[0]["y"][0]) < 800 / 10  # thinned


def test_comparing_two_studies_shows_the_first_minus_the_other(small):
    other = small.assign(accuracy=small["accuracy"] - 0.05)
    rows = pd.concat([small.assign(source="new"), other.assign(source="old")])
    [fig] = compare_view(rows)
    assert fig.layout.title.text.startswith("permuted-mnist: new − old")
    line = next(t for t in _lines(fig) if t.name == "cbp+gxd")
    assert np.allclose(np.asarray(line.y, dtype=float), 0.05, atol=1e-4)
    assert compare_view(small)[0].startswith("Compare two studies")


def test_a_diagnostic_absent_from_the_rows_is_skipped(small):
    titles = [f.layout.title.text for f in diagnostics_view(small.drop(columns="grad_norm"))]
    assert len(titles) == 6 and not any("grad_norm" in t for t in titles)
    assert diagnostics_view(
        small[["experiment", "method", "utility", "activation", "seed", "task", "accuracy"]]
    )[0].startswith("No diagnostics")


def _assay_summary() -> pd.DataFrame:
    """Two seeds of relu and tanh: ReLU's gxd shock 0.0025 against random's 0.12."""
    shocks = {"gxd": 0.0025, "contribution": 0.01, "random": 0.12, "oracle": 0.002}
    return pd.DataFrame([
        {"activation": a, "norm": "none", "seed": s, "checkpoint": 0, "utility": u,
         "shock5_l1": v * (1 + s / 10), "shock5_kl": v / 10, "spearman_l1_pooled": 0.9 - v,
         "spearman_l1_per_layer": 0.8 - v, "spearman_kl_pooled": 0.7 - v,
         "spearman_kl_per_layer": 0.6 - v}
        for a in ("relu", "tanh") for s in (0, 1) for u, v in shocks.items()
    ])  # fmt: skip


def test_the_assay_shows_l1_and_kl_shocks_on_log_axes_and_the_papers_values():
    fig = assay_view(_assay_summary())
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis2.type == "log"
    assert fig.layout.yaxis.title.text == "Shock@5% (logit L1, log scale)"
    assert fig.layout.yaxis2.title.text == "Shock@5% (KL, nats, log scale)"
    l1 = {t.name: t.y for t in fig.data if t.meta == "L1"}
    kl = {t.name: t.y for t in fig.data if t.meta == "KL"}
    assert list(l1) == list(kl) == ["contribution", "gxd", "random", "oracle"]
    assert {t.yaxis for t in fig.data if t.meta == "KL"} == {"y2"}
    assert l1["gxd"][0] == pytest.approx(0.0025 * 1.05)
    table = spearman_table(_assay_summary())
    # the paper states relu gxd L1 (Table 7), nothing for tanh or for the MLP's KL
    assert "<i>relu L1 paper (Table 7)</i>" in table and "0.996" in table
    assert "tanh L1 paper" not in table and "KL paper" not in table
    assert table.count("<b>") == 2 * 4  # the best of each measured column, both activations


def test_png_and_svg_downloads_are_configured_once():
    assert FIGURE_CONFIG["toImageButtonOptions"]["format"] == "svg"
    assert FIGURE_CONFIG["displaylogo"] is False


CLICKS = """<script>window.addEventListener("load", function () {
  var gd = document.getElementById("fig-0"), out = {}, LINE = %d;
  function visible(kind) { return gd._fullData.filter(function (t) {
    return t.visible === kind; }).length; }
  function line() { var y = gd._fullData[LINE].y; return {n: y.length, last: y[y.length - 1]}; }
  function click(label, selector) {
    var found = null;
    gd.querySelectorAll(selector || ".updatemenu-button").forEach(function (b) {
      if (b.textContent === label) { found = b; } });
    found.dispatchEvent(new MouseEvent("click", {bubbles: true}));
  }
  var steps = [
    function () { out.start = line(); out.shown = visible(true); },
    function () { click("raw"); },
    function () { out.raw = line(); out.title = gd.layout.title.text; click("log y"); },
    function () { out.axes = [gd._fullLayout.yaxis.type, gd._fullLayout.yaxis2.type];
                  click("seeds on"); },
    function () { out.seeds = visible(true);
                  gd.querySelector(".updatemenu-header").dispatchEvent(
                    new MouseEvent("click", {bubbles: true})); },
    function () { click("cbp+gxd", ".updatemenu-dropdown-button"); },
    function () { out.filtered = visible(true); out.legendonly = visible("legendonly");
                  out.png = gd.querySelectorAll('[data-title="Download plot as PNG"]').length;
                  out.logo = gd.querySelectorAll('a[href*="plotly.com"]').length;
                  document.body.setAttribute("data-results", JSON.stringify(out)); },
    function () { document.body.setAttribute("data-errors",
                                              JSON.stringify(window.__errors)); }
  ];
  steps.forEach(function (step, i) { setTimeout(step, 200 * (i + 1)); });
});</script>"""


def test_smoothing_log_seeds_and_filter_controls_change_what_chromium_draws(tmp_path):
    rows = paper_rows(tasks=60, seeds=3, activations=2)
    [fig] = accuracy_view(rows)
    line = next(i for i, t in enumerate(fig.data) if t.name == "cbp+gxd")
    page = figures_page(tmp_path / "controls.html", [fig], CLICKS % line)
    elements = open_in_chromium(page, tmp_path, "dashboard-controls.png", height=1400)
    assert body(elements).get("data-errors") == "[]"
    out = json.loads(body(elements)["data-results"])
    # 60 tasks open on a 6-task average drawn every 2nd task; 'raw' shows all 60
    assert out["start"]["n"] == 30 and out["raw"]["n"] == 60
    assert out["raw"]["last"] != out["start"]["last"] and "raw" in out["title"]
    assert out["axes"] == ["log", "log"]
    curves = 2 * 9  # panels × curves: a line and two band edges each, seeds hidden
    assert out["shown"] == 3 * curves and out["seeds"] == 4 * curves
    # cbp+gxd alone: its line, band edges and seed lines in both panels; the rest legend-only
    assert out["filtered"] == 2 * 4 and out["legendonly"] == 3 * (curves - 2)
    assert out["png"] == 1 and out["logo"] == 0


@pytest.fixture(scope="module")
def paper():
    """The paper's Fig. 3 at full size: 4 activations × 9 curves × 800 tasks × 15 seeds."""
    return paper_rows(tasks=800, seeds=15).assign(source="paper")


def test_a_paper_size_study_builds_fast_and_renders_without_errors(paper, tmp_path):
    start = time.perf_counter()
    page = build_page(Sources(rows=[paper]))
    seconds = time.perf_counter() - start
    assert seconds < 30, f"the page took {seconds:.1f} s"
    # Measured 9.2 MB with every panel (the seven diagnostics 7.8 MB of it) for 432,000 rows.
    assert len(page) < 12_000_000, f"{len(page) / 1e6:.1f} MB of figures"
    path = wrap_page(tmp_path / "paper.html", page)
    elements = open_in_chromium(path, tmp_path, "dashboard-paper-size.png", height=2400)
    assert body(elements).get("data-errors") == "[]"
    drawn = plots(elements)
    assert {"accuracy-0", "relative-0"} <= set(drawn)
    assert all(int(p["data-rendered"]) >= 1 for p in drawn.values())


def test_paper_size_figures_of_every_view_stay_small_and_leave_seed_lines_out(paper):
    start = time.perf_counter()
    figures = [*accuracy_view(paper), *relative_view(paper), *diagnostics_view(paper)]
    seconds = time.perf_counter() - start
    assert seconds < 30, f"the figures took {seconds:.1f} s"
    sizes = [len(f.to_html(full_html=False, include_plotlyjs=False)) for f in figures]
    assert max(sizes) < 2_000_000 and sum(sizes) < 15_000_000, sizes
    notes = [a.text for a in figures[0].layout.annotations if "per-seed" in (a.text or "")]
    assert notes and "exceed the page budget" in notes[0]
    assert not any(t.name.endswith(" seeds") for t in figures[0].data)
