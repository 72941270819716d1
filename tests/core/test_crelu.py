"""crelu (concatenated ReLU) and its two features per unit, through every user of a unit layer.

The step's gradients and taps for crelu are checked against autograd by tests/core/
test_step.py (its parametrisation covers every registered activation). Here: the forward
against its definition, the reset against clamping both features, every utility against
per-unit loops written from the rule in `utility.py` (and gxd against finite differences of
the logits), CBP's statistics against hand-kept EMAs, the diagnostics against hand-made
features, and a packed crelu run against the same run alone.
"""

import pytest
import torch
import torch.nn.functional as F

from plasticity_core.cbp import CBPConfig, ContinualBackprop
from plasticity_core.diagnostics import dead_fraction, dormant_fraction, network_diagnostics
from plasticity_core.experiments.permuted_mnist import PermutedMNIST, PermutedMNISTConfig
from plasticity_core.models import ACTIVATIONS
from plasticity_core.optim import SGD
from plasticity_core.packed.loop import PackedLoop
from plasticity_core.reset import reset_units
from plasticity_core.shock import clamp_shocks
from plasticity_core.step import MLPStep
from plasticity_core.taps import TAPS
from plasticity_core.utility import UTILITIES, UtilityInputs
from tests.core.helpers import (
    assert_engine_scores_each_layer_as_alone,
    autograd_taps,
    batch,
    forward_with_hidden,
    small_mlp,
    utility_term,
)

DETERMINISTIC = [n for n in UTILITIES.names() if n != "random"]


def _features(i):
    """The tap columns of unit i: (relu(a_i), relu(-a_i))."""
    return [2 * i, 2 * i + 1]


def _clamp(i, values):
    def edit(h):
        h = h.clone()
        h[:, _features(i)] = values
        return h

    return edit


def test_crelu_is_relu_of_a_and_of_minus_a_and_the_next_layer_reads_both():
    a = torch.tensor([[1.5, -2.0, 0.0]])
    h = ACTIVATIONS.get("crelu").fn(a)
    torch.testing.assert_close(h, torch.tensor([[1.5, 0.0, 0.0, 2.0, 0.0, 0.0]]))
    model = small_mlp("crelu")
    assert [b.linear.weight.shape for b in model.blocks] == [(9, 12), (7, 18), (6, 14)]
    assert model.head.weight.shape == (4, 12)
    assert [(u.n_units, u.features) for u in model.unit_layers()] == [(9, 2), (7, 2), (6, 2)]
    x, _ = batch()
    z, hidden = forward_with_hidden(model, x)
    a0 = model.blocks[0].linear(x)
    torch.testing.assert_close(hidden[0][:, 0::2], F.relu(a0))
    torch.testing.assert_close(hidden[0][:, 1::2], F.relu(-a0))


def test_init_bound_is_relus_gain_over_the_doubled_fan_in():
    """Layer 1 reads 2 x 9 features: bound sqrt(2) * sqrt(3 / 18)."""
    model = small_mlp("crelu")
    layer = model.unit_layers()[1]
    assert layer.init_bound == pytest.approx(2**0.5 * (3 / 18) ** 0.5)
    assert model.blocks[1].linear.weight.abs().max() <= layer.init_bound


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_reset_with_compensation_equals_clamping_both_features_to_their_references(layer):
    model = small_mlp("crelu")
    x, _ = batch()
    unit = 3
    unit_layer = model.unit_layers()[layer]
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        h = forward_with_hidden(model, x)[1][layer]
        r = h.mean(0).view(-1, 2) + 0.1 * torch.randn(unit_layer.n_units, 2, generator=g,
                                                      dtype=h.dtype)  # fmt: skip
        l1, _ = clamp_shocks(model, unit_layer, x, r)
        z = model(x)
        clamped = forward_with_hidden(model, x, {layer: _clamp(unit, r[unit])})[0]
        reset_units(unit_layer, torch.tensor([unit]), r[unit : unit + 1], None, None)
        after = model(x)
    torch.testing.assert_close(after, clamped, rtol=0, atol=1e-13)
    assert l1[unit].item() == pytest.approx((after - z).abs().sum(1).mean().item(), rel=1e-12)
    assert unit_layer.outgoing.weight[:, _features(unit)].eq(0).all()
    others = [c for c in range(2 * unit_layer.n_units) if c not in _features(unit)]
    assert unit_layer.outgoing.weight[:, others].ne(0).all()


