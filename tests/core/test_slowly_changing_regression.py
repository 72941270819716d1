"""Slowly-changing regression: rows, resume, the regression step against autograd, packs."""

import io

import pytest
import torch

from plasticity_core.experiments.slowly_changing_regression import (
    SlowlyChangingRegression,
    SlowlyChangingRegressionConfig,
)
from plasticity_core.models.mlp import MLP
from plasticity_core.packed.loop import PackedLoop
from plasticity_core.step import MLPStep
from plasticity_core.taps import TAPS

TIMING = {"seconds", "diagnostics_seconds", "code_version"}
SHORT = dict(tasks=3, flip_every=500, replacement_rate=0.01, maturity=20, probe_size=100)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _rows(config, state=None):
    return [{k: v for k, v in r.items() if k not in TIMING}
            for r in SlowlyChangingRegression(config, state)]  # fmt: skip


def test_one_row_per_flip_period_with_its_online_squared_error():
    rows = _rows(SlowlyChangingRegressionConfig(**SHORT))
    assert [r["task"] for r in rows] == [0, 1, 2]
    assert [r["examples_seen"] for r in rows] == [500, 1000, 1500]
    assert all(r["loss"] > 0 for r in rows)
    assert "accuracy" not in rows[0] and "train_accuracy" not in rows[0]
    assert rows[0]["utility"] == "gxd" and "dormant_fraction" in rows[0]
    assert sum(r["resets"] for r in rows) > 0


def test_each_seed_draws_its_own_target_and_stream():
    a = _rows(SlowlyChangingRegressionConfig(**SHORT, seed=1))
    b = _rows(SlowlyChangingRegressionConfig(**SHORT, seed=1))
    c = _rows(SlowlyChangingRegressionConfig(**SHORT, seed=2))
    assert a == b
    assert [r["loss"] for r in a] != [r["loss"] for r in c]


def test_a_run_resumes_from_a_task_boundary_bit_for_bit():
    config = SlowlyChangingRegressionConfig(**SHORT, flip_mode="redraw", seed=3)
    run = SlowlyChangingRegression(config)
    first = next(iter(run))
    buffer = io.BytesIO()
    torch.save(run.state_dict(), buffer)
    buffer.seek(0)
    rest = _rows(config, torch.load(buffer, weights_only=True))
    whole = _rows(config)
    assert {k: v for k, v in first.items() if k not in TIMING} == whole[0]
    assert rest == whole[1:]


def test_the_regression_step_matches_autograd_gradients_and_gxd_target_output():
    """Squared-error loss gradients of every parameter, per-example dl/dh, and the target
    tap dy_hat/dh (GXD's target output here), against autograd."""
    torch.manual_seed(0)
    model = MLP(21, (5, 7), 1, "silu")
    x, y = torch.rand(9, 21), torch.randn(9)
    step = MLPStep(model, frozenset(TAPS), "squared_error")
    step(x, y)
    params = list(model.parameters())
    hidden = []
    h = x
    for block in model.blocks:
        h = block(h)
        h.retain_grad()
        hidden.append(h)
    out = model.head(h).squeeze(1)
    loss = ((out - y) ** 2).mean()
    grads = torch.autograd.grad(loss, params, retain_graph=True)
    for got, want in zip(step.grads, grads, strict=True):
        torch.testing.assert_close(got, want)
    assert step.loss_sum.item() == pytest.approx(((out - y) ** 2).sum().item(), rel=1e-5)
    for i, tap in enumerate(step.taps):
        target = torch.autograd.grad(out.sum(), hidden[i], retain_graph=True)[0]
        torch.testing.assert_close(tap.target_grad, target)
        torch.testing.assert_close(tap.logits_grad, target.abs())
        per_example = torch.autograd.grad(((out - y) ** 2).sum(), hidden[i], retain_graph=True)
        torch.testing.assert_close(tap.loss_grad, per_example[0])


@pytest.mark.parametrize("method", [dict(method="bp"), dict(utility="gxd"),
                                    dict(utility="contribution")], ids=str)  # fmt: skip
def test_a_packed_run_makes_the_reset_decisions_and_errors_of_its_run_alone(method):
    configs = [SlowlyChangingRegressionConfig(**{**SHORT, **method, "seed": s, "tasks": 2,
                                                 "flip_every": 500}) for s in range(3)]  # fmt: skip
    pack = PackedLoop(SlowlyChangingRegression, configs)
    packed = list(pack)
    for r, config in enumerate(configs):
        alone = SlowlyChangingRegression(config)
        rows = list(alone)
        for task, row in enumerate(rows):
            assert packed[task][r]["resets"] == row["resets"]
            assert packed[task][r]["loss"] == pytest.approx(row["loss"], rel=1e-5)
        if config.method == "cbp":
            assert torch.equal(pack.loops[r].method.born, alone.method.born)
        for p, q in zip(pack.loops[r].model.parameters(), alone.model.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_on_a_shortened_stream_bps_error_grows_and_cbps_stays_lower_over_six_seeds():
    """The phenomenon, shortened (2,000-step flip periods, step size 0.03, 30,000 steps):
    on the same six streams, plain backprop's error over the last fifth of the steps grows
    well past its first fifth, and CBP (GXD) ends lower and grows less."""
    base = dict(tasks=15, flip_every=2000, lr=0.03)
    growth, late = {}, {}
    for method in (dict(method="bp"), dict(utility="gxd")):
        configs = [SlowlyChangingRegressionConfig(**base, **method, seed=s) for s in range(6)]
        tasks = list(PackedLoop(SlowlyChangingRegression, configs))
        curve = torch.tensor([[row["loss"] for row in task] for task in tasks]).mean(1)
        growth[configs[0].method] = curve[-3:].mean() / curve[:3].mean()
        late[configs[0].method] = curve[-3:].mean()
    assert growth["bp"] > 1.3
    assert growth["bp"] > growth["cbp"] + 0.15
    assert late["bp"] > 1.1 * late["cbp"]
