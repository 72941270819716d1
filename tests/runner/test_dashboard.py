"""The dashboard built from real results of the project's own runs, opened in headless
Chromium: no JavaScript errors, the expected panels and traces, a screenshot kept."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from plasticity_core.errors import DataError
from plasticity_core.experiments import EXPERIMENTS, Experiment
from plasticity_core.utility import UTILITIES
from runner.cli import main
from runner.dashboard import load_sources, make_server, write_dashboard
from runner.dashboard.views import accuracy_view, overview_table, relative_view
from runner.results import write_rows
from tests.runner.browser import ARTIFACTS, chromium, open_in_chromium  # noqa: F401 (moved)
from tests.runner.browser import body as _body
from tests.runner.browser import plots as _plots
from tests.runner.ray_helpers import write_spec


@pytest.fixture(scope="module")
def results(local_ray, tmp_path_factory):
    """A results folder with a sweep (bp and cbp+gxd under relu and tanh), a single run
    (OUT/permuted-mnist/rows/stage=run/) and an assay, all written by the project's own
    commands."""
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
    assert len(list((out / "permuted-mnist" / "rows" / "stage=run").glob("*.parquet"))) == 1
    assay = ["assay", "--activations", "relu", "--seeds", "1", "--checkpoints", "0",
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
    assert panels == {"summary", "overview", "accuracy", "relative", "diagnostics", "compare",
                      "sweep", "assay"}  # fmt: skip
    plots = _plots(elements)
    # facets relu/tanh; the final curves bp and cbp+gxd, each a line, an SE band (its lower
    # and upper edge) and its hidden per-seed lines; plus the single run's curve (its own
    # source, relu) with one seed: a line, no band, no per-seed lines
    assert plots["accuracy-0"]["data-traces"] == str(2 * 2 * (1 + 2 + 1) + 1)
    assert plots["relative-0"]["data-traces"] == "2"  # cbp+gxd - bp under relu and tanh
    assert plots["sweep-0"]["data-traces"] == "5"  # 4 groups + the selected stars
    # one activation: a bar per utility and the oracle, for L1 and for KL
    assert plots["assay-0"]["data-traces"] == str(2 * (len(UTILITIES.names()) + 1))
    assert all(int(p["data-rendered"]) >= 1 for p in plots.values()), "plotly drew SVG"
    tables = {attrs.get("data-table") for tag, attrs in elements if tag == "table"}
    assert {"summary", "overview", "spearman"} <= tables
    assert "diagnostics-0" in plots and "compare-0" in plots  # a study and a run folder
    assert page.stat().st_size < 10_000_000
    text = page.read_text()
    assert "cdn.plot.ly" not in text[:1000] and "Plotly.newPlot" in text
    # the single run's line: 1 trial, 1 seed, 2 of 2 tasks, none unfinished or diverged
    assert ("<td>permuted-mnist</td><td>run</td><td>1</td><td>1</td><td>2/2</td><td>0</td>"
            "<td></td><td>0</td>") in text  # fmt: skip


def test_empty_and_broken_folders_give_messages_not_tracebacks(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken" / "permuted-mnist" / "rows" / "stage=run"
    broken.mkdir(parents=True)
    (broken / "x.parquet").write_bytes(b"not parquet")
    page = write_dashboard([str(empty), str(tmp_path / "broken")], tmp_path / "d.html")
    elements = open_in_chromium(page, tmp_path, "dashboard-empty.png")
    assert _body(elements).get("data-errors") == "[]"
    assert not _plots(elements)
    empties = [a for t, a in elements if t == "p" and a.get("class") == "empty"]
    assert len(empties) >= 4  # overview, accuracy, relative, sweep, assay say why
    text = page.read_text()
    assert f"{empty}: no results found" in text and "x.parquet" in text


def test_a_missing_folder_is_bad_input_and_no_page_is_written(tmp_path):
    out = tmp_path / "d.html"
    with pytest.raises(DataError) as raised:
        write_dashboard([str(tmp_path), str(tmp_path / "nope")], out)
    assert str(raised.value) == f"{tmp_path / 'nope'}: no such folder"
    assert not out.exists()


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


@dataclass(frozen=True)
class _ToyConfig:
    width: int = 8
    depth: int = 1


TOY = "toy-facets"


@pytest.fixture
def toy_experiment():
    """A throw-away experiment faceted by its own fields, width across and depth down."""
    toy = Experiment(name=TOY, config=_ToyConfig, run=lambda config: iter(()),
                     description="test only", facets=("width", "depth"))  # fmt: skip
    EXPERIMENTS.add(TOY, toy)
    yield EXPERIMENTS.get(TOY)
    EXPERIMENTS.remove(TOY)


def _write_run(out: Path, experiment: str, rows: list[dict], statuses: dict[str, str]) -> None:
    """A `plasticity run` output folder: one rows file and one record per trial."""
    folder = out / experiment
    for trial_id, status in statuses.items():
        trial = [r for r in rows if r["trial_id"] == trial_id]
        write_rows(trial, folder / "rows" / "stage=run" / f"{trial_id}.parquet")
        record = {"trial_id": trial_id, "stage": "run", "seed": trial[0]["seed"], "tasks": 3,
                  "status": status, "tasks_done": len(trial)}  # fmt: skip
        (folder / "trials" / "stage=run").mkdir(parents=True, exist_ok=True)
        (folder / "trials" / "stage=run" / f"{trial_id}.json").write_text(json.dumps(record))


def _toy_rows() -> list[dict]:
    """bp and cbp at width 8/16 x depth 1/2, 2 seeds, 3 tasks; activation and norm too,
    which must not be this experiment's facets."""
    return [
        {"stage": "run", "trial_id": f"{method}-w{width}-d{depth}-s{seed}", "experiment": TOY,
         "method": method, "utility": "none", "width": width, "depth": depth,
         "activation": "relu", "norm": "none", "seed": seed, "task": task,
         "accuracy": 0.5 + 0.1 * seed + 0.01 * task + (0.1 if method == "cbp" else 0.0)}
        for method in ("bp", "cbp") for width in (8, 16) for depth in (1, 2)
        for seed in (0, 1) for task in range(3)
    ]  # fmt: skip


