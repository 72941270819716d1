"""`plasticity bench`: the records' schema and sanity, and one-line errors. No timing claims."""

import json

import pytest
import torch

from runner.cli import main

TRAINING_KEYS = {
    "model",
    "batch_size",
    "variant",
    "examples_per_s",
    "ratio_to_plain",
    "time_ratio",
    "us_per_step",
    "spread",
    "resets",
    "threads",
    "device",
}


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_tiny_bench_writes_sane_records_for_every_variant_and_the_clamp(
    tmp_path, capsys, keep_threads
):
    out = tmp_path / "bench.json"
    select = ["--models", "32x2", "--batch-sizes", "16", "--variants", "bp,cbp:gxd"]
    timing = ["--seconds", "0.02", "--repeats", "2", "--threads", "1"]
    assert main(["bench", *select, *timing, "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    training = [r for r in records if r["variant"] != "assay-clamp"]
    # plain, the ratios' reference, is measured even when not asked for
    assert [r["variant"] for r in training] == ["plain", "bp", "cbp:gxd"]
    for r in training:
        assert TRAINING_KEYS <= r.keys()
        assert (r["model"], r["batch_size"], r["threads"], r["device"]) == ("32x2", 16, 1, "cpu")
        assert r["examples_per_s"] > 0 and r["us_per_step"] > 0 and r["ratio_to_plain"] > 0
        assert r["time_ratio"] == pytest.approx(1 / r["ratio_to_plain"])
        assert r["spread"] >= 0 and r["resets"] >= 0
    assert training[0]["ratio_to_plain"] == 1.0
    (clamp,) = [r for r in records if r["variant"] == "assay-clamp"]
    assert clamp["model"] == "32x2" and clamp["units"] == 64 and clamp["units_per_s"] > 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "1 threads" in header and "device cpu" in header


@pytest.mark.parametrize(
    "option, value, allowed",
    [
        ("--variants", "plain,cbp:nope", "cbp:gxd"),
        ("--models", "256-4", "WIDTHxDEPTH"),
        ("--batch-sizes", "0", ">= 1"),
        ("--device", "tpu", "cpu"),
        ("--repeats", "0", "--repeats"),
        ("--threads", "0", "--threads"),
    ],
)
def test_bad_option_is_one_line_naming_what_is_allowed_and_exit_2(option, value, allowed, capsys):
    assert main(["bench", option, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("plasticity: error:") and allowed in err
