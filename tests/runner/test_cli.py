"""The `plasticity` command line: a real run to Parquet, and one-line errors."""

import gzip
import struct
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from plasticity_core.experiments.continuous_cifar import ContinuousCIFARConfig
from plasticity_core.methods import METHODS
from runner.cli import main
from runner.cli.options import Parser, add_config_options, given_options

SCHEMA = {
    "experiment",
    "stage",
    "trial_id",
    "method",
    "utility",
    "activation",
    "norm",
    "lr",
    "replacement_rate",
    "maturity",
    "batch_size",
    "hidden",
    "seed",
    "task",
    "accuracy",
    "train_accuracy",
    "loss",
    "resets",
    "examples_seen",
    "seconds",
    "config_hash",
    "code_version",
}


def test_three_task_run_writes_one_parquet_row_per_task(tmp_path, capsys):
    code = main(
        [
            "run",
            "permuted-mnist",
            "--method",
            "cbp",
            "--utility",
            "gxd",
            "--activation",
            "silu",
            "--norm",
            "layer",
            "--tasks",
            "3",
            "--hidden",
            "64,64",
            "--maturity",
            "10",
            "--replacement-rate",
            "0.01",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    files = list(tmp_path.glob("permuted-mnist/rows/stage=run/*.parquet"))
    assert len(files) == 1
    table = pq.read_table(files[0]).to_pylist()
    assert [r["task"] for r in table] == [0, 1, 2]
    assert SCHEMA <= set(table[0])
    assert {r["utility"] for r in table} == {"gxd"} and table[0]["activation"] == "silu"
    assert sum(r["resets"] for r in table) > 0
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("task")]
    assert len(progress) == 3 and progress[-1].startswith("task    3/3")


def _write_idx(path, magic, dims, payload):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims)
    with gzip.open(path, "wb") as f:
        f.write(header + payload)


@pytest.fixture
def malformed_mnist(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 4), ("t10k", 2)):
        _write_idx(raw / f"{split}-images-idx3-ubyte.gz", 0x803, (n, 28, 28), bytes(n * 784))
        _write_idx(raw / f"{split}-labels-idx1-ubyte.gz", 0x801, (n,), bytes(n))
    _write_idx(raw / "train-images-idx3-ubyte.gz", 0x803, (4, 28, 28), bytes(100))  # truncated
    return tmp_path


BAD = [
    (["--utility", "magnitude"], "unknown utility 'magnitude'; choose from: activation"),
    (["--activation", "gelu"], "--activation: invalid choice: 'gelu' (choose from 'relu'"),
    (["--method", "redo2"], "--method: invalid choice: 'redo2'"),
    (["--norm", "batch"], "--norm: invalid choice: 'batch' (choose from 'none', 'layer')"),
    (["--replacement-rate", "-0.1"], "replacement_rate must be in [0, 1], got -0.1"),
    (["--data", "/no/such/folder"], "/no/such/folder"),
    (["--lr", "fast"], "--lr: invalid number 'fast'"),
    (["--lr", "nan"], "--lr: expected a finite number, got 'nan'"),
    (["--method", "bp", "--utility", "gxd"], "method bp reads no utility"),
    (["--method", "bp", "--lr", "1e6"], "lower the learning rate"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_prints_one_line_and_exits_2(args, message, tmp_path, capsys):
    assert main(["run", "permuted-mnist", "--tasks", "1", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("plasticity: error:")
    assert not list(tmp_path.rglob("*.parquet"))


def test_malformed_idx_file_is_reported_by_the_installed_command(malformed_mnist, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "run",
            "permuted-mnist",
            "--tasks",
            "1",
            "--data",
            str(malformed_mnist),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "train-images-idx3-ubyte.gz" in proc.stderr


def test_list_methods_shows_each_default_utility_and_hyperparameter(capsys):
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if not line.startswith(" ")}
    assert set(METHODS) <= set(lines)
    assert "[utility gxd, replacement_rate=0.0001, maturity=100, utility_decay=0.99" in out
    assert "[utility gradient, replacement_rate=0.0001" in out  # swr: a weight utility
    assert "[upgd_decay=0.9999, upgd_noise=0.1, upgd_weight_decay=0.01]" in out
    assert "--reset-optimizer" in out
    assert main(["list", "weight_utilities"]) == 0
    assert "gxd_weight" in capsys.readouterr().out


def test_list_shows_every_registered_utility(capsys):
    assert main(["list", "utilities"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == [
        "activation",
        "contribution",
        "mc_contribution",
        "mc_adaptable",
        "loss_gradient",
        "gxi",
        "gxd",
        "gxd_all",
        "random",
    ]


def test_any_utility_drives_the_redo_rule_from_the_command_line(tmp_path, capsys):
    code = main(
        [
            "run",
            "permuted-mnist",
            "--method",
            "redo",
            "--utility",
            "gxd",
            "--tasks",
            "2",
            "--hidden",
            "32,32",
            "--reset-every",
            "20",
            "--dormant-threshold",
            "0.5",
            "--probe-size",
            "200",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    rows = pq.read_table(next(tmp_path.glob("permuted-mnist/rows/stage=run/*.parquet"))).to_pylist()
    assert {r["method"] for r in rows} == {"redo"} and {r["utility"] for r in rows} == {"gxd"}
    assert sum(r["resets"] for r in rows) > 0
    assert all(r["resets"] == r["resets_l0"] + r["resets_l1"] for r in rows)
    assert main(["list", "diagnostics"]) == 0
    listed = capsys.readouterr().out
    assert "effective_rank" in listed and "Roy & Vetterli" in listed


def test_a_bool_field_is_a_flag_and_its_negation_set_only_when_given():
    """Unset, the dataclass's default applies (continuous-cifar100 clears the optimizer)."""
    parser = Parser(prog="plasticity run continuous-cifar100")
    add_config_options(parser, ContinuousCIFARConfig)

    def given(*args: str) -> dict:
        return given_options(ContinuousCIFARConfig, parser.parse_args(list(args)))

    assert given() == {}
    assert given("--reset-optimizer") == {"reset_optimizer": True}
    assert given("--no-reset-optimizer", "--augment") == {"reset_optimizer": False,
                                                          "augment": True}  # fmt: skip
    assert "--reset-optimizer, --no-reset-optimizer" in parser.format_help()
    assert not ContinuousCIFARConfig(**given("--no-reset-optimizer")).reset_optimizer
