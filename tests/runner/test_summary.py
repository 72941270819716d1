"""The ranked summary against hand-computed means, standard errors and paired differences;
`plasticity summary` on Parquet folders; the dashboard's summary tables."""

from __future__ import annotations

import io
import math
import re
from html.parser import HTMLParser
from statistics import mean, stdev

import pandas as pd
import pytest

from runner.cli import main
from runner.dashboard.summary_view import curve_order, summary_html, summary_tables
from runner.manifest import prepare as prepare_folder
from runner.results import write_rows
from runner.spec import parse_spec
from runner.summary import COLUMNS, default_last_tasks, format_summary, summary_table
from tests.runner.specs import tiny_spec_document

IDENTITY = {"bp": ("bp", "none"), "cbp+gxd": ("cbp", "gxd"),
            "cbp+contribution": ("cbp", "contribution")}  # fmt: skip

# (activation, curve) -> seed -> the run's accuracy at tasks 0..3. With the last 2 tasks
# scored, relu ranks gxd > contribution > bp and tanh ranks bp > contribution > gxd.
ACCURACY = {
    ("relu", "bp"): {0: [0.9, 0.8, 0.50, 0.40], 1: [0.9, 0.8, 0.60, 0.50],
                     2: [0.9, 0.8, 0.40, 0.30]},
    ("relu", "cbp+gxd"): {0: [0.9, 0.9, 0.70, 0.60], 1: [0.9, 0.9, 0.80, 0.70],
                          2: [0.9, 0.9, 0.70, 0.50]},
    ("relu", "cbp+contribution"): {0: [0.7, 0.7, 0.60, 0.50], 1: [0.7, 0.7, 0.70, 0.60],
                                   2: [0.7, 0.7, 0.30, 0.30]},
    ("tanh", "bp"): {0: [0.6, 0.6, 0.6, 0.6], 1: [0.6, 0.6, 0.7, 0.7], 2: [0.6, 0.6, 0.5, 0.5]},
    ("tanh", "cbp+gxd"): {0: [0.5, 0.5, 0.5, 0.5], 1: [0.5, 0.5, 0.5, 0.7],
                          2: [0.5, 0.5, 0.4, 0.4]},
    ("tanh", "cbp+contribution"): {0: [0.6, 0.6, 0.65, 0.65], 1: [0.6, 0.6, 0.6, 0.6],
                                   2: [0.6, 0.6, 0.5, 0.5]},
}  # fmt: skip


def _rows(accuracy=ACCURACY, experiment="permuted-mnist", metric="accuracy", **extra) -> list:
    """Per-task rows of every run in `accuracy` ((facet, curve) -> seed -> values)."""
    facet_b = "optimizer" if experiment == "slowly-changing-regression" else "norm"
    return [
        {"stage": "run", "trial_id": f"{activation}-{curve}-s{seed}", "experiment": experiment,
         "method": IDENTITY[curve][0], "utility": IDENTITY[curve][1], "activation": activation,
         facet_b: "none", "seed": seed, "task": task, metric: value, **extra}
        for (activation, curve), runs in accuracy.items()
        for seed, values in runs.items() for task, value in enumerate(values)
    ]  # fmt: skip


def _se(values: list[float]) -> float:
    return stdev(values) / math.sqrt(len(values))


def _by_curve(table: pd.DataFrame, activation: str) -> pd.DataFrame:
    return table[table["facet_a"] == activation].set_index("curve")


