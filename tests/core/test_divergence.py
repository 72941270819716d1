"""The divergence bounds: a run that blows up to a finite loss ends as diverged, with the
bound and its numbers in the message; runs that learn, and a loss just inside a bound, do
not; packed runs diverge where they do alone."""

import math

import pytest
import torch

from plasticity_core.divergence import (
    CHANCE_MARGIN,
    CROSS_ENTROPY_FACTOR,
    SQUARED_ERROR_FACTOR,
    divergence,
)
from plasticity_core.errors import TrainingDiverged
from plasticity_core.experiments.permuted_mnist import PermutedMNIST, PermutedMNISTConfig
from plasticity_core.experiments.slowly_changing_regression import (
    SlowlyChangingRegression,
    SlowlyChangingRegressionConfig,
)
from plasticity_core.packed.loop import PackedLoop

SMALL = dict(tasks=2, hidden=(16,), probe_size=0)
BLOWN_UP = dict(SMALL, method="cbp", seed=1, lr=1e9)
"""Finite on every task (mean loss 1.9e30 on the first) at 10% train accuracy."""
REGRESSION = dict(tasks=2, flip_every=500, method="bp")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_a_finite_blow_up_at_lr_1e9_diverges_naming_the_cross_entropy_bound():
    with pytest.raises(TrainingDiverged) as caught:
        list(PermutedMNIST(PermutedMNISTConfig(**BLOWN_UP)))
    message = str(caught.value)
    assert message.startswith("training diverged on task 0: mean training loss 1.857e+30 > ")
    assert "23.03 = 10 x ln 10" in message and "<= 0.150 = 1/10 + 0.05" in message
    assert message.endswith("(lr=1000000000.0, method=cbp); lower the learning rate")


def test_a_run_that_learns_at_lr_0_01_does_not_diverge():
    rows = list(PermutedMNIST(PermutedMNISTConfig(**SMALL, lr=0.01)))
    assert len(rows) == 2 and all(r["loss"] < math.log(10) for r in rows)


def test_a_non_finite_loss_still_diverges():
    assert divergence(math.nan, classes=10, accuracy=0.9) == "training loss became nan"
    assert divergence(math.inf, target_mean_square=1.0) == "training loss became inf"
    assert divergence(-math.inf) == "training loss became -inf"


@pytest.mark.parametrize("classes", [2, 10, 100])
def test_the_cross_entropy_bound_fires_just_above_10_ln_c_at_chance_only(classes):
    bound, chance = CROSS_ENTROPY_FACTOR * math.log(classes), 1 / classes + CHANCE_MARGIN
    above, below = bound * (1 + 1e-9), bound * (1 - 1e-9)
    assert divergence(above, classes=classes, accuracy=chance) is not None
    assert divergence(above, classes=classes, accuracy=0.0) is not None
    assert divergence(below, classes=classes, accuracy=0.0) is None
    assert divergence(bound, classes=classes, accuracy=0.0) is None  # "exceeds": strictly
    # a network still above chance is confidently wrong on some examples, not diverged
    assert divergence(above, classes=classes, accuracy=chance + 1e-9) is None
    assert divergence(1e30, classes=classes, accuracy=0.9) is None


def test_the_squared_error_bound_fires_just_above_100_times_the_targets_mean_square():
    bound = SQUARED_ERROR_FACTOR * 2.5
    message = divergence(bound * (1 + 1e-9), target_mean_square=2.5)
    assert message == (
        "mean training loss 250 > 250 = 100 x the targets' mean square 2.5, a zero output's loss"
    )
    assert divergence(bound * (1 - 1e-9), target_mean_square=2.5) is None
    # targets that are all zero give no scale: only finiteness is checked
    assert divergence(1e30, target_mean_square=0.0) is None


def test_a_regression_blown_up_at_lr_1_diverges_and_one_at_lr_0_01_does_not():
    with pytest.raises(TrainingDiverged, match=r"task 0: .* = 100 x the targets' mean square"):
        list(SlowlyChangingRegression(SlowlyChangingRegressionConfig(**REGRESSION, lr=1.0)))
    rows = list(SlowlyChangingRegression(SlowlyChangingRegressionConfig(**REGRESSION, lr=0.01)))
    assert len(rows) == 2


def test_a_packed_run_diverges_on_the_bound_as_it_does_alone_and_the_other_goes_on():
    configs = [PermutedMNISTConfig(**BLOWN_UP), PermutedMNISTConfig(**{**BLOWN_UP, "lr": 0.01})]
    results = list(PackedLoop(PermutedMNIST, configs))
    with pytest.raises(TrainingDiverged) as alone:
        list(PermutedMNIST(configs[0]))
    assert str(results[0][0]) == str(alone.value)
    assert results[1][0] is None
    # per-run learning rates in one pack round like their runs alone to ~1e-6 (README)
    alone_losses = [r["loss"] for r in PermutedMNIST(configs[1])]
    assert [task[1]["loss"] for task in results] == pytest.approx(alone_losses, rel=1e-5)
