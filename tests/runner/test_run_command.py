"""`plasticity run` through the installed command: the configuration a user asks for is the
one that runs, its rows land where `read_results` finds them, and an existing run is
never silently shortened or replaced."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from runner.results import read_results

PLASTICITY = shutil.which("plasticity")
TINY = ["--tasks", "2", "--hidden", "16", "--probe-size", "0"]
pytestmark = pytest.mark.skipif(PLASTICITY is None, reason="`plasticity` is not installed")


def plasticity(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([PLASTICITY, *args], capture_output=True, text=True, timeout=300,
                          env=env)  # fmt: skip


@pytest.mark.parametrize(
    "experiment,options",
    [("permuted-mnist", TINY),
     ("continuous-cifar100", ["--tasks", "1", "--epochs-per-task", "1", "--batch-size", "50"])],
)  # fmt: skip
@pytest.mark.parametrize("method,utility", [("redo", "activation"), ("regrama", "loss_gradient")])
def test_each_method_runs_with_its_own_default_utility(experiment, options, method, utility,
                                                       tmp_path):  # fmt: skip
    proc = plasticity("run", experiment, "--method", method, *options, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert set(read_results(tmp_path)["utility"]) == {utility}


def test_continuous_cifar_has_every_method_option_and_l2_has_a_strength(tmp_path):
    help_text = plasticity("run", "continuous-cifar100", "--help").stdout
    for option in ("--utility-decay", "--shrink", "--noise-std", "--l2-init",
                   "--dormant-threshold", "--reset-every", "--weight-decay"):  # fmt: skip
        assert option in help_text, option
    losses = {}
    for decay in ("0", "5"):
        proc = plasticity("run", "continuous-cifar100", "--method", "l2", "--weight-decay", decay,
                          "--tasks", "1", "--epochs-per-task", "1", "--batch-size", "50",
                          "--out", str(tmp_path / decay))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        rows = read_results(tmp_path / decay)
        assert list(rows["weight_decay"]) == [float(decay)]
        losses[decay] = rows["loss"].item()
    assert losses["0"] != losses["5"]  # the strength reaches the method


def test_a_run_is_never_silently_shortened_and_resumes_to_the_uninterrupted_rows(tmp_path):
    out, long_out = str(tmp_path / "a"), str(tmp_path / "b")
    assert plasticity("run", "permuted-mnist", *TINY, "--out", out).returncode == 0
    before = read_results(out)
    shorter = plasticity("run", "permuted-mnist", *TINY, "--tasks", "1", "--out", out)
    assert shorter.returncode == 2 and "--overwrite" in shorter.stderr
    assert shorter.stderr.count("\n") == 1
    assert read_results(out).equals(before)
    longer = plasticity("run", "permuted-mnist", *TINY, "--tasks", "3", "--out", out)
    assert longer.returncode == 2 and "--resume" in longer.stderr
    resumed = plasticity("run", "permuted-mnist", *TINY, "--tasks", "3", "--resume", "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    assert plasticity("run", "permuted-mnist", *TINY, "--tasks", "3", "--threads", "1",
                      "--out", long_out).returncode == 0  # fmt: skip
    ours, reference = read_results(out), read_results(long_out)
    assert list(ours["task"]) == [0, 1, 2]
    for column in ("accuracy", "train_accuracy", "loss", "resets", "trial_id"):
        assert ours[column].tolist() == reference[column].tolist(), column
    replaced = plasticity("run", "permuted-mnist", *TINY, "--tasks", "1", "--overwrite",
                          "--out", out)  # fmt: skip
    assert replaced.returncode == 0 and list(read_results(out)["task"]) == [0]


@pytest.mark.parametrize("command", [["dashboard"], ["status"], ["resume"]])
def test_a_missing_results_folder_is_one_line_and_exit_2(command, tmp_path):
    proc = plasticity(*command, str(tmp_path / "no" / "such"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "such" in proc.stderr and not list(tmp_path.rglob("*.html"))


def test_a_utility_for_bp_and_bad_threads_are_errors(tmp_path):
    for args in (["--method", "bp", "--utility", "gxd"], ["--threads", "0"]):
        proc = plasticity("run", "permuted-mnist", *TINY, *args, "--out", str(tmp_path))
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert not tmp_path.exists() or not list(tmp_path.rglob("*.parquet"))


def test_reset_optimizer_is_a_flag_and_permute_a_choice_and_both_reach_the_rows(tmp_path):
    proc = plasticity("run", "permuted-mnist", "--reset-optimizer", "--permute", "labels",
                      "--tasks", "2", "--hidden", "8", "--probe-size", "0",
                      "--out", str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = read_results(tmp_path)
    assert rows["reset_optimizer"].tolist() == [True, True]
    assert rows["permute"].tolist() == ["labels", "labels"]
    bad = plasticity("run", "permuted-mnist", *TINY, "--permute", "pixels", "--out", str(tmp_path))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "labels" in bad.stderr