def test_ranks_means_and_paired_differences_match_a_hand_computation():
    table = summary_table(pd.DataFrame(_rows()), last_tasks=2)
    assert list(table.columns) == COLUMNS
    relu = _by_curve(table, "relu")
    assert list(relu.index) == ["cbp+gxd", "cbp+contribution", "bp"]  # best first
    assert list(relu["rank"]) == [1, 2, 3] and list(relu["best"]) == [True, False, False]
    # each run's score: the mean of its last two tasks
    bp = [(0.50 + 0.40) / 2, (0.60 + 0.50) / 2, (0.40 + 0.30) / 2]  # 0.45, 0.55, 0.35
    gxd = [(0.70 + 0.60) / 2, (0.80 + 0.70) / 2, (0.70 + 0.50) / 2]  # 0.65, 0.75, 0.60
    contribution = [(0.60 + 0.50) / 2, (0.70 + 0.60) / 2, (0.30 + 0.30) / 2]
    for curve, scores in (("bp", bp), ("cbp+gxd", gxd), ("cbp+contribution", contribution)):
        assert relu.loc[curve, "mean"] == pytest.approx(mean(scores))
        assert relu.loc[curve, "se"] == pytest.approx(_se(scores))
        assert relu.loc[curve, "seeds"] == 3 and relu.loc[curve, "tasks"] == 2
    # paired: seed by seed against bp (0.20, 0.20, 0.25 for gxd; 0.10, 0.10, -0.05)
    for curve, scores in (("cbp+gxd", gxd), ("cbp+contribution", contribution)):
        diffs = [a - b for a, b in zip(scores, bp, strict=True)]
        assert relu.loc[curve, "diff_bp"] == pytest.approx(mean(diffs))
        assert relu.loc[curve, "diff_bp_se"] == pytest.approx(_se(diffs))
        assert relu.loc[curve, "paired"] and relu.loc[curve, "baseline"] == "bp"
    # the pairing removes what the seeds share: far below the unpaired sqrt(se_a² + se_b²)
    assert relu.loc["cbp+gxd", "diff_bp_se"] < 0.25 * math.hypot(_se(gxd), _se(bp))
    assert relu.loc["bp", "diff_bp"] == 0 and math.isnan(relu.loc["bp", "diff_bp_se"])
    assert not relu.loc["bp", "paired"]
    tanh = _by_curve(table, "tanh")
    assert list(tanh.index) == ["bp", "cbp+contribution", "cbp+gxd"]
    # gxd trails bp by exactly 0.1 on every seed: SE 0
    assert tanh.loc["cbp+gxd", "diff_bp"] == pytest.approx(-0.1)
    assert tanh.loc["cbp+gxd", "diff_bp_se"] == pytest.approx(0, abs=1e-12)
    assert set(table["facets"]) == {"activation/norm"} and set(table["facet_b"]) == {"none"}
    assert set(table["metric"]) == {"accuracy"} and set(table["mode"]) == {"max"}


def test_every_task_is_scored_when_k_is_0_or_longer_than_the_runs():
    rows = pd.DataFrame(_rows())
    every, longer = summary_table(rows, 0), summary_table(rows, 10)
    bp = _by_curve(every, "relu").loc["bp"]
    runs = [mean([0.9, 0.8, 0.50, 0.40]), mean([0.9, 0.8, 0.60, 0.50]),
            mean([0.9, 0.8, 0.40, 0.30])]  # fmt: skip
    assert bp["mean"] == pytest.approx(mean(runs)) and bp["tasks"] == 4
    assert longer["mean"].to_numpy() == pytest.approx(every["mean"].to_numpy())
    assert set(longer["last_tasks"]) == {10} and set(every["last_tasks"]) == {0}


def test_without_common_seeds_the_difference_is_unpaired():
    # cbp ran seeds 3, 4, 5; bp seeds 0, 1, 2 (one common seed is not enough either)
    accuracy = {("relu", "bp"): ACCURACY[("relu", "bp")],
                ("relu", "cbp+gxd"): {3: [0.7, 0.7], 4: [0.8, 0.6], 2: [0.9, 0.9]}}  # fmt: skip
    row = summary_table(pd.DataFrame(_rows(accuracy)), 2).set_index("curve").loc["cbp+gxd"]
    bp = [(0.50 + 0.40) / 2, (0.60 + 0.50) / 2, (0.40 + 0.30) / 2]
    cbp = [(0.7 + 0.7) / 2, (0.8 + 0.6) / 2, (0.9 + 0.9) / 2]
    assert not row["paired"]
    assert row["diff_bp"] == pytest.approx(mean(cbp) - mean(bp))
    assert row["diff_bp_se"] == pytest.approx(math.sqrt(_se(cbp) ** 2 + _se(bp) ** 2))


