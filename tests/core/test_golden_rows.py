"""Rows of fixed seeds equal those the code wrote before the experiments shared one task
loop (tests/core/golden_rows.json, written by the code of commit 8b5e77a on an Intel CPU; the
`compensation` column and the config hashes it changes were added with that field, and the
CIFAR case names momentum 0 since that experiment's default became 0.9). The
`reset_optimizer`, `permute`, `spectral_strength`, `power_iterations` and the `upgd_*`,
`infer_*` and `ccbp_*` columns were added with those fields, at their defaults, which leave
the config hashes as they were (`fields.later_defaults`).

Integers and text (tasks, reset counts, configuration) are compared exactly, floats to a
relative 1e-4: the same code gives other low bits on another CPU (an AMD EPYC differs from
the writer in the 7th digit of a loss: BLAS and conv kernels pick their blocking by the
CPU), so bit-identity is checked where it can hold, inside one process (a pack against its
runs alone: tests/core/test_packed.py)."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from plasticity_core.experiments.continuous_cifar import ContinuousCIFAR as run_cifar
from plasticity_core.experiments.continuous_cifar import ContinuousCIFARConfig
from plasticity_core.experiments.permuted_mnist import PermutedMNIST as run_mnist
from plasticity_core.experiments.permuted_mnist import PermutedMNISTConfig

GOLDEN = json.loads((Path(__file__).parent / "golden_rows.json").read_text())
CASES = {
    "pmnist-cbp-gxd": lambda: run_mnist(PermutedMNISTConfig(
        tasks=2, hidden=(32, 32), lr=0.03, replacement_rate=1e-2, maturity=10, seed=3,
        probe_size=200, head_reset_every=1)),
    "pmnist-redo-adam": lambda: run_mnist(PermutedMNISTConfig(
        tasks=2, hidden=(32,), method="redo", reset_every=20, optimizer="adam", lr=1e-3,
        norm="layer", activation="silu", seed=1, probe_size=0)),
    "pmnist-l2-momentum": lambda: run_mnist(PermutedMNISTConfig(
        tasks=2, hidden=(16, 16), method="l2", weight_decay=1e-3, momentum=0.9, seed=2)),
    "ccifar-cbp": lambda: run_cifar(ContinuousCIFARConfig(
        tasks=2, epochs_per_task=1, batch_size=50, replacement_rate=1e-2, maturity=5,
        augment=True, seed=4, momentum=0.0)),
}  # fmt: skip
UNSTABLE = {"seconds", "diagnostics_seconds", "code_version"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rows_of_a_fixed_seed_equal_the_golden_rows(case):
    torch.set_num_threads(1)
    rows = list(CASES[case]())
    golden = GOLDEN[case]
    assert len(rows) == len(golden)
    for row, expected in zip(rows, golden, strict=True):
        row, expected = _stable(row), _stable(expected)
        assert row.keys() == expected.keys()
        for key, value in expected.items():
            if isinstance(value, float):
                assert row[key] == pytest.approx(value, rel=1e-4, abs=1e-9), key
            else:
                assert row[key] == value, key


@pytest.mark.parametrize("case", sorted(CASES))
def test_fields_added_later_keep_the_recorded_hash_at_their_defaults_only(case):
    """Results recorded before `reset_optimizer`, `permute` and the spectral fields keep
    their trial ids; a configuration that sets any of them is a new one."""
    config = CASES[case]().config
    recorded = GOLDEN[case][0]["config_hash"]
    assert config.config_hash() == recorded
    changes = [{"reset_optimizer": not config.reset_optimizer}, {"spectral_strength": 1e-2},
               {"power_iterations": 3}]  # fmt: skip
    if hasattr(config, "permute"):
        changes += [{"permute": "labels"}, {"permute": "both"}]
    for change in changes:
        assert dataclasses.replace(config, **change).config_hash() != recorded, change


def _stable(row: dict) -> dict:
    """The row without timings; NaN as a marker, since NaN != NaN."""
    return {k: "NaN" if v != v else v for k, v in row.items() if k not in UNSTABLE}
