"""The reset-cost assay protocol on small networks."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats

from plasticity_core.data.permuted import task_permutation
from plasticity_core.errors import ConfigError
from plasticity_core.experiments.assay_rows import ORACLE, assay_rows, per_layer_spearman
from plasticity_core.experiments.permuted_mnist import PermutedMNIST
from plasticity_core.experiments.reset_cost import (
    ResetCostConfig,
    assay,
    run,
)
from plasticity_core.reset import reset_units
from plasticity_core.utility import UTILITIES

SMALL = dict(seeds=1, checkpoints=(1,), hidden=(48, 48), calibration=512, probe=256)


def _summary(result):
    return {r["utility"]: r for r in result.summary}


def test_ema_reference_is_cbps_and_the_clamp_equals_cbps_reset():
    config = ResetCostConfig(activations=("silu",), reference="ema", **SMALL)
    experiment = PermutedMNIST(config.training("silu", 0))
    next(iter(experiment))
    result = assay(experiment, config, checkpoint=1)

    tracked = experiment.method.reference()
    rows = [r for r in result.units if r["utility"] == "gxd"]
    assert [r["reference"] for r in rows] == pytest.approx(tracked.tolist(), rel=1e-6)

    pixels = task_permutation(0, 0)
    probe = experiment.x_test[:256][:, pixels]
    layers = experiment.model.unit_layers()
    for row in rows[:: len(rows) // 6]:
        li = [u.name for u in layers].index(row["layer"])
        model = copy.deepcopy(experiment.model)
        with torch.no_grad():
            before = model(probe)
            r = torch.tensor([row["reference"]])
            reset_units(model.unit_layers()[li], torch.tensor([row["unit"]]), r, None, None)
            realized = (model(probe) - before).abs().sum(1).mean().item()
        assert row["shock_l1"] == pytest.approx(realized, rel=1e-4, abs=1e-7)


def test_summary_has_every_utility_and_an_oracle_that_bounds_them():
    (result,) = run(ResetCostConfig(activations=("relu",), **SMALL))
    summary = _summary(result)
    assert set(summary) == set(UTILITIES.names()) | {ORACLE}
    oracle = summary[ORACLE]
    for column in ("l1_pooled", "l1_per_layer", "kl_pooled", "kl_per_layer"):
        assert oracle[f"spearman_{column}"] == pytest.approx(1.0)
    for row in summary.values():
        assert oracle["shock5_l1"] <= row["shock5_l1"] + 1e-12
        assert oracle["shock5_kl"] <= row["shock5_kl"] + 1e-15
    assert len(result.units) == len(UTILITIES.names()) * 96
    assert len(result.layers) == (len(UTILITIES.names()) + 1) * 2


def test_gxd_ranks_reset_cost_better_than_local_utilities_under_silu():
    """The paper's central measurement (Table 1): under SiLU, activation-based scores rank
    the shock poorly while GXD stays near-perfect; under ReLU both are good."""
    results = {
        r.summary[0]["activation"]: _summary(r)
        for r in run(ResetCostConfig(activations=("relu", "silu"), **SMALL))
    }
    assert results["relu"]["gxd"]["spearman_l1_pooled"] > 0.95
    assert results["silu"]["gxd"]["spearman_l1_pooled"] > 0.9
    silu = results["silu"]
    assert silu["activation"]["spearman_l1_pooled"] < silu["gxd"]["spearman_l1_pooled"] - 0.2
    assert results["relu"]["random"]["shock5_l1"] > results["relu"]["gxd"]["shock5_l1"]


def test_layernorm_networks_are_assayed():
    (result,) = run(ResetCostConfig(activations=("relu",), norm="layer", **SMALL))
    assert all(r["norm"] == "layer" for r in result.summary)
    assert all(r["shock_l1"] >= 0 for r in result.units)
    assert _summary(result)["gxd"]["spearman_l1_pooled"] > 0.5


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(reference="zero"), "unknown reference 'zero'"),
        (dict(checkpoints=(-1,)), "checkpoints"),
        (dict(activations=("gelu",)), "unknown activation 'gelu'"),
        (dict(seeds=0), "seeds"),
        (dict(reference="ema", checkpoints=(0, 1)), "ema needs checkpoints >= 1"),
    ],
)
def test_bad_assay_settings_are_rejected(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ResetCostConfig(**kwargs)


def test_per_layer_spearman_is_the_mean_of_each_layers_own_and_pooled_is_one_ranking():
    """Two layers, each ranked perfectly within itself, on scales that disagree between
    them: per layer is 1, pooled is what scipy gives for all six units in one ranking."""
    scores = [np.array([1.0, 2.0, 3.0]), np.array([100.0, 300.0, 200.0])]
    shocks = [np.array([10.0, 20.0, 30.0]), np.array([1.0, 3.0, 2.0])]
    layers = [SimpleNamespace(name="a"), SimpleNamespace(name="b")]
    result = assay_rows({}, layers, {"u": scores}, [np.zeros(3)] * 2, shocks, shocks, 0.34)
    summary = _summary(result)["u"]
    pairs = zip(scores, shocks, strict=True)
    per_layer = np.mean([stats.spearmanr(s, x).statistic for s, x in pairs])
    pooled = stats.spearmanr(np.concatenate(scores), np.concatenate(shocks)).statistic
    assert per_layer == pytest.approx(1.0) and pooled < 0
    for metric in ("l1", "kl"):
        assert summary[f"spearman_{metric}_per_layer"] == pytest.approx(per_layer)
        assert summary[f"spearman_{metric}_pooled"] == pytest.approx(pooled)
    layer_rows = [r for r in result.layers if r["utility"] == "u"]
    assert [r["spearman_l1"] for r in layer_rows] == pytest.approx([1.0, 1.0])
    assert per_layer_spearman([np.ones(3), scores[0]], [shocks[0], shocks[0]]) == 1.0


def test_checkpoints_count_tasks_completed_and_zero_is_the_untrained_network():
    config = ResetCostConfig(activations=("relu",), **{**SMALL, "checkpoints": (0, 2)})
    results = list(run(config))
    assert [(r.summary[0]["checkpoint"], r.summary[0]["data_task"]) for r in results] == [
        (0, 0),
        (2, 1),
    ]
    fresh = PermutedMNIST(config.training("relu", 0))
    untrained = assay(fresh, config, 0)
    rows = iter(fresh)
    next(rows), next(rows)  # two tasks trained
    trained = assay(fresh, config, 2)
    for ran, alone in zip(results, (untrained, trained), strict=True):
        assert [r["score"] for r in ran.units] == [r["score"] for r in alone.units]
        assert [r["shock_l1"] for r in ran.units] == [r["shock_l1"] for r in alone.units]