def test_a_group_without_bp_is_ranked_with_no_difference():
    accuracy = {k: v for k, v in ACCURACY.items() if k[1] != "bp"}
    table = summary_table(pd.DataFrame(_rows(accuracy)), 2)
    relu = _by_curve(table, "relu")
    assert list(relu.index) == ["cbp+gxd", "cbp+contribution"]
    assert relu["diff_bp"].isna().all() and relu["diff_bp_se"].isna().all()
    assert not relu["paired"].any() and set(relu["baseline"]) == {""}
    assert "(no bp curve in this group)" in format_summary(table)


def test_a_loss_is_ranked_lowest_first():
    loss = {("relu", "bp"): {0: [0.3, 0.2], 1: [0.5, 0.4]},
            ("relu", "cbp+gxd"): {0: [0.2, 0.1], 1: [0.3, 0.2]}}  # fmt: skip
    rows = pd.DataFrame(_rows(loss, "slowly-changing-regression", "loss"))
    table = summary_table(rows).set_index("curve")
    assert list(table.index) == ["cbp+gxd", "bp"] and table.loc["cbp+gxd", "best"]
    assert set(table["mode"]) == {"min"} and set(table["facets"]) == {"activation/optimizer"}
    # the difference keeps the metric's sign: a lower loss is negative
    gxd, bp = [mean([0.2, 0.1]), mean([0.3, 0.2])], [mean([0.3, 0.2]), mean([0.5, 0.4])]
    assert table.loc["cbp+gxd", "diff_bp"] == pytest.approx(mean(gxd) - mean(bp))
    # a caller may say the direction: the same rows, higher is better
    flipped = summary_table(rows, modes={"slowly-changing-regression": "max"})
    assert list(flipped["curve"]) == ["bp", "cbp+gxd"]


def test_of_several_bp_curves_the_best_is_the_baseline():
    rows = [*_rows({("relu", "bp"): {0: [0.5], 1: [0.6]}}, lr=0.01),
            *_rows({("relu", "bp"): {0: [0.7], 1: [0.8]}}, lr=0.1),
            *_rows({("relu", "cbp+gxd"): {0: [0.9], 1: [0.9]}}, lr=0.01)]  # fmt: skip
    for row in rows:  # one trial per configuration and seed
        row["trial_id"] += f"-lr{row['lr']}"
    table = summary_table(pd.DataFrame(rows)).set_index("curve")
    assert set(table["baseline"]) == {"bp lr=0.1"}
    assert table.loc["cbp+gxd lr=0.01", "diff_bp"] == pytest.approx(mean([0.9 - 0.7, 0.9 - 0.8]))


def test_final_rows_are_preferred_and_sources_are_never_pooled():
    final = pd.DataFrame(_rows()).assign(stage="final", source="study")
    sweep = final.assign(stage="sweep", accuracy=0.0, trial_id=final["trial_id"] + "-sweep")
    other = pd.DataFrame(_rows()).assign(source="runs")  # stage=run only: all its rows
    table = summary_table(pd.concat([final, sweep, other]), 2)
    assert set(table["source"]) == {"study", "runs"}
    means = table.set_index(["source", "facet_a", "curve"])["mean"]
    assert means["study", "relu", "bp"] == pytest.approx(means["runs", "relu", "bp"])
    assert (table.groupby("source")["seeds"].max() == 3).all()  # sweep runs not added


@pytest.fixture
def sweep_folder(tmp_path):
    """A sweep's experiment folder whose spec scores the last 2 tasks: final rows are
    ACCURACY, sweep rows are all 0 (they must not count)."""
    select = {"per": ["utility"], "last_tasks": 2}
    folder = prepare_folder(parse_spec(tiny_spec_document(select=select)), str(tmp_path))
    for stage, scale in (("final", 1.0), ("sweep", 0.0)):
        rows = _rows()
        for row in rows:
            row.update(stage=stage, accuracy=row["accuracy"] * scale)
        for trial in {r["trial_id"] for r in rows}:
            mine = [r for r in rows if r["trial_id"] == trial]
            write_rows(mine, folder / "rows" / f"stage={stage}" / f"{trial}.parquet")
    return folder


