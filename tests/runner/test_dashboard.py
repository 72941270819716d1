"""The dashboard built from real results of the project's own runs, opened in headless
Chromium: no JavaScript errors, the expected panels and traces, a screenshot kept."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from runner.cli import main
from runner.dashboard import make_server, write_dashboard
from tests.runner.ray_helpers import write_spec

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PLASTICITY_TEST_ARTIFACTS", ROOT / "test-artifacts"))
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=15000",
]  # fmt: skip


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("PLASTICITY_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class _Elements(HTMLParser):
    """Attributes of every element of a DOM dump, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.elements.append((tag, dict(attrs)))


def open_in_chromium(page: Path, tmp_path: Path, screenshot: str) -> list[tuple[str, dict]]:
    """The page's DOM after its scripts ran, and a full-page screenshot in ARTIFACTS."""
    browser = chromium()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run(
        [browser, *FLAGS, *profile, "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / screenshot
    subprocess.run(
        [browser, *FLAGS, *profile, "--window-size=1400,3600", f"--screenshot={shot}",
         page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert shot.stat().st_size > 10_000
    parser = _Elements()
    parser.feed(dom)
    return parser.elements


def _plots(elements) -> dict[str, dict]:
    return {
        attrs["id"]: attrs
        for tag, attrs in elements
        if tag == "div" and "js-plotly-plot" in attrs.get("class", "")
    }


def _body(elements) -> dict:
    return next(attrs for tag, attrs in elements if tag == "body")


@pytest.fixture(scope="module")
def results(local_ray, tmp_path_factory):
    """A results folder with a sweep (bp and cbp+gxd under relu and tanh), a single run and
    an assay, all written by the project's own commands."""
    out = tmp_path_factory.mktemp("results")
    spec = yaml.safe_load(write_spec(out.parent, "study").read_text())
    spec.update(
        fixed={"tasks": 4, "hidden": [16], "probe_size": 100, "maturity": 5,
               "replacement_rate": 0.01},
        grid=[
            {"method": ["bp"], "activation": ["relu", "tanh"], "lr": [0.01, 0.05]},
            {"method": ["cbp"], "utility": ["gxd"], "activation": ["relu", "tanh"],
             "lr": [0.01, 0.05]},
        ],
        seeds={"sweep": 1, "final": 2},
        select={"per": ["method", "utility", "activation", "norm"]},
    )  # fmt: skip
    spec_file = out.parent / "study.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(spec_file), "--out", str(out)]) == 0
    single = ["run", "permuted-mnist", "--tasks", "2", "--hidden", "16", "--probe-size", "100"]
    assert main([*single, "--out", str(out)]) == 0
    assay = ["assay", "--activation", "relu", "--seeds", "1", "--checkpoints", "0",
             "--hidden", "32,32", "--probe", "200", "--calibration", "200"]  # fmt: skip
    assert main([*assay, "--out", str(out)]) == 0
    return out


def test_dashboard_of_real_results_renders_every_panel_without_errors(results, tmp_path):
    page = tmp_path / "dashboard.html"
    assert main(["dashboard", str(results), "--out", str(page)]) == 0
    elements = open_in_chromium(page, tmp_path, "dashboard.png")
    body = _body(elements)
    assert body.get("data-ready") == "1", "the page's scripts ran to the end"
    assert body.get("data-errors") == "[]"
    panels = {attrs["data-panel"] for _, attrs in elements if "data-panel" in attrs}
    assert panels == {"overview", "accuracy", "relative", "sweep", "assay"}
    plots = _plots(elements)
    # facets relu/tanh; the final curves bp and cbp+gxd, each a line and an SE band; plus
    # the single run's bp curve (its own source, relu) with one seed: a line, no band
    assert plots["accuracy-0"]["data-traces"] == "9"
    assert plots["relative-0"]["data-traces"] == "2"  # cbp+gxd - bp under relu and tanh
    assert plots["sweep-0"]["data-traces"] == "5"  # 4 groups + the selected stars
    assert plots["assay-0"]["data-traces"] == "1"  # one activation's bars
    assert all(int(p["data-rendered"]) >= 1 for p in plots.values()), "plotly drew SVG"
    tables = {attrs.get("data-table") for tag, attrs in elements if tag == "table"}
    assert {"overview", "spearman"} <= tables
    assert page.stat().st_size < 10_000_000
    assert "cdn.plot.ly" not in page.read_text()[:1000] and "Plotly.newPlot" in page.read_text()


def test_empty_and_broken_folders_give_messages_not_tracebacks(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken" / "permuted-mnist"
    broken.mkdir(parents=True)
    (broken / "x.parquet").write_bytes(b"not parquet")
    page = write_dashboard([str(empty), str(tmp_path / "broken"), str(tmp_path / "nope")],
                           tmp_path / "d.html")  # fmt: skip
    elements = open_in_chromium(page, tmp_path, "dashboard-empty.png")
    assert _body(elements).get("data-errors") == "[]"
    assert not _plots(elements)
    empties = [a for t, a in elements if t == "p" and a.get("class") == "empty"]
    assert len(empties) >= 4  # overview, accuracy, relative, sweep, assay say why
    text = page.read_text()
    assert "no results found" in text and "does not exist" in text and "x.parquet" in text


def test_a_sweep_still_running_shows_its_rows_and_waits_for_the_selection(results, tmp_path):
    partial = tmp_path / "study"
    shutil.copytree(results / "study", partial, ignore=shutil.ignore_patterns("final"))
    (partial / "selection.csv").unlink()
    for file in list((partial / "rows" / "stage=final").iterdir())[:]:
        file.unlink()
    page = write_dashboard([str(partial)], tmp_path / "partial.html")
    elements = open_in_chromium(page, tmp_path, "dashboard-partial.png")
    assert _body(elements).get("data-errors") == "[]"
    plots = _plots(elements)
    assert "accuracy-0" in plots and "sweep-0" not in plots
    assert "no selection yet" in page.read_text()


def test_serve_binds_loopback_and_returns_the_page(results, tmp_path):
    page = write_dashboard([str(results)], tmp_path / "served.html")
    server = make_server(page, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.read() == page.read_bytes()
    finally:
        server.shutdown()
        server.server_close()