def test_reset_zeroes_the_optimizer_state_of_both_consumer_columns_only():
    model = small_mlp("crelu")
    optimizer = SGD(list(model.parameters()), 0.1, momentum=0.9)
    step = MLPStep(model)
    for seed in range(3):
        step(*batch(seed=seed))
        optimizer.step(step.grads)
    layer = model.unit_layers()[1]
    i = next(k for k, p in enumerate(optimizer.params) if p is layer.outgoing.weight)
    (momentum,) = [t[i] for t in optimizer.state.values()]
    before = momentum.clone()
    reset_units(layer, torch.tensor([1, 4]), torch.zeros(2, 2, dtype=torch.double), optimizer,
                None)  # fmt: skip
    touched = _features(1) + _features(4)
    assert momentum[:, touched].eq(0).all()
    rest = [c for c in range(momentum.shape[1]) if c not in touched]
    assert torch.equal(momentum[:, rest], before[:, rest])


def _per_unit_loop(name, tap, r, w_in, w_out):
    """A unit's score from the rule in `utility.py`, by explicit loops over examples, units
    and the unit's two features (r [units, 2])."""
    examples, n_units = tap["h"].shape[0], w_in.shape[0]
    scores = torch.zeros(n_units, dtype=torch.double)
    for i in range(n_units):
        cols = _features(i)
        out_mag = [w_out[:, c].abs().sum() for c in cols]
        in_mag = w_in[i].abs().sum()
        total = 0.0
        for b in range(examples):
            h = [tap["h"][b, c] for c in cols]
            d = [h[f] - r[i, f] for f in range(2)]
            if name == "gxi":
                total += abs(sum(h[f] * tap["target_grad"][b, c] for f, c in enumerate(cols)))
            elif name == "gxd":
                total += abs(sum(d[f] * tap["target_grad"][b, c] for f, c in enumerate(cols)))
            else:
                total += sum(utility_term(name, tap, b, c, h[f], d[f], out_mag[f], in_mag)
                             for f, c in enumerate(cols))  # fmt: skip
        scores[i] = total / examples
    return scores


@pytest.mark.parametrize("name", DETERMINISTIC)
@pytest.mark.parametrize("norm", ["none", "layer"])
def test_every_utility_scores_a_unit_from_both_its_features(name, norm):
    model = small_mlp("crelu", norm)
    x, y = batch()
    step = MLPStep(model, UTILITIES.get(name).needs)
    step(x, y)
    g = torch.Generator().manual_seed(5)
    layers = model.unit_layers()
    refs = [torch.randn(u.n_units, 2, generator=g, dtype=torch.double) for u in layers]
    for layer, tap, want_tap, r in zip(layers, step.taps, autograd_taps(model, x, y), refs,
                                       strict=True):  # fmt: skip
        w_in, w_out = layer.incoming.weight, layer.outgoing.weight
        got = UTILITIES.get(name).fn(UtilityInputs(tap, r, w_in, w_out))
        flat = UTILITIES.get(name).fn(UtilityInputs(tap, r.flatten(), w_in, w_out))
        with torch.no_grad():
            want = _per_unit_loop(name, want_tap, r, w_in, w_out)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(flat, got, rtol=0, atol=0)


