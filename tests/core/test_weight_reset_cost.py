"""The weight-level reset-cost assay: its batched clamps equal setting the weight and running
the network again, the rows cover every sampled weight of every weight matrix, and on a
trained network gxd_weight ranks the realized shock far better than magnitude (the
assay's finding, checked at a small size)."""

import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from plasticity_core.errors import ConfigError
from plasticity_core.experiments.reset_cost import ResetCostConfig, run
from plasticity_core.weight_shock import weight_clamp_shocks
from plasticity_core.weight_utility import WEIGHT_UTILITIES
from runner.cli import main
from tests.core.helpers import batch, small_mlp

SMALL = dict(seeds=1, checkpoints=(1,), hidden=(48, 48), calibration=512, probe=256,
             level="weight", weights_per_layer=64)  # fmt: skip


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_batched_weight_clamps_equal_setting_the_weight_and_running_again(norm):
    model = small_mlp(norm=norm)
    x, _ = batch(n=17)
    z = model(x).detach()
    for init in model.weight_inits():
        linear = next(m for m in model.modules() if getattr(m, "weight", None) is init.weight)
        flat = torch.tensor([0, 5, init.weight.numel() - 1])
        l1, kl = weight_clamp_shocks(model, linear, x, flat, 0.0)
        for j, index in enumerate(flat):
            with torch.no_grad():
                saved = init.weight.view(-1)[index].item()
                init.weight.view(-1)[index] = 0.0
                moved = model(x)
                init.weight.view(-1)[index] = saved
            expected_l1 = (moved - z).abs().sum(1).mean()
            expected_kl = F.kl_div(F.log_softmax(moved, 1), F.log_softmax(z, 1),
                                   log_target=True, reduction="batchmean")  # fmt: skip
            assert l1[j].item() == pytest.approx(expected_l1.item(), rel=1e-9, abs=1e-15)
            assert kl[j].item() == pytest.approx(expected_kl.item(), rel=1e-6, abs=1e-15)


def test_weight_rows_cover_each_sampled_weight_and_gxd_weight_beats_magnitude():
    (result,) = run(ResetCostConfig(activations=("relu",), **SMALL))
    matrices = {"blocks.0.linear.weight", "blocks.1.linear.weight", "head.weight"}
    assert {row["layer"] for row in result.units} == matrices
    assert len(result.units) == 3 * 64 * len(WEIGHT_UTILITIES.names())
    assert {row["level"] for row in result.summary} == {"weight"}
    summary = {row["utility"]: row for row in result.summary}
    assert summary["gxd_weight"]["spearman_l1_pooled"] > 0.9
    assert summary["gxd_weight"]["spearman_l1_pooled"] > summary["magnitude"][
        "spearman_l1_pooled"] + 0.2  # fmt: skip
    assert abs(summary["random"]["spearman_l1_pooled"]) < 0.2
    for name in WEIGHT_UTILITIES:  # the oracle's bottom 5% is the least achievable shock
        assert summary["oracle"]["shock5_l1"] <= summary[name]["shock5_l1"]


def test_cli_writes_weight_rows_apart_and_refuses_bad_values(tmp_path, capsys):
    args = ["assay", "--level", "weight", "--activations", "relu", "--seeds", "1",
            "--checkpoints", "0", "--hidden", "16,16", "--calibration", "128", "--probe",
            "64", "--weights-per-layer", "32", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    weights = pq.read_table(tmp_path / "reset-cost-weights" / "weights").to_pandas()
    assert len(weights) == 3 * 32 * len(WEIGHT_UTILITIES.names())
    assert {"weight", "endpoint", "shock_l1"} <= set(weights.columns)
    assert not (tmp_path / "reset-cost").exists()
    assert "gxd_weight rho_L1" in capsys.readouterr().out
    assert main(["assay", "--level", "neuron"]) == 2
    assert "unknown level 'neuron'; choose from: unit, weight" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="no references"):
        ResetCostConfig(level="weight", reference="ema", checkpoints=(1,))
