"""Real Ray Tune runs of tiny specs: exact rows, selection, worker reuse, bad input."""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest
import torch

from plasticity_core.errors import DataError
from plasticity_core.experiments.permuted_mnist import PermutedMNIST
from runner.cli import main
from runner.results import read_results
from runner.spec import load_spec
from tests.runner.ray_helpers import listening_addresses, write_spec

# 127.0.0.1, ::1 and ::ffff:127.0.0.1 as /proc/net/tcp* writes them
LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}


@pytest.fixture(scope="module")
def clean_run(local_ray, tmp_path_factory):
    """The uninterrupted reference: all three stages of the tiny spec."""
    tmp = tmp_path_factory.mktemp("clean")
    spec_file = write_spec(tmp, "tiny")
    code = main(["sweep", str(spec_file), "--out", str(tmp / "out")])
    assert code == 0
    return load_spec(spec_file), tmp / "out" / "tiny"


def test_embedded_ray_listens_on_loopback_only(local_ray):
    addresses = listening_addresses(os.getpid())
    assert addresses, "found no Ray server sockets"
    assert addresses <= LOOPBACK


def test_every_trial_writes_each_task_exactly_once(clean_run):
    spec, folder = clean_run
    rows = read_results(folder)
    sweep_ids = {
        f"{spec.build(p, s).config_hash()}-s{s}"
        for p in spec.configurations()
        for s in spec.sweep_seeds
    }
    sweep = rows[rows["stage"] == "sweep"]
    assert set(sweep["trial_id"]) == sweep_ids
    for _, trial in rows.groupby(["stage", "trial_id"]):
        assert sorted(trial["task"]) == list(range(5))
    final = rows[rows["stage"] == "final"]
    assert final["trial_id"].nunique() == len(spec.final_seeds) == 1
    assert set(final["seed"]) == set(spec.final_seeds)


def test_trial_rows_equal_a_direct_run_without_ray(clean_run):
    spec, folder = clean_run
    rows = read_results(folder, stage="sweep")
    params = spec.configurations()[1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what a 1-CPU trial uses
    try:
        direct = pd.DataFrame(list(PermutedMNIST(spec.build(params, spec.sweep_seeds[0]))))
    finally:
        torch.set_num_threads(threads)
    trial_id = f"{spec.build(params, 0).config_hash()}-s{spec.sweep_seeds[0]}"
    ours = rows[rows["trial_id"] == trial_id].reset_index(drop=True)
    for column in ("accuracy", "train_accuracy", "loss", "resets", "lr", "effective_rank"):
        assert ours[column].tolist() == direct[column].tolist(), column


def test_selection_picks_the_configuration_with_the_best_mean(clean_run):
    spec, folder = clean_run
    sweep = read_results(folder, stage="sweep")
    best_lr = sweep.groupby("lr")["accuracy"].mean().idxmax()
    choice = json.loads((folder / "selection.json").read_text())["choices"]
    assert [c["params"]["lr"] for c in choice] == [best_lr]
    final = read_results(folder, stage="final")
    assert set(final["lr"]) == {best_lr}
    table = pd.read_csv(folder / "selection.csv")
    assert table["selected"].sum() == 1 and len(table) == 2


def test_status_counts_trials_and_tasks(clean_run, capsys):
    _, folder = clean_run
    assert main(["status", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "sweep: 2 trials: 2 done (0 diverged), 0 running, 0 pending, 0 failed" in out
    assert "tasks saved 10/10" in out
    assert "final: 1 trials: 1 done" in out


def test_reused_worker_processes_give_the_same_rows_as_fresh_ones(clean_run, tmp_path):
    spec, clean_folder = clean_run
    spec_file = write_spec(
        tmp_path, "reuse", fixed={"tasks": 2}, grid={"lr": [0.01, 0.02, 0.03, 0.05]}
    )
    assert main(["sweep", str(spec_file), "--stage", "sweep", "--out", str(tmp_path)]) == 0
    records = [json.loads(f.read_text()) for f in (tmp_path / "reuse" / "trials").rglob("*.json")]
    assert len(records) == 4
    assert len({r["pid"] for r in records}) <= 2, "4 trials on 2 CPUs reuse 2 processes"
    # A configuration's seed gives the same first tasks whichever process ran it before.
    rows = read_results(tmp_path / "reuse")
    reference = read_results(clean_folder, stage="sweep")
    reference = reference[reference["task"] < 2]
    shared = rows[rows["trial_id"].isin(reference["trial_id"])].reset_index(drop=True)
    assert len(shared) == 4
    columns = ["trial_id", "task", "accuracy", "loss", "resets"]
    pd.testing.assert_frame_equal(shared[columns], reference[columns].reset_index(drop=True))


def test_a_corrupt_rows_file_is_named_and_the_others_stay_readable(clean_run, tmp_path):
    _, folder = clean_run
    copy = tmp_path / "copy"
    shutil.copytree(folder / "rows", copy / "rows")
    victim = sorted((copy / "rows" / "stage=sweep").iterdir())[0]
    victim.write_bytes(b"not parquet")
    with pytest.raises(DataError, match=victim.name):
        read_results(copy)
    assert len(read_results(copy, stage="final")) == 5


def test_gpu_spec_on_a_cluster_without_gpus_is_refused_before_running(local_ray, tmp_path, capsys):
    spec_file = write_spec(tmp_path, "gpu", resources={"cpu": 1, "gpu": 0.5})
    assert main(["sweep", str(spec_file), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "0.5 gpu" in err and "has 2 CPU and 0 GPU" in err
    assert not (tmp_path / "out" / "gpu" / "sweep").exists()