def test_contribution_is_the_exact_l1_change_of_the_consumers_input():
    """At most one crelu feature is non-zero per example, so sum_c |h_c| sum_k |w_kc| is
    sum_k |sum_c w_kc h_c|: what the consumer stops receiving when the unit is removed."""
    model = small_mlp("crelu")
    x, y = batch()
    step = MLPStep(model)
    step(x, y)
    layer, tap = model.unit_layers()[1], step.taps[1]
    w_out = layer.outgoing.weight
    zero = torch.zeros(layer.n_units, 2, dtype=torch.double)
    score = UTILITIES.get("contribution").fn(UtilityInputs(tap, zero, layer.incoming.weight,
                                                           w_out))  # fmt: skip
    for i in range(layer.n_units):
        received = tap.h[:, _features(i)] @ w_out[:, _features(i)].T  # [examples, out]
        assert score[i].item() == pytest.approx(received.abs().sum(1).mean().item(), rel=1e-12)


def _finite_difference(model, x, y, layer, r, unit, eps=1e-5):
    """(mean |dz_y|, mean ||dz||_1) per unit step of both features toward r [2], / eps."""

    def nudge(sign):
        def edit(h):
            h = h.clone()
            cols = _features(unit)
            h[:, cols] += sign * eps * (r - h[:, cols])
            return h

        return forward_with_hidden(model, x, {layer: edit})[0]

    dz = (nudge(+1) - nudge(-1)) / (2 * eps)
    return dz.gather(1, y[:, None]).abs().mean(), dz.abs().sum(1).mean()


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_gxd_is_the_first_order_target_change_of_moving_both_features_to_r(norm):
    model = small_mlp("crelu", norm)
    x, y = batch()
    step = MLPStep(model, frozenset(TAPS))
    step(x, y)
    with torch.no_grad():
        hidden = forward_with_hidden(model, x)[1]
    for li, (layer, tap, h) in enumerate(zip(model.unit_layers(), step.taps, hidden,
                                             strict=True)):  # fmt: skip
        r = h.mean(0).view(-1, 2) + 0.3
        inputs = UtilityInputs(tap, r, layer.incoming.weight, layer.outgoing.weight)
        gxd = UTILITIES.get("gxd").fn(inputs)
        bound = UTILITIES.get("gxd_all").fn(inputs)
        with torch.no_grad():
            for i in range(layer.n_units):
                target, all_logits = _finite_difference(model, x, y, li, r[i], i)
                assert gxd[i].item() == pytest.approx(target.item(), rel=1e-6, abs=1e-9)
                assert bound[i].item() >= all_logits.item() * (1 - 1e-6)


def _cbp(model, utility, rate=0.0, maturity=1000):
    optimizer = SGD(list(model.parameters()), 0.05)
    config, generator = CBPConfig(rate, maturity, 0.9), torch.Generator().manual_seed(0)
    cbp = ContinualBackprop(model.unit_layers(), UTILITIES.get(utility), optimizer, config,
                            generator)  # fmt: skip
    return optimizer, cbp, MLPStep(model, cbp.needs)


def test_cbp_keeps_a_reference_per_feature_and_a_utility_per_unit():
    model = small_mlp("crelu")
    optimizer, cbp, step = _cbp(model, "contribution")
    eta, f, u = 0.9, None, None
    for t in range(1, 5):
        x, y = batch(seed=t)
        step(x, y)
        optimizer.step(step.grads)
        h = step.taps[0].h.clone()
        cbp.after_step(step.taps)
        layer = model.unit_layers()[0]
        mean = h.mean(0).view(-1, 2)
        f = (1 - eta) * mean if f is None else eta * f + (1 - eta) * mean
        # contribution per unit: each feature's mean |h| times its own column's sum |w_out|
        columns = layer.outgoing.weight.abs().sum(0).view(-1, 2)
        score = (h.abs().mean(0).view(-1, 2) * columns).sum(1)
        u = (1 - eta) * score if u is None else eta * u + (1 - eta) * score
    sl = cbp.slices[0]
    assert cbp.activation_ema.shape == (cbp.slices[-1].stop, 2)
    torch.testing.assert_close(cbp.reference()[sl], f / (1 - eta**4))
    torch.testing.assert_close(cbp.corrected_utility()[sl], u / (1 - eta**4))


@pytest.mark.parametrize("utility", DETERMINISTIC)
def test_the_cbp_engine_scores_every_layer_as_the_utility_alone(utility):
    model = small_mlp("crelu", "layer")
    optimizer, cbp, step = _cbp(model, utility)
    step(*batch(seed=3))
    optimizer.step(step.grads)
    cbp.after_step(step.taps)
    assert_engine_scores_each_layer_as_alone(cbp, step, model, utility)


