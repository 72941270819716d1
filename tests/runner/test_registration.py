"""An experiment is one registration: a throw-away experiment registered by a test module
(tests/runner/tiny_experiment.py) runs through `plasticity run`, a two-trial sweep that
fails and resumes on a real local Ray, `plasticity plan`, `plasticity list` and the
dashboard, with nothing else written for it."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import yaml

from plasticity_core.experiments import EXPERIMENTS
from runner.cli import main
from runner.manifest import FAULTS_ENV
from runner.results import read_results
from runner.trial import Trial
from tests.runner import tiny_experiment
from tests.runner.ray_helpers import TIMING

NAME = tiny_experiment.NAME


def test_every_config_field_is_an_option_of_run(capsys):
    with pytest.raises(SystemExit):
        main(["run", NAME, "--help"])
    text = capsys.readouterr().out
    for field in dataclasses.fields(tiny_experiment.TinyConfig):
        if field.name != "device":
            assert f"--{field.name.replace('_', '-')}" in text, field.name
    assert "Hidden units. (default: 16)" in text and "model options:" in text


def test_run_writes_rows_that_read_results_finds(tmp_path, capsys):
    assert main(["run", NAME, "--width", "8", "--tasks", "2", "--out", str(tmp_path)]) == 0
    rows = read_results(tmp_path)
    assert list(rows["task"]) == [0, 1] and set(rows["width"]) == {8}
    assert set(rows["experiment"]) == {NAME} and set(rows["stage"]) == {"run"}
    assert main(["list", "experiments"]) == 0
    assert NAME in capsys.readouterr().out


def test_a_two_trial_sweep_fails_resumes_plans_and_shows(local_ray, tmp_path, monkeypatch,
                                                         capsys):  # fmt: skip
    spec = {"name": "tiny", "experiment": NAME, "fixed": {"tasks": 3},
            "grid": {"width": [8, 16]}, "seeds": {"sweep": [0], "final": [1]},
            "checkpoint_every": 1, "max_failures": 0}  # fmt: skip
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    broken = Trial.of(NAME, "sweep", {"tasks": 3, "width": 16}, 0)
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / f"{broken.trial_id}@2.raise").touch()
    monkeypatch.setenv(FAULTS_ENV, str(faults))
    out = tmp_path / "out"
    assert main(["sweep", str(spec_file), "--stage", "sweep", "--out", str(out)]) == 1
    assert main(["resume", str(out / "tiny")]) == 0
    rows = read_results(out / "tiny", stage="sweep")
    assert rows.groupby("width")["task"].apply(list).to_dict() == {8: [0, 1, 2], 16: [0, 1, 2]}
    alone = pd.DataFrame(list(broken.entry.run(broken.config())))
    resumed = rows[rows["trial_id"] == broken.trial_id].reset_index(drop=True)
    for column in alone.columns:
        if column not in TIMING:
            assert resumed[column].tolist() == alone[column].tolist(), column

    capsys.readouterr()
    assert main(["plan", str(spec_file)]) == 0
    plan = capsys.readouterr().out
    assert f"tiny ({NAME}): 2 configurations" in plan and "not estimated" in plan
    page = tmp_path / "page.html"
    assert main(["dashboard", str(out), "--out", str(page)]) == 0
    html = page.read_text()
    assert "width=8" in html and "width=16" in html  # faceted by its own fields


def test_the_registry_names_each_experiment_once():
    assert EXPERIMENTS.get(NAME).config is tiny_experiment.TinyConfig
    with pytest.raises(ValueError, match="registered twice"):
        EXPERIMENTS.add(NAME, EXPERIMENTS.get(NAME))
