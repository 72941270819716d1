"""Realized clamp shocks, Spearman and Shock@k against hand computations."""

import numpy as np
import pytest
import torch
from scipy import stats

import plasticity_core.shock as shock
from plasticity_core.models import MLP
from plasticity_core.reset import reset_units
from plasticity_core.shock import bottom_fraction, clamp_shocks, shock_at, spearman
from plasticity_core.step import MLPStep
from plasticity_core.taps import TAPS
from plasticity_core.utility import UTILITIES, UtilityInputs
from tests.core.helpers import batch, forward_with_hidden, small_mlp


def _tiny():
    """2 inputs -> 3 ReLU units -> 2 logits, with hand-set weights."""
    model = MLP(2, (3,), 2, "relu").double()
    with torch.no_grad():
        model.blocks[0].linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        model.blocks[0].linear.bias.copy_(torch.tensor([0.0, 0.0, -1.0]))
        model.head.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 3.0]]))
        model.head.bias.zero_()
    return model


def test_tiny_network_shocks_equal_hand_computation():
    model = _tiny()
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0]], dtype=torch.double)
    # h = relu(W x + b): example 1 -> (1, 2, 2), example 2 -> (3, 0, 2)
    r = torch.tensor([2.0, 1.0, 2.0], dtype=torch.double)
    l1, kl = clamp_shocks(model, model.unit_layers()[0], x, r)
    # Clamping h_i to r_i moves the logits by W_head[:, i] * (r_i - h_i).
    # unit 0: d = (1, -1) -> |(1, 0)| + |(-1, 0)| = 1 + 1 -> mean 1
    # unit 1: d = (-1, 1) -> |(2, -1)| = 3 and |(-2, 1)| = 3 -> mean 3
    # unit 2: d = (0, 0) -> 0
    np.testing.assert_allclose(l1.numpy(), [1.0, 3.0, 0.0])

    def kl_by_hand(z, dz):
        p = np.exp(z) / np.exp(z).sum()
        q = np.exp(z + dz) / np.exp(z + dz).sum()
        return float((p * np.log(p / q)).sum())

    z = model(x).detach().numpy()  # example 1: (-2.0, 8.0); example 2: (4.0, 6.0)
    np.testing.assert_allclose(z, [[-2.0, 8.0], [4.0, 6.0]])
    want_unit1 = (
        kl_by_hand(z[0], np.array([2.0, -1.0])) + kl_by_hand(z[1], np.array([-2.0, 1.0]))
    ) / 2
    assert kl[1].item() == pytest.approx(want_unit1, rel=1e-12)
    assert kl[2].item() == 0.0


@pytest.mark.parametrize("activation,norm", [("silu", "none"), ("tanh", "layer")])
def test_batched_clamp_equals_one_unit_at_a_time(activation, norm, monkeypatch):
    monkeypatch.setattr(shock, "CHUNK_ELEMENTS", 3 * 11 * 9)  # several chunks, a ragged last one
    model = small_mlp(activation, norm)
    x, _ = batch()
    g = torch.Generator().manual_seed(0)
    for li, layer in enumerate(model.unit_layers()):
        r = torch.randn(layer.n_units, generator=g, dtype=torch.double)
        l1, kl = clamp_shocks(model, layer, x, r)
        with torch.no_grad():
            z = model(x)
            for i in range(layer.n_units):

                def clamp(h, i=i, r=r):
                    h = h.clone()
                    h[:, i] = r[i]
                    return h

                zc = forward_with_hidden(model, x, {li: clamp})[0]
                assert l1[i].item() == pytest.approx((zc - z).abs().sum(1).mean().item(), rel=1e-12)
                p, q = z.log_softmax(1), zc.log_softmax(1)
                assert kl[i].item() == pytest.approx(
                    (p.exp() * (p - q)).sum(1).mean().item(), rel=1e-9, abs=1e-15
                )


def test_clamp_to_reference_is_what_the_cbp_reset_does():
    model = small_mlp("silu")
    x, _ = batch()
    layer_index, unit = 1, 3
    layer = model.unit_layers()[layer_index]
    with torch.no_grad():
        r = forward_with_hidden(model, x)[1][layer_index].mean(0)
        l1, _ = clamp_shocks(model, layer, x, r)
        z = model(x)
        reset_units(layer, torch.tensor([unit]), r[unit : unit + 1], None, None)
        realized = (model(x) - z).abs().sum(1).mean()
    assert l1[unit].item() == pytest.approx(realized.item(), rel=1e-12)


def test_gxd_estimate_approaches_the_realized_shock_as_displacement_shrinks():
    model = small_mlp("tanh")
    x0, y = batch(n=1)
    errors = []
    for scale in (1e-2, 1e-3, 1e-4):
        g = torch.Generator().manual_seed(1)
        x = x0 + scale * torch.randn(32, x0.shape[1], generator=g, dtype=torch.double)
        with torch.no_grad():
            r = forward_with_hidden(model, x0)[1][0][0]  # reference: the activations at x0
        layer = model.unit_layers()[0]
        realized, _ = clamp_shocks(model, layer, x, r)
        step = MLPStep(model, frozenset(TAPS))
        step(x, y.expand(32))
        inputs = UtilityInputs(step.taps[0], r, layer.incoming.weight, layer.outgoing.weight)
        estimate = UTILITIES.get("gxd_all").fn(inputs)
        errors.append(((estimate - realized).abs() / realized).max().item())
    assert errors[0] < 0.2 and errors[1] < errors[0] / 5 and errors[2] < errors[1] / 5


def test_spearman_is_tie_aware_and_matches_scipy():
    # ranks with ties: a -> (1, 2.5, 2.5, 4), b -> (1, 3, 2, 4): rho = 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / np.sqrt(10), rel=1e-12)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 200), rng.normal(size=200)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, rel=1e-12)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_shock_at_fraction_pools_each_layers_lowest_scores():
    scores = [np.array([3.0, 1.0, 2.0, 0.0]), np.array([5.0, 4.0])]
    shocks = [np.array([10.0, 20.0, 30.0, 40.0]), np.array([7.0, 9.0])]
    # 50%: layer 0 keeps units 3, 1 (shocks 40, 20); layer 1 keeps unit 1 (shock 9)
    assert shock_at(scores, shocks, 0.5) == pytest.approx((40 + 20 + 9) / 3)
    assert list(bottom_fraction(np.arange(256.0), 0.05)) == list(range(13))
    assert list(bottom_fraction(np.array([1.0, 1.0, 0.0]), 0.5)) == [2, 0]
