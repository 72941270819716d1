"""`plasticity run` at a learning rate that blows the network up: the command ends with one
error line saying the run diverged, which bound fired and what to do, exits 2, and the
run's record says `diverged`."""

import json

import pytest

from runner.cli import main

COMMAND = ["run", "permuted-mnist", "--lr", "1e9", "--tasks", "3", "--hidden", "16",
           "--probe-size", "0", "--threads", "1"]  # fmt: skip


@pytest.mark.parametrize(
    "seed,reason",
    [("1", "mean training loss 1.857e+30 > 23.03 = 10 x ln 10, a uniform prediction's loss"),
     ("0", "training loss became nan")],
)  # fmt: skip
def test_a_blown_up_run_says_it_diverged_and_why(seed, reason, tmp_path, capsys):
    assert main([*COMMAND, "--seed", seed, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plasticity: error: training diverged on task 0: " + reason)
    assert err.count("\n") == 1 and err.endswith("; lower the learning rate\n")
    (record,) = tmp_path.glob("permuted-mnist/trials/stage=run/*.json")
    record = json.loads(record.read_text())
    assert record["status"] == "diverged" and record["tasks_done"] == 0
    assert record["error"] in err
