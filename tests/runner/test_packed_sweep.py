"""Sweeps with `pack:`: runs sharing one Ray trial give the rows they give alone, one rows
file and record per run, and a pack killed mid-run resumes to exactly the same rows."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from runner.cli import main
from runner.manifest import FAULTS_ENV
from runner.results import read_results
from runner.spec import load_spec
from tests.runner.ray_helpers import TIMING, write_spec

SEEDS = {"sweep": 3, "final": 1}


@pytest.fixture(scope="module")
def runs_alone(local_ray, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("alone")
    spec_file = write_spec(tmp, "alone", grid={"lr": [0.05]}, seeds=SEEDS)
    assert main(["sweep", str(spec_file), "--stage", "sweep", "--out", str(tmp)]) == 0
    return read_results(tmp / "alone")


@pytest.fixture(scope="module")
def packed_run(local_ray, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("packed")
    spec_file = write_spec(tmp, "packed", grid={"lr": [0.05]}, seeds=SEEDS, pack=3)
    assert main(["sweep", str(spec_file), "--stage", "sweep", "--out", str(tmp)]) == 0
    return load_spec(spec_file), tmp / "packed"


def _columns(rows: pd.DataFrame) -> pd.DataFrame:
    keep = [c for c in rows.columns if c not in TIMING]
    return rows[keep].sort_values(["trial_id", "task"]).reset_index(drop=True)


def test_three_seeds_run_as_one_ray_trial_with_a_record_and_rows_file_per_run(packed_run):
    spec, folder = packed_run
    tune_trials = [p for p in (folder / "sweep" / "attempt-0").iterdir() if p.is_dir()]
    assert len(tune_trials) == 1 and tune_trials[0].name.startswith("pack-")
    records = [json.loads(f.read_text()) for f in (folder / "trials").rglob("*.json")]
    assert sorted(r["seed"] for r in records) == [0, 1, 2]
    assert {r["status"] for r in records} == {"complete"}
    assert {r["pack"] for r in records} == {tune_trials[0].name}
    assert len(list((folder / "rows" / "stage=sweep").glob("*.parquet"))) == 3


def test_packed_runs_give_the_rows_of_the_same_runs_alone(packed_run, runs_alone):
    _, folder = packed_run
    pd.testing.assert_frame_equal(_columns(read_results(folder)), _columns(runs_alone))


def test_status_counts_the_runs_of_a_pack(packed_run, capsys):
    _, folder = packed_run
    assert main(["status", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "sweep: 3 trials: 3 done (0 diverged)" in out
    assert "tasks saved 15/15" in out


def test_a_pack_killed_mid_run_resumes_to_the_uninterrupted_rows(packed_run, tmp_path, monkeypatch):
    spec, clean_folder = packed_run
    faults = tmp_path / "faults"
    faults.mkdir()
    member = f"{spec.build(spec.configurations()[0], 1).config_hash()}-s1"
    (faults / f"{member}@3.kill").touch()  # SIGKILL of the worker before task 3
    monkeypatch.setenv(FAULTS_ENV, str(faults))
    spec_file = write_spec(tmp_path, "packed", grid={"lr": [0.05]}, seeds=SEEDS, pack=3)
    out = tmp_path / "out"
    assert main(["sweep", str(spec_file), "--stage", "sweep", "--out", str(out)]) == 1
    assert not list(faults.iterdir())
    interrupted = read_results(out / "packed")
    assert set(interrupted.groupby("trial_id")["task"].max()) == {1}  # checkpoint at task 2

    assert main(["resume", str(out / "packed")]) == 0
    resumed = read_results(out / "packed")
    assert not resumed.duplicated(["trial_id", "task"]).any()
    pd.testing.assert_frame_equal(_columns(resumed), _columns(read_results(clean_folder)))


def test_pack_is_refused_for_an_experiment_that_cannot_pack(tmp_path, capsys):
    spec_file = write_spec(tmp_path, "conv", experiment="continuous-cifar100", fixed={}, pack=4)
    assert main(["plan", str(spec_file)]) == 2
    assert "cannot pack" in capsys.readouterr().err
