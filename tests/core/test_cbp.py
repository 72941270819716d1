"""The CBP reset operator and bookkeeping (paper Algorithm 1)."""

import math

import pytest
import torch

from plasticity_core.cbp import CBPConfig, ContinualBackprop
from plasticity_core.errors import ConfigError
from plasticity_core.optim import SGD, Adam
from plasticity_core.reset import reset_units
from plasticity_core.step import MLPStep
from plasticity_core.utility import UTILITIES
from tests.core.helpers import (
    assert_engine_scores_each_layer_as_alone,
    batch,
    forward_with_hidden,
    small_mlp,
)


def _clamp(i, value):
    def edit(h):
        h = h.clone()
        h[:, i] = value
        return h

    return edit


@pytest.mark.parametrize("activation", ["relu", "silu", "tanh"])
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_resetting_a_unit_at_its_reference_leaves_the_output_unchanged(activation, layer):
    model = small_mlp(activation)
    unit_layer = model.unit_layers()[layer]
    x, _ = batch()
    with torch.no_grad():
        unit_layer.incoming.weight[3].zero_()  # h_3 = act(0.7) on every input
        unit_layer.incoming.bias[3] = 0.7
        reference = model.act.fn(torch.tensor([0.7], dtype=torch.double))
        before = model(x)
        reset_units(unit_layer, torch.tensor([3]), reference, None, torch.Generator())
        after = model(x)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-13)
    assert unit_layer.outgoing.weight[:, 3].eq(0).all()
    assert unit_layer.incoming.bias[3] == 0
    w = unit_layer.incoming.weight[3]
    assert w.abs().max() <= unit_layer.init_bound and w.ne(0).all()


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_reset_acts_like_clamping_the_unit_to_its_reference(layer):
    model = small_mlp("silu")
    x, _ = batch()
    r = torch.tensor([0.37], dtype=torch.double)
    with torch.no_grad():
        clamped = forward_with_hidden(model, x, {layer: _clamp(2, r.item())})[0]
        reset_units(model.unit_layers()[layer], torch.tensor([2]), r, None, None)
        torch.testing.assert_close(model(x), clamped, rtol=0, atol=1e-13)


@pytest.mark.parametrize(
    "layer,scale,tolerance", [(2, 1e-3, 1e-12), (0, 1e-3, 1e-2), (0, 1e-4, 1e-3)]
)
def test_target_logit_changes_by_what_gxd_predicts(layer, scale, tolerance):
    """Exact through the linear head; first order deeper down (relative error ~ displacement)."""
    model = small_mlp("tanh")
    x0, y = batch(n=1)
    g = torch.Generator().manual_seed(3)
    x = x0 + scale * torch.randn(16, x0.shape[1], generator=g, dtype=torch.double)
    y = y.expand(16)
    with torch.no_grad():
        r = forward_with_hidden(model, x0)[1][layer][0, 4:5]  # reference: h_4 at x0
    z, hidden = forward_with_hidden(model, x)
    dzy_dh = torch.autograd.grad(z.gather(1, y[:, None]).sum(), hidden[layer])[0][:, 4]
    predicted = -(hidden[layer][:, 4] - r) * dzy_dh
    with torch.no_grad():
        reset_units(model.unit_layers()[layer], torch.tensor([4]), r, None, None)
        change = (model(x) - z).gather(1, y[:, None])[:, 0]
    assert predicted.abs().max() > 1e-6  # the displacement is real
    assert (change - predicted).abs().max() <= tolerance * predicted.abs().max()


def test_layernorm_affine_of_a_reset_unit_is_set_to_one_and_zero():
    model = small_mlp("relu", "layer")
    layer = model.unit_layers()[1]
    reset_units(layer, torch.tensor([0, 5]), torch.zeros(2, dtype=torch.double), None, None)
    assert layer.norm.weight[[0, 5]].eq(1).all() and layer.norm.bias[[0, 5]].eq(0).all()
    assert layer.norm.bias[[1, 2]].ne(0).all()  # neighbours keep their learned affine


@pytest.mark.parametrize("make", [lambda p: SGD(p, 0.1, momentum=0.9), lambda p: Adam(p, 0.01)])
def test_optimizer_state_is_zeroed_for_exactly_the_touched_slices(make):
    model = small_mlp("relu", "layer")
    optimizer = make(list(model.parameters()))
    step = MLPStep(model)
    for seed in range(4):
        step(*batch(seed=seed))
        optimizer.step(step.grads)
    before = optimizer.state_dict()
    layer = model.unit_layers()[1]
    index = torch.tensor([1, 4])
    reset_units(layer, index, torch.zeros(2, dtype=torch.double), optimizer, None)

    touched = {
        id(layer.incoming.weight): 0,
        id(layer.incoming.bias): 0,
        id(layer.norm.weight): 0,
        id(layer.norm.bias): 0,
        id(layer.outgoing.weight): 1,
    }
    for key, tensors in optimizer.state.items():
        for p, now, old in zip(optimizer.params, tensors, before[key], strict=True):
            assert old.abs().sum() > 0
            if id(p) not in touched:
                assert torch.equal(now, old), key
                continue
            dim = touched[id(p)]
            mask = torch.zeros(p.shape[dim], dtype=torch.bool)
            mask[index] = True
            assert now.index_select(dim, index).eq(0).all(), key
            rest = (~mask).nonzero()[:, 0]
            assert torch.equal(now.index_select(dim, rest), old.index_select(dim, rest)), key


def _train_with_cbp(rate, maturity, steps, utility="contribution", compensation="reference"):
    model = small_mlp()
    optimizer = SGD(list(model.parameters()), 0.05)
    cbp = ContinualBackprop(
        model.unit_layers(),
        UTILITIES.get(utility),
        optimizer,
        CBPConfig(rate, maturity, 0.99, compensation),
        torch.Generator().manual_seed(0),
    )
    step = MLPStep(model, cbp.needs)
    return model, optimizer, cbp, step


