"""The competing methods on the one reset operator: redo, regrama, l2_init, head resets."""

import math

import pytest
import torch

from plasticity_core.errors import ConfigError
from plasticity_core.experiments.permuted_mnist import PermutedMNIST as run
from plasticity_core.experiments.permuted_mnist import PermutedMNISTConfig
from plasticity_core.methods import MethodConfig
from plasticity_core.optim import SGD
from plasticity_core.step import MLPStep
from plasticity_core.taps import LayerTaps
from plasticity_core.threshold_reset import ThresholdReset, threshold_mask
from plasticity_core.utility import UTILITIES
from tests.core.helpers import batch, small_mlp


def _snapshot(model):
    return [p.detach().clone() for p in model.parameters()]


def test_redo_resets_exactly_the_dormant_units():
    model = small_mlp("tanh")
    layer = model.unit_layers()[0]
    with torch.no_grad():  # units 2 and 5 are silent: tanh(0 * x + 0) = 0
        layer.incoming.weight[[2, 5]] = 0.0
        layer.incoming.bias[[2, 5]] = 0.0
    step = MLPStep(model)
    step(*batch())
    optimizer = SGD(list(model.parameters()), 0.1, momentum=0.9)
    optimizer.state["momentum_buffer"][0].fill_(1.0)
    before = _snapshot(model)
    redo = ThresholdReset(
        model.unit_layers(),
        UTILITIES.get("activation"),
        optimizer,
        0.025,
        1,
        torch.Generator().manual_seed(0),
    )
    active = [(t.h.abs().mean(0) / t.h.abs().mean()).min().item() for t in step.taps]
    assert min(active[1:]) > 0.025 and sorted(
        step.taps[0].h.abs().sum(0).argsort()[:2].tolist()
    ) == [2, 5]

    resets = redo.after_step(step.taps)

    w_in, b_in, w_out = layer.incoming.weight, layer.incoming.bias, layer.outgoing.weight
    assert resets == 2 and redo.reset_counts() == [2, 0, 0]
    assert w_in[[2, 5]].ne(0).all() and b_in[[2, 5]].eq(0).all() and w_out[:, [2, 5]].eq(0).all()
    keep = [i for i in range(layer.n_units) if i not in (2, 5)]
    assert torch.equal(w_in[keep], before[0][keep]) and torch.equal(
        w_out[:, keep], before[2][:, keep]
    )
    assert torch.equal(layer.outgoing.bias, before[3])  # ReDo: no bias compensation
    for p, old in list(zip(model.parameters(), before, strict=False))[4:]:
        assert torch.equal(p, old)  # other layers untouched
    assert optimizer.state["momentum_buffer"][0][[2, 5]].eq(0).all()
    assert optimizer.state["momentum_buffer"][0][keep].eq(1).all()


def test_regrama_thresholds_gradient_magnitudes():
    model = small_mlp("tanh")
    layers = model.unit_layers()
    n = [u.n_units for u in layers]
    grads = [torch.ones(4, k, dtype=torch.double) for k in n]
    grads[1][:, 3] = 0.01  # mean |dl/dh| 0.01 / layer mean (6.01/7) = 0.0116 <= 0.025
    grads[2][:, 0] = 0.1  # 0.1 / (5.1/6) = 0.118 > 0.025: kept
    h = [torch.randn(4, k, dtype=torch.double) for k in n]
    taps = [LayerTaps(h=x, loss_grad=g) for x, g in zip(h, grads, strict=True)]
    regrama = ThresholdReset(layers, UTILITIES.get("loss_gradient"), None, 0.025, 1, None)
    assert regrama.after_step(taps) == 1 and regrama.reset_counts() == [0, 1, 0]
    assert layers[1].outgoing.weight[:, 3].eq(0).all()
    assert threshold_mask(torch.zeros(3), 0.0).all()


