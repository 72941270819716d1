"""Diagnostics against hand-worked cases."""

import math

import pytest
import torch

from plasticity_core.diagnostics import (
    dead_fraction,
    dormant_fraction,
    effective_rank,
    feature_norm,
    layer_diagnostics,
    singular_values,
    stable_rank,
    unit_scores,
    weight_magnitude,
)


def test_dormant_scores_follow_sokar_normalisation():
    # mean |h| per unit: (1, 3, 0, 0.02) -> layer mean 1.005 -> s = (0.995, 2.985, 0, 0.0199)
    h = torch.tensor([[1.0, -3.0, 0.0, 0.02], [-1.0, 3.0, 0.0, -0.02]])
    torch.testing.assert_close(unit_scores(h), torch.tensor([1, 3, 0, 0.02]) / 1.005)
    assert dormant_fraction(h, 0.025) == 0.5  # units 2 and 3
    assert dormant_fraction(h, 0.0) == 0.25  # unit 2 only
    assert dormant_fraction(torch.zeros(3, 4)) == 1.0


def test_dead_units_are_zero_on_every_example():
    h = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    assert dead_fraction(h) == pytest.approx(1 / 3)


def test_singular_values_match_an_svd():
    h = torch.randn(50, 7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(singular_values(h), torch.linalg.svdvals(h.double()))
    torch.testing.assert_close(singular_values(h.T), torch.linalg.svdvals(h.double()))


def test_effective_rank_of_identity_is_width_and_of_rank_one_is_one():
    assert effective_rank(singular_values(torch.eye(16))) == pytest.approx(16)
    rank_one = torch.outer(torch.arange(1.0, 9.0), torch.tensor([1.0, -2.0, 0.5]))
    assert effective_rank(singular_values(rank_one)) == pytest.approx(1.0, abs=1e-6)
    # sigma = (3, 1): p = (0.75, 0.25) -> exp(-(0.75 ln 0.75 + 0.25 ln 0.25))
    want = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert effective_rank(torch.tensor([3.0, 1.0])) == pytest.approx(want)


def test_stable_rank_counts_singular_values_to_99_percent():
    assert stable_rank(torch.tensor([50.0, 30.0, 19.0, 1.0])) == 3  # 99/100 reached at k=3
    assert stable_rank(torch.tensor([50.0, 30.0, 18.0, 2.0])) == 4  # 98/100 at k=3
    assert stable_rank(singular_values(torch.eye(5))) == 5
    assert stable_rank(torch.zeros(3)) == 0


def test_norms_and_weight_magnitude():
    h = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert feature_norm(h) == pytest.approx(3.0)  # (5 + 1) / 2
    per_layer, overall = weight_magnitude([torch.tensor([[1.0, -1.0]]), torch.tensor([4.0])])
    assert per_layer == [1.0, 4.0] and overall == pytest.approx(2.0)


def test_layer_diagnostics_give_mean_and_per_layer_columns():
    row = layer_diagnostics([torch.eye(4), torch.zeros(4, 4)], tau=0.025)
    assert row["effective_rank_l0"] == pytest.approx(4) and row["effective_rank_l1"] == 0
    assert row["effective_rank"] == pytest.approx(2)
    assert row["dead_fraction_l0"] == 0 and row["dead_fraction_l1"] == 1