def test_a_cbp_reset_moves_both_features_references_into_the_consumer_bias():
    """The first resets of the last hidden layer (step 3: maturity 2): the head's bias
    gains w_out[:, c] * r_c for both features c of each, r the step's bias-corrected EMA."""
    eta = 0.9
    model = small_mlp("crelu")
    optimizer, cbp, step = _cbp(model, "activation", rate=0.5, maturity=2)
    sl, head = cbp.slices[-1], model.head
    for t in range(3):
        step(*batch(seed=t))
        optimizer.step(step.grads)
        w, b = head.weight.detach().clone(), head.bias.detach().clone()
        f, c = cbp.activation_ema[sl].clone(), cbp.correction[sl].clone()
        h = step.taps[-1].h.clone()
        cbp.after_step(step.taps)
    reset = (cbp.age[sl] == 0).nonzero()[:, 0]
    assert len(reset) == 3  # half of the 6 units
    r = (eta * f + (1 - eta) * h.mean(0).view(-1, 2)) / (eta * c + 1 - eta).unsqueeze(1)
    columns = [col for i in reset.tolist() for col in _features(i)]
    torch.testing.assert_close(head.bias, b + w[:, columns] @ r[reset].flatten())
    assert head.weight[:, columns].eq(0).all()


def test_dormant_and_dead_count_units_from_both_features():
    # unit 0: only its negative feature fires; unit 1: silent; unit 2: barely active
    h = torch.tensor([[0.0, 2.0, 0.0, 0.0, 0.01, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    # activity per unit: 1.5, 0, 0.005 -> mean 0.505; scores 2.97, 0, 0.0099
    assert dormant_fraction(h, 0.025, features=2) == pytest.approx(2 / 3)
    assert dormant_fraction(h, 0.0, features=2) == pytest.approx(1 / 3)
    assert dead_fraction(h, features=2) == pytest.approx(1 / 3)
    assert dead_fraction(h) == pytest.approx(3 / 6)  # per feature: columns 2, 3 and 5
    model = small_mlp("crelu")
    row = network_diagnostics(model, batch()[0], tau=0.025)
    assert row["dead_fraction"] == 0.0  # a crelu unit is silent only where a = 0


def test_a_packed_crelu_cbp_run_gives_its_rows_alone_bit_for_bit():
    torch.set_num_threads(1)
    base = dict(tasks=2, hidden=(16, 16), batch_size=64, lr=0.05, replacement_rate=0.05,
                maturity=10, probe_size=50, activation="crelu", utility="gxd")  # fmt: skip
    configs = [PermutedMNISTConfig(**base, seed=s) for s in (3, 7)]
    pack = PackedLoop(PermutedMNIST, configs)
    packed = [task[1] for task in pack]
    alone = PermutedMNIST(configs[1])
    rows = list(alone)
    assert torch.equal(pack.loops[1].method.born, alone.method.born)
    assert sum(alone.method.counts) > 20
    for got, want in zip(packed, rows, strict=True):
        assert {k: v for k, v in got.items() if "seconds" not in k} == {
            k: v for k, v in want.items() if "seconds" not in k
        }


def test_a_crelu_cbp_run_of_permuted_mnist_learns_and_resets():
    """What `plasticity run permuted-mnist --activation crelu --method cbp --tasks 2
    --hidden 32,32` runs, at lr 0.1 and a rate that resets: chance is 0.1."""
    config = PermutedMNISTConfig(
        tasks=2, hidden=(32, 32), activation="crelu", method="cbp", lr=0.1,
        replacement_rate=0.01, maturity=10, probe_size=200,
    )  # fmt: skip
    rows = list(PermutedMNIST(config))
    assert all(row["accuracy"] > 0.5 and row["resets"] > 0 for row in rows)
    assert all(0 <= row["dormant_fraction"] <= 1 for row in rows)