def test_threshold_resets_run_every_f_steps_only():
    model = small_mlp("tanh")
    with torch.no_grad():
        model.unit_layers()[0].incoming.weight[1] = 0.0
        model.unit_layers()[0].incoming.bias[1] = 0.0
    step = MLPStep(model)
    step(*batch())
    redo = ThresholdReset(model.unit_layers(), UTILITIES.get("activation"), None, 0.025, 3, None)
    # the reset unit gets fresh weights but these taps still show it silent: reset again
    assert [redo.after_step(step.taps) for _ in range(6)] == [0, 0, 1, 0, 0, 1]


SMALL = dict(tasks=3, hidden=(32, 32), batch_size=32, probe_size=300)


def test_l2_init_with_zero_coefficient_is_bp_bit_for_bit():
    bp = list(run(PermutedMNISTConfig(method="bp", **SMALL)))
    zero = list(run(PermutedMNISTConfig(method="l2_init", l2_init=0.0, **SMALL)))
    pulled = list(run(PermutedMNISTConfig(method="l2_init", l2_init=0.1, **SMALL)))
    for key in ("accuracy", "loss", "weight_magnitude", "effective_rank"):
        assert [r[key] for r in zero] == [r[key] for r in bp]
    assert [r["loss"] for r in pulled] != [r["loss"] for r in bp]


@pytest.mark.parametrize(
    "method", ["bp", "cbp", "l2", "l2_init", "shrink_perturb", "redo", "regrama"]
)
def test_every_method_writes_diagnostics_in_their_ranges(method):
    rows = list(
        run(
            PermutedMNISTConfig(
                method=method,
                reset_every=25,
                maturity=20,
                replacement_rate=0.01,
                head_reset_every=2,
                **SMALL,
            )
        )
    )
    assert len(rows) == 3
    for row in rows:
        for name in ("dormant_fraction", "dormant_fraction_tau0", "dead_fraction"):
            assert all(0 <= row[f"{name}_l{i}"] <= 1 for i in range(2)) and 0 <= row[name] <= 1
        assert all(1 <= row[f"effective_rank_l{i}"] <= 32 for i in range(2))
        assert all(1 <= row[f"stable_rank_l{i}"] <= 32 for i in range(2))
        assert row["weight_magnitude"] > 0 and row["feature_norm"] > 0 and row["grad_norm"] > 0
        assert row["resets"] == row["resets_l0"] + row["resets_l1"]
        assert row["diagnostics_version"] == "1" and row["diagnostics_seconds"] >= 0
        assert math.isnan(row["mean_age"]) != (method == "cbp")
    if method in ("cbp", "redo"):
        assert sum(r["resets"] for r in rows) > 0


def test_default_utilities_follow_the_method():
    assert MethodConfig("cbp").resolved_utility == "gxd"
    assert MethodConfig("redo").resolved_utility == "activation"
    assert MethodConfig("regrama").resolved_utility == "loss_gradient"
    assert MethodConfig("redo", utility="gxd").resolved_utility == "gxd"
    assert MethodConfig("bp").resolved_utility == "none"
    config = PermutedMNISTConfig(method="redo")
    assert config.utility == "" and config.hyperparameters()["utility"] == "activation"


def test_a_utility_for_a_method_that_reads_none_is_an_error():
    with pytest.raises(ConfigError, match="method bp reads no utility"):
        MethodConfig("bp", utility="gxd")
    assert MethodConfig("bp", utility="none").resolved_utility == "none"


def test_head_reset_reinitialises_the_output_layer_at_task_boundaries():
    config = PermutedMNISTConfig(method="bp", head_reset_every=1, **SMALL)
    plain = list(run(PermutedMNISTConfig(method="bp", **SMALL)))
    experiment = run(config)
    rows = iter(experiment)
    first = next(rows)
    assert first["loss"] == plain[0]["loss"]  # no reset before the first task
    head = experiment.model.head
    before = head.weight.detach().clone()
    experiment._reset_head()
    bound = math.sqrt(3.0 / head.in_features)
    assert not torch.equal(head.weight, before) and head.weight.abs().max() <= bound
    assert head.bias.eq(0).all()