def test_the_command_prints_ranks_and_writes_a_csv_that_reads_back(sweep_folder, capsys):
    assert default_last_tasks(sweep_folder) == 2
    assert main(["summary", str(sweep_folder)]) == 0
    out = capsys.readouterr().out
    heading = "permuted-mnist · tiny · activation=relu, norm=none · accuracy (max) over the last "
    assert heading + "2 tasks, 3 seeds" in out
    starred = [line.split()[2] for line in out.splitlines() if line.startswith("*")]
    assert starred == ["cbp+gxd", "bp"]  # relu's best, then tanh's
    written = pd.read_csv(io.StringIO((sweep_folder / "summary.csv").read_text()))
    assert list(written.columns) == COLUMNS
    expected = summary_table(pd.DataFrame(_rows()).assign(source="tiny"), 2)
    assert list(written["curve"]) == list(expected["curve"])
    assert list(written["rank"]) == list(expected["rank"])
    assert written["mean"].to_numpy() == pytest.approx(expected["mean"].to_numpy())


def test_csv_to_stdout_and_an_explicit_window(sweep_folder, capsys):
    assert main(["summary", str(sweep_folder), "--last", "0", "--csv", "-"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(table["last_tasks"]) == {0} and set(table["tasks"]) == {4}
    assert not (sweep_folder / "summary.csv").exists()


def test_a_run_folder_scores_every_task_and_keeps_its_csv_beside_it(tmp_path, capsys):
    # the --out folder of `plasticity run`: OUT/<experiment>/rows/stage=run/<trial>.parquet
    rows = _rows()
    for trial in {r["trial_id"] for r in rows}:
        mine = [r for r in rows if r["trial_id"] == trial]
        write_rows(mine, tmp_path / "permuted-mnist" / "rows" / "stage=run" / f"{trial}.parquet")
    assert main(["summary", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # the source is the experiment's own folder name, so the heading leaves it out
    assert "permuted-mnist · activation=tanh, norm=none · accuracy (max) over every task" in out
    written = pd.read_csv(tmp_path / "summary.csv")
    assert set(written["last_tasks"]) == {0} and set(written["source"]) == {"permuted-mnist"}


def test_a_missing_or_empty_folder_is_one_line_and_exit_2(tmp_path, capsys):
    for folder in (tmp_path / "missing", tmp_path):
        assert main(["summary", str(folder)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("plasticity: error: ") and err.count("\n") == 1


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.found.append((tag, dict(attrs)))


def test_the_html_marks_the_best_row_and_offers_each_window():
    rows = pd.DataFrame(_rows()).assign(source="tiny")
    page = summary_html(summary_tables(rows, {"tiny": 2}))
    parser = _Elements()
    parser.feed(page)
    # K: the default 2, 1, a quarter of 4 tasks (1), 10 (the same as every task: 0)
    options = [a["value"] for tag, a in parser.found if tag == "option"]
    assert options == ["1", "2", "0"]
    assert ("option", {"value": "2", "selected": None}) in parser.found
    tables = [a for tag, a in parser.found if tag == "table"]
    assert len(tables) == 2 * 3  # two facets at three K
    assert sorted(t["data-k"] for t in tables) == sorted(options * 2)
    assert all(("hidden" in t) == (t["data-k"] != "2") for t in tables)
    best = re.findall(r'<tr class="best"><td>1</td><td>([^<]+)</td>', page)
    assert best == ["cbp+gxd", "bp"] * 3
    assert 'getElementById("summary-k")' in page


def test_the_legend_order_is_the_mean_rank_across_facets():
    accuracy = {k: v for k, v in ACCURACY.items() if k != ("tanh", "cbp+gxd")}
    rows = pd.DataFrame(_rows(accuracy)).assign(source="tiny")
    # relu ranks gxd 1, contribution 2, bp 3; tanh bp 1, contribution 2: mean ranks gxd 1,
    # bp 2, contribution 2 (a tie, broken by name)
    assert curve_order(summary_tables(rows, {"tiny": 2})) == {
        ("permuted-mnist", "tiny"): ["cbp+gxd", "bp", "cbp+contribution"]
    }
