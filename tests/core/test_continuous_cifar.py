"""Continuous CIFAR-100 on the embedded-MNIST stand-in: learning, task boundaries, exact
resume, augmentation and bad input."""

from __future__ import annotations

import io

import pytest
import torch

from plasticity_core.errors import ConfigError
from plasticity_core.experiments.continuous_cifar import (
    ContinuousCIFAR,
    ContinuousCIFARConfig,
    augment,
    task_classes,
)
from runner.cli import main

TIMING = {"seconds", "code_version"}


def _config(**changes) -> ContinuousCIFARConfig:
    base = dict(tasks=2, epochs_per_task=1, batch_size=20, method="cbp", utility="gxd",
                replacement_rate=0.01, maturity=5)  # fmt: skip
    return ContinuousCIFARConfig(**{**base, **changes})


def test_two_one_epoch_tasks_learn_well_above_chance():
    rows = list(ContinuousCIFAR(_config(method="bp", utility="")))
    assert [r["task"] for r in rows] == [0, 1]
    assert all(r["accuracy"] > 0.65 for r in rows), [r["accuracy"] for r in rows]
    assert all(r["class_a"] != r["class_b"] for r in rows)


def test_task_boundary_zeroes_the_head_clears_the_optimizer_and_keeps_features():
    experiment = ContinuousCIFAR(_config(tasks=2))
    assert experiment.config.momentum == 0.9  # the deferred protocol's, by default
    assert _config(optimizer="adam", lr=1e-3).momentum == 0.0  # sgd's alone
    rows = iter(experiment)
    next(rows)
    assert any(t.abs().sum() > 0 for t in experiment.optimizer.state["momentum_buffer"])
    features = {k: v.clone() for k, v in experiment.model.state_dict().items()
                if not k.startswith("head.")}  # fmt: skip
    experiment.begin_task()  # the next task's boundary
    assert experiment.model.head.weight.eq(0).all() and experiment.model.head.bias.eq(0).all()
    assert all(t.eq(0).all() for t in experiment.optimizer.state["momentum_buffer"])
    for key, value in experiment.model.state_dict().items():
        if key in features:
            assert torch.equal(value, features[key]), key


def test_saved_state_continues_with_identical_rows():
    config = _config(tasks=3, momentum=0.9, augment=True)
    experiment = ContinuousCIFAR(config)
    rows = iter(experiment)
    next(rows)
    buffer = io.BytesIO()
    torch.save(experiment.state_dict(), buffer)
    expected = [next(rows), next(rows)]
    buffer.seek(0)
    resumed = ContinuousCIFAR(config, torch.load(buffer, weights_only=True))
    again = list(resumed)
    assert len(again) == 2
    for a, b in zip(expected, again, strict=True):
        assert {k: v for k, v in a.items() if k not in TIMING} == {
            k: v for k, v in b.items() if k not in TIMING
        }


def test_class_pairs_are_fixed_by_the_pair_seed_and_recur():
    pairs = [task_classes(t, 7, 10) for t in range(60)]
    assert pairs == [task_classes(t, 7, 10) for t in range(60)]
    assert all(a != b and 0 <= a < 10 and 0 <= b < 10 for a, b in pairs)
    assert len(set(pairs)) < len(pairs), "classes recur across tasks"
    assert pairs != [task_classes(t, 8, 10) for t in range(60)]


def test_augmentation_crops_a_padded_window_and_may_flip():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    out = augment(x, g)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for b in range(2):
        found = False
        for dy in range(9):
            for dx in range(9):
                window = padded[b, :, dy : dy + 32, dx : dx + 32]
                found |= torch.equal(out[b], window) or torch.equal(out[b], window.flip(2))
        assert found, "every output is a (possibly flipped) crop of the padded image"


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="resnet8"):
        ContinuousCIFARConfig(model="resnet50")
    with pytest.raises(ConfigError):
        ContinuousCIFARConfig(epochs_per_task=0)


def test_cli_missing_cifar_folder_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(["run", "continuous-cifar100", "--data", str(tmp_path / "nope"), "--tasks", "1",
                 "--out", str(tmp_path)])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cifar-100-python" in err
