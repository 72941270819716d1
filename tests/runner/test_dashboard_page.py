"""`plasticity dashboard` as a command: plotly.js embedded or from the CDN, static SVG
figures through Plotly's own export, and no page for folders without results."""

from __future__ import annotations

import shutil

import pytest
from plotly.offline import get_plotlyjs_version

from runner.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two `plasticity run` results (bp, cbp+gxd) of a tiny network."""
    out = tmp_path_factory.mktemp("runs")
    base = ["run", "permuted-mnist", "--tasks", "2", "--hidden", "8", "--probe-size", "50"]
    for method in (["--method", "bp"], ["--method", "cbp", "--utility", "gxd"]):
        assert main([*base, *method, "--threads", "1", "--out", str(out)]) == 0
    return out


def test_the_cdn_page_loads_plotly_from_its_cdn_and_stays_small(runs, tmp_path, capsys):
    cdn, embed = tmp_path / "cdn.html", tmp_path / "embed.html"
    assert main(["dashboard", str(runs), "--out", str(cdn), "--plotly", "cdn"]) == 0
    assert "loads plotly.js from its CDN" in capsys.readouterr().out
    assert main(["dashboard", str(runs), "--out", str(embed)]) == 0
    head = cdn.read_text()[:2000]
    assert f'src="https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"' in head
    assert embed.stat().st_size - cdn.stat().st_size > 3_000_000, "plotly.js left out"
    assert "cdn.plot.ly" not in embed.read_text()[:2000]


def test_figures_are_written_as_svg_files(runs, tmp_path, capsys):
    if shutil.which("chromium") is None:
        pytest.skip("Plotly's image export needs a Chrome or Chromium")
    figures = tmp_path / "figures"
    assert main(["dashboard", str(runs), "--out", str(tmp_path / "d.html"),
                 "--figures", str(figures)]) == 0  # fmt: skip
    written = sorted(figures.glob("*.svg"))
    assert written and f"figures: {len(written)} SVG files" in capsys.readouterr().out
    assert {p.stem.split("-")[0] for p in written} >= {"accuracy"}
    for path in written:
        assert path.read_text()[:200].startswith("<svg") and path.stat().st_size > 5_000


def test_folders_without_results_are_one_line_and_no_page(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    page = tmp_path / "d.html"
    assert main(["dashboard", str(empty), "--out", str(page)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"plasticity: error: {empty}: no results found") and err.count("\n") == 1
    assert not page.exists()
