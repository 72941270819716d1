"""The reset-cost assay on residual networks: batched input-repeating clamps against one
channel at a time, the oracle bound, and the command line."""

from __future__ import annotations

import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from plasticity_core.experiments.resnet_assay import ResNetAssayConfig, assay
from plasticity_core.models.mlp import MLP
from plasticity_core.shock import clamp_shocks, clamp_shocks_repeating_input
from runner.cli import main
from tests.core.test_resnet import images, tiny_resnet


def _one_at_a_time(model, layer, x, channel, value):
    def hook(module, inputs, h):
        h = h.clone()
        h[:, channel] = value
        return h

    with torch.no_grad():
        z = model(x)
        handle = layer.tap.register_forward_hook(hook)
        clamped = model(x)
        handle.remove()
    l1 = (clamped - z).abs().sum(1).mean()
    logp = F.log_softmax(z, 1)
    kl = (logp.exp() * (logp - F.log_softmax(clamped, 1))).sum(1).mean()
    return l1, kl


def test_batched_input_repeating_clamps_equal_one_channel_at_a_time():
    model = tiny_resnet()
    x, _ = images(n=4)
    layer = model.unit_layers()[1]
    units = torch.tensor([0, 2, 5, 3])
    reference = torch.tensor([0.1, 0.7, 0.0, 1.3], dtype=torch.double)
    l1, kl = clamp_shocks_repeating_input(model, layer, x, reference, units, max_batch=8)
    for j, channel in enumerate(units.tolist()):
        e1, ekl = _one_at_a_time(model, layer, x, channel, reference[j])
        torch.testing.assert_close(l1[j], e1, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(kl[j], ekl, rtol=1e-10, atol=1e-14)


def test_input_repeating_clamps_equal_tap_repeating_clamps_on_an_mlp():
    g = torch.Generator().manual_seed(0)
    model = MLP(6, (5, 4), 3, generator=g).double()
    x = torch.randn(7, 6, generator=g, dtype=torch.double)
    layer = model.unit_layers()[0]
    reference = torch.rand(5, generator=g, dtype=torch.double)
    expected = clamp_shocks(model, layer, x, reference)
    got = clamp_shocks_repeating_input(model, layer, x, reference, torch.arange(5), max_batch=14)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_assay_rows_cover_the_chosen_channels_and_the_oracle_bounds_every_utility():
    model = tiny_resnet()
    x, y = images(n=12)
    config = ResNetAssayConfig(model="resnet8", units_per_layer=3, fraction=0.34)
    key = {"activation": "relu", "norm": "batch", "model": "tiny", "seed": 0, "checkpoint": 1}
    result = assay(model, x[:8], y[:8], x[8:], key, config)
    units = {(r["layer"], r["unit"]) for r in result.units}
    assert units == {("blocks.0.conv1", u) for u in (0, 2, 3)} | {
        ("blocks.1.conv1", u) for u in (0, 2, 5)
    }
    summary = {r["utility"]: r for r in result.summary}
    assert "oracle" in summary and "gxd" in summary
    for row in summary.values():
        assert row["shock5_l1"] >= summary["oracle"]["shock5_l1"] - 1e-12
    assert not model.training, "the assay leaves the model in the mode it found it"


def test_cli_resnet_assay_writes_tables_and_rejects_a_missing_data_option(tmp_path, capsys):
    args = ["assay", "--model", "resnet8", "--seeds", "1", "--epochs", "1", "--checkpoints",
            "1", "--milestones", "1", "--calibration", "64", "--probe", "20",
            "--units-per-layer", "4", "--batch-size", "200", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 2
    assert "--data" in capsys.readouterr().err
    assert main([*args, "--data", "embedded-mnist"]) == 0
    summary = pq.read_table(tmp_path / "reset-cost" / "summary").to_pandas()
    assert set(summary["utility"]) >= {"gxd", "activation", "oracle"}
    assert set(summary["model"]) == {"resnet8"} and set(summary["checkpoint"]) == {1}
    assert "Spearman" in capsys.readouterr().out
