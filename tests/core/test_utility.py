"""Every utility against an independent computation on a small MLP.

The engine's scores (hand-written taps -> registry function) are compared with explicit
per-unit loops over autograd gradients, and GXD's with finite differences of the logits
when one unit is nudged toward its reference.
"""

import pytest
import torch

from plasticity_core.step import MLPStep
from plasticity_core.utility import UTILITIES, UtilityInputs
from tests.core.helpers import autograd_taps, batch, forward_with_hidden, small_mlp, utility_term


def _engine_scores(model, x, y, name, references):
    utility = UTILITIES.get(name)
    step = MLPStep(model, utility.needs)
    step(x, y)
    layers = model.unit_layers()
    return [
        utility.fn(UtilityInputs(t, r, u.incoming.weight, u.outgoing.weight))
        for t, r, u in zip(step.taps, references, layers, strict=True)
    ]


def _brute_force(name, tap, r, w_in, w_out):
    """Per-unit loops, written from the paper's formulas."""
    n_examples, n_units = tap["h"].shape
    scores = torch.zeros(n_units, dtype=torch.double)
    for i in range(n_units):
        out_mag = sum(abs(w_out[k, i]) for k in range(w_out.shape[0]))
        in_mag = sum(abs(w_in[i, j]) for j in range(w_in.shape[1]))
        total = 0.0
        for b in range(n_examples):
            h = tap["h"][b, i]
            total += utility_term(name, tap, b, i, h, h - r[i], out_mag, in_mag)
        scores[i] = total / n_examples
    return scores


DETERMINISTIC = [n for n in UTILITIES.names() if n != "random"]


@pytest.mark.parametrize("name", DETERMINISTIC)
@pytest.mark.parametrize("activation,norm", [("relu", "none"), ("silu", "layer"), ("tanh", "none")])
def test_utility_equals_per_unit_autograd_computation(name, activation, norm):
    model = small_mlp(activation, norm)
    x, y = batch()
    g = torch.Generator().manual_seed(5)
    refs = [torch.randn(u.n_units, generator=g, dtype=torch.double) for u in model.unit_layers()]
    got = _engine_scores(model, x, y, name, refs)
    taps = autograd_taps(model, x, y)
    for layer, tap, r, score in zip(model.unit_layers(), taps, refs, got, strict=True):
        with torch.no_grad():
            want = _brute_force(name, tap, r, layer.incoming.weight, layer.outgoing.weight)
        torch.testing.assert_close(score, want, rtol=1e-9, atol=1e-12)


def _finite_difference_gxd(model, x, y, layer, refs, eps=1e-5):
    """Per unit: mean over examples of |dz_y| and sum_c |dz_c| per unit step toward r, / eps.

    Nudges h_i by +-eps * (r_i - h_i) (central difference), so the quotient estimates the
    first-order logit change of moving the unit all the way to its reference.
    """
    n_units = refs[layer].shape[0]
    target, all_logits = (
        torch.zeros(n_units, dtype=torch.double),
        torch.zeros(n_units, dtype=torch.double),
    )
    for i in range(n_units):

        def nudge(sign, i=i):
            def edit(h):
                h = h.clone()
                h[:, i] += sign * eps * (refs[layer][i] - h[:, i])
                return h

            return forward_with_hidden(model, x, {layer: edit})[0]

        dz = (nudge(+1) - nudge(-1)) / (2 * eps)
        target[i] = dz.gather(1, y[:, None]).abs().mean()
        all_logits[i] = dz.abs().sum(1).mean()
    return target, all_logits


@pytest.mark.parametrize("activation,norm", [("relu", "none"), ("silu", "none"), ("tanh", "layer")])
def test_gxd_equals_finite_difference_of_logits_toward_reference(activation, norm):
    model = small_mlp(activation, norm)
    x, y = batch()
    with torch.no_grad():
        hidden = forward_with_hidden(model, x)[1]
    refs = [h.mean(0) + 0.3 for h in hidden]
    gxd = _engine_scores(model, x, y, "gxd", refs)
    gxd_all = _engine_scores(model, x, y, "gxd_all", refs)
    with torch.no_grad():
        for layer in range(len(refs)):
            fd_target, fd_all = _finite_difference_gxd(model, x, y, layer, refs)
            torch.testing.assert_close(gxd[layer], fd_target, rtol=1e-6, atol=1e-9)
            torch.testing.assert_close(gxd_all[layer], fd_all, rtol=1e-6, atol=1e-9)


def test_random_utility_is_uniform_and_reproducible():
    model = small_mlp()
    x, y = batch()
    step = MLPStep(model)
    step(x, y)
    layer = model.unit_layers()[0]

    def draw(seed):
        inputs = UtilityInputs(
            step.taps[0],
            torch.zeros(layer.n_units, dtype=torch.double),
            layer.incoming.weight,
            layer.outgoing.weight,
            torch.Generator().manual_seed(seed),
        )
        return UTILITIES.get("random").fn(inputs)

    a, b, c = draw(0), draw(0), draw(1)
    assert a.shape == (layer.n_units,) and ((a >= 0) & (a < 1)).all()
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_each_utility_declares_only_known_taps():
    from plasticity_core.taps import TAPS

    assert UTILITIES.get("gxd").needs == {"target_grad"}
    assert UTILITIES.get("gxd_all").needs == {"logits_grad"}
    assert UTILITIES.get("loss_gradient").needs == {"loss_grad"}
    assert UTILITIES.get("contribution").needs == frozenset()
    assert all(UTILITIES.get(n).needs <= set(TAPS) for n in UTILITIES)
