"""The hand-written MLP step against autograd."""

import pytest
import torch
import torch.nn.functional as F

from plasticity_core.models import ACTIVATIONS
from plasticity_core.step import MLPStep
from plasticity_core.taps import TAPS
from tests.core.helpers import autograd_taps, batch, small_mlp

ALL = [(a, n) for a in ACTIVATIONS.names() for n in ("none", "layer")]


@pytest.mark.parametrize("activation,norm", ALL)
def test_parameter_gradients_equal_autograd(activation, norm):
    model = small_mlp(activation, norm)
    x, y = batch()
    step = MLPStep(model, frozenset(TAPS))
    step(x, y)
    loss = F.cross_entropy(model(x), y)
    expected = torch.autograd.grad(loss, list(model.parameters()))
    for got, want in zip(step.grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert step.loss_sum.item() == pytest.approx(loss.item() * len(y), rel=1e-12)
    assert step.correct.item() == (model(x).argmax(1) == y).sum().item()


@pytest.mark.parametrize("activation,norm", ALL)
def test_taps_equal_autograd_per_example_gradients(activation, norm):
    model = small_mlp(activation, norm)
    x, y = batch()
    step = MLPStep(model, frozenset(TAPS))
    step(x, y)
    for got, want in zip(step.taps, autograd_taps(model, x, y), strict=True):
        for name in ("h", "loss_grad", "target_grad", "logits_grad"):
            torch.testing.assert_close(getattr(got, name), want[name], rtol=1e-10, atol=1e-12)


def test_taps_not_asked_for_are_not_computed():
    model = small_mlp()
    step = MLPStep(model, frozenset({"target_grad"}))
    step(*batch())
    assert all(t.loss_grad is None and t.logits_grad is None for t in step.taps)
    assert all(t.target_grad is not None for t in step.taps)


def test_step_matches_the_module_forward_used_for_evaluation():
    model = small_mlp("silu", "layer")
    x, y = batch()
    step = MLPStep(model)
    step(x, y)
    h_last = step.taps[-1].h
    torch.testing.assert_close(model.head(h_last), model(x))


def test_unit_layers_name_incoming_norm_tap_and_outgoing_modules():
    model = small_mlp("relu", "layer")
    layers = model.unit_layers()
    assert [u.name for u in layers] == ["hidden.0", "hidden.1", "hidden.2"]
    assert [u.n_units for u in layers] == [9, 7, 6]
    x, y = batch()
    seen = []
    hooks = [u.tap.register_forward_hook(lambda m, i, o: seen.append(o)) for u in layers]
    model(x)
    for h in hooks:
        h.remove()
    step = MLPStep(model)
    step(x, y)
    for u, h, tap in zip(layers, seen, step.taps, strict=True):
        assert u.incoming.weight.shape[0] == u.outgoing.weight.shape[1] == h.shape[1]
        assert u.norm.weight.shape == (u.n_units,)
        torch.testing.assert_close(h, tap.h)
    assert layers[-1].outgoing is model.head