def test_an_experiments_accuracy_views_are_faceted_by_its_registered_fields(
    toy_experiment, tmp_path
):
    rows = _toy_rows()
    _write_run(tmp_path, TOY, rows, {r["trial_id"]: "complete" for r in rows})
    frame = pd.concat(load_sources([str(tmp_path)]).rows)
    [accuracy] = accuracy_view(frame)
    titles = [a.text for a in accuracy.layout.annotations]
    assert titles == ["width=8, depth=1", "width=16, depth=1", "width=8, depth=2",
                      "width=16, depth=2"]  # fmt: skip
    assert accuracy.layout.title.text == (
        f"{TOY}: test accuracy per task, mean ± SE over 2 seeds (raw, no smoothing)"
    )  # 3 tasks: no window
    # per facet: bp and cbp, each a line, a band (two edges) and its hidden per-seed lines
    assert len(accuracy.data) == 4 * 2 * (1 + 2 + 1)
    [relative] = relative_view(frame)
    assert [a.text for a in relative.layout.annotations if a.text] == titles
    assert {t.name for t in relative.data} == {"cbp"}


def test_the_overview_counts_a_run_folders_trials_tasks_and_diverged_records(
    toy_experiment, tmp_path
):
    rows = [r for r in _toy_rows() if r["width"] == 8 and r["depth"] == 1]
    ids = sorted({r["trial_id"] for r in rows})
    _write_run(tmp_path, TOY, rows, dict.fromkeys(ids, "complete") | {ids[0]: "diverged"})
    sources = load_sources([str(tmp_path)])
    table = overview_table(sources, pd.concat(sources.rows))
    # 4 trials (bp, cbp x 2 seeds), 2 seeds, 12 of 12 tasks, none running, 1 diverged
    assert (f"<td>{TOY}</td><td>run</td><td>4</td><td>2</td><td>12/12</td><td>0</td>"
            "<td></td><td>1</td>") in table  # fmt: skip