def test_replacement_count_follows_accumulated_rate_and_only_mature_units_go():
    rate, maturity, steps = 0.02, 5, 400
    model, optimizer, cbp, step = _train_with_cbp(rate, maturity, steps)
    sizes = [u.n_units for u in model.unit_layers()]
    ages = [torch.zeros(n, dtype=torch.long) for n in sizes]  # the test's own bookkeeping
    expected = [0.0] * len(sizes)
    replaced = [0] * len(sizes)
    for t in range(steps):
        step(*batch(seed=t))
        optimizer.step(step.grads)
        for a in ages:
            a += 1
        for i, a in enumerate(ages):
            expected[i] += int((a > maturity).sum()) * rate
        cbp.after_step(step.taps)
        for i, (a, sl) in enumerate(zip(ages, cbp.slices, strict=False)):
            gone = cbp.age[sl] == 0
            assert (a[gone] > maturity).all(), "an immature unit was replaced"
            replaced[i] += int(gone.sum())
            a[gone] = 0
    for got, want in zip(replaced, expected, strict=False):
        assert got > 10
        assert abs(got - math.floor(want)) <= 1


def test_reference_and_utility_are_bias_corrected_emas():
    eta = 0.99
    model, optimizer, cbp, step = _train_with_cbp(0.0, 1000, 0, utility="activation")
    f = u = 0.0
    for t in range(1, 6):
        step(*batch(seed=t))
        h = step.taps[0].h
        f = eta * f + (1 - eta) * h.mean(0)
        u = eta * u + (1 - eta) * h.abs().mean(0)
        cbp.after_step(step.taps)
        sl = cbp.slices[0]
        torch.testing.assert_close(cbp.reference()[sl], f / (1 - eta**t))
        torch.testing.assert_close(cbp.corrected_utility()[sl], u / (1 - eta**t))
    assert (cbp.age == 5).all()


@pytest.mark.parametrize("utility", ["contribution", "mc_contribution", "mc_adaptable"])
def test_shared_weight_magnitudes_score_like_each_layer_alone(utility):
    """The engine takes |W| once per matrix for both layers that read it; each layer's
    score must equal the utility computed from that layer's own weights."""
    model, optimizer, cbp, step = _train_with_cbp(0.0, 1000, 0, utility=utility)
    x, y = batch(seed=3)
    step(x, y)
    optimizer.step(step.grads)
    cbp.after_step(step.taps)
    assert_engine_scores_each_layer_as_alone(cbp, step, model, utility)


def test_the_lowest_utility_mature_unit_is_replaced():
    model, optimizer, cbp, step = _train_with_cbp(0.01, 10, 0, utility="activation")
    state = cbp.state_dict()
    n = cbp.slices[0].stop
    age = torch.full((n,), 1000)
    age[[2, 6]] = 3  # immature, and given the lowest utility of all
    state["born"][:n] = 1000 - age
    state["correction"][:n] = 1 - 0.99 ** age.double()
    state["utility_ema"][:n] = (torch.arange(n, dtype=torch.double) + 10.0) * state["correction"][
        :n
    ]
    state["utility_ema"][[2, 6]] = 0.0
    state["utility_ema"][5] = 1.0 * state["correction"][5]  # the lowest among mature units
    state.update(steps=1000, accumulated=[0.99, 0.0, 0.0], young=[[(997, 2)], [], []])
    cbp.load_state_dict(state)
    step(*batch())
    assert cbp.after_step(step.taps) == 1
    assert cbp.age[5] == 0 and cbp.age[2] == 4 and cbp.age[6] == 4


@pytest.mark.parametrize("compensation", ["reference", "none"])
def test_compensation_none_leaves_the_consumer_bias_untouched(compensation):
    """Resets in the last hidden layer: with 'none' the head's bias is as it was; with
    'reference' it moved by exactly sum_i w_out[:, i] * r_i of the replaced units."""
    model, optimizer, cbp, step = _train_with_cbp(1.0, 3, 0, "activation", compensation)
    for t in range(3):  # EMAs get a reference; units mature after 3 steps, then rate 1 resets
        step(*batch(seed=t))
        optimizer.step(step.grads)
        cbp.after_step(step.taps)
    step(*batch(seed=3))
    optimizer.step(step.grads)
    layer, sl = model.unit_layers()[-1], cbp.slices[-1]
    bias, w_out = layer.outgoing.bias.clone(), layer.outgoing.weight.clone()
    born, used = cbp.born[sl].clone(), []
    replace = cbp._replace  # observe the references the reset was given
    cbp._replace = lambda i, k, r: (used.append(r[sl].clone()), replace(i, k, r))
    cbp.after_step(step.taps)
    reference = used[-1]
    (replaced,) = torch.nonzero(cbp.born[sl] != born, as_tuple=True)
    assert len(replaced) >= 1
    expected = bias + (w_out[:, replaced] @ reference[replaced] if compensation == "reference"
                       else 0.0)  # fmt: skip
    torch.testing.assert_close(layer.outgoing.bias, expected, rtol=0, atol=1e-14)
    if compensation == "reference":
        assert not torch.equal(layer.outgoing.bias, bias)


def test_bad_cbp_settings_are_rejected():
    with pytest.raises(ConfigError, match="replacement_rate"):
        CBPConfig(replacement_rate=-0.1)
    with pytest.raises(ConfigError, match="maturity"):
        CBPConfig(maturity=-1)
    with pytest.raises(ConfigError, match="compensation"):
        CBPConfig(compensation="half")
