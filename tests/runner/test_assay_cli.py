"""`plasticity assay`: Parquet rows per checkpoint and the printed tables."""

import pyarrow.parquet as pq

from plasticity_core.utility import UTILITIES
from runner.cli import main

SUMMARY_COLUMNS = {
    "activation",
    "norm",
    "seed",
    "checkpoint",
    "utility",
    "spearman_l1_pooled",
    "spearman_l1_per_layer",
    "spearman_kl_pooled",
    "spearman_kl_per_layer",
    "shock5_l1",
    "shock5_kl",
}


def test_assay_writes_summary_layer_and_unit_rows(tmp_path, capsys):
    code = main(
        [
            "assay",
            "--activation",
            "relu,tanh",
            "--seeds",
            "2",
            "--checkpoints",
            "0,1",
            "--hidden",
            "16,16",
            "--calibration",
            "256",
            "--probe",
            "128",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    folder = tmp_path / "reset-cost"
    assert len(list((folder / "summary").glob("*.parquet"))) == 8
    summary = pq.read_table(folder / "summary").to_pandas()
    assert SUMMARY_COLUMNS <= set(summary.columns)
    n_utilities = len(UTILITIES.names()) + 1  # and the oracle
    assert len(summary) == 2 * 2 * 2 * n_utilities
    assert not summary.duplicated(["activation", "seed", "checkpoint", "utility"]).any()
    assert (summary["probe"] == 128).all()
    units = pq.read_table(folder / "units").to_pandas()
    assert len(units) == 8 * 32 * len(UTILITIES.names())
    out = capsys.readouterr().out
    assert "Spearman rho" in out and "Shock@5%" in out and "relu L1" in out and "tanh KL" in out


def test_rerunning_a_checkpoint_replaces_its_rows(tmp_path):
    args = [
        "assay",
        "--activation",
        "relu",
        "--seeds",
        "1",
        "--checkpoints",
        "0",
        "--hidden",
        "8",
        "--calibration",
        "64",
        "--probe",
        "32",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0 and main(args) == 0
    summary = pq.read_table(tmp_path / "reset-cost" / "summary").to_pandas()
    assert len(summary) == len(UTILITIES.names()) + 1


def test_bad_assay_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["assay", "--activation", "relu,gelu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown activation 'gelu'" in err


def test_paper_setting_prints_the_papers_values_beside_ours(tmp_path, capsys):
    """--paper: the Table 3 checkpoints of 30 tasks; the options given beside it shrink the
    network and the seeds, and the printed comparison names exactly those departures."""
    args = ["assay", "--paper", "--activation", "relu", "--seeds", "1", "--hidden", "16",
            "--calibration", "64", "--probe", "32", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    summary = pq.read_table(tmp_path / "reset-cost" / "summary").to_pandas()
    assert sorted(summary["checkpoint"].unique()) == [0, 5, 10, 20, 30]
    out = capsys.readouterr().out
    assert "Spearman rho, per layer" in out and "pooled / per layer" in out
    beside = out[out.index("Beside the paper") :]
    assert "differs from the paper's setting in: seeds, hidden, calibration, probe, data" in beside
    assert "checkpoints" not in beside.splitlines()[0]
    line = next(x for x in beside.splitlines() if x.startswith("relu gxd L1"))
    assert line.split()[3] == "0.996"  # the paper's, then ours pooled and per layer
    assert "silu" not in beside  # only the activations this run measured
