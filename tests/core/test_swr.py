"""Selective weight reinitialization and the weight utilities: gxd_weight against finite
differences of the target logit, the re-drawn weights are exactly the lowest-utility mature
ones (ranked here by hand), rate 0 is bp bit for bit, the init distributions are the
models' own, resume is bit for bit, and the conv nets run it."""

import numpy as np
import pytest
import torch
from scipy import stats

from plasticity_core.cbp import CBPConfig
from plasticity_core.errors import ConfigError
from plasticity_core.experiments.continuous_cifar import ContinuousCIFAR, ContinuousCIFARConfig
from plasticity_core.experiments.permuted_mnist import PermutedMNIST as run
from plasticity_core.experiments.permuted_mnist import PermutedMNISTConfig
from plasticity_core.models import MLP
from plasticity_core.models.resnet import build_resnet
from plasticity_core.optim import SGD
from plasticity_core.step import MLPStep
from plasticity_core.swr import SelectiveWeightReinit
from plasticity_core.weight_utility import WEIGHT_UTILITIES, WeightInputs
from tests.core.helpers import batch, restored_at_a_boundary, small_mlp

SMALL = dict(tasks=2, hidden=(32, 32), batch_size=32, probe_size=0)


def _position(params: list[torch.Tensor], weight: torch.Tensor) -> int:
    return next(i for i, p in enumerate(params) if p is weight)


def test_gxd_weight_is_the_mean_first_order_target_logit_change_by_finite_differences():
    model = small_mlp()
    x, y = batch()
    step = MLPStep(model, frozenset({"target_weight_grad"}))
    step(x, y)
    eps = 1e-6
    rng = np.random.default_rng(0)
    for init in model.weight_inits():
        w = init.weight
        index = _position(step.params, w)
        scores = WEIGHT_UTILITIES.get("gxd_weight").fn(
            WeightInputs(w, step.grads[index], step.target_weight_grads[index], init.mean)
        )
        for flat in rng.choice(w.numel(), size=5, replace=False):
            with torch.no_grad():
                original = w.view(-1)[flat].item()
                w.view(-1)[flat] = original + eps
                up = model(x).gather(1, y[:, None]).squeeze(1)
                w.view(-1)[flat] = original - eps
                down = model(x).gather(1, y[:, None]).squeeze(1)
                w.view(-1)[flat] = original
            slope = (up - down) / (2 * eps)  # dz_y/dw per example
            expected = (slope * (original - init.mean)).abs().mean().item()
            assert scores.view(-1)[flat].item() == pytest.approx(expected, rel=1e-5, abs=1e-12)


def test_the_lowest_utility_mature_weights_are_redrawn_with_their_optimizer_state():
    model = small_mlp()
    x, y = batch()
    optimizer = SGD(list(model.parameters()), lr=0.1, momentum=0.9)
    # rate 0.05 of the head's 24 weights: 1.2 -> one weight of it on the first step.
    method = SelectiveWeightReinit(WEIGHT_UTILITIES.get("gradient"), optimizer,
                                   CBPConfig(0.05, maturity=0, decay=0.5),
                                   torch.Generator().manual_seed(3))  # fmt: skip
    step = MLPStep(model, method.needs)
    method.bind(step)
    step(x, y)
    optimizer.step(step.grads)
    before = [init.weight.detach().clone() for init in method.inits]
    momenta = [optimizer.state["momentum_buffer"][_position(step.params, i.weight)].clone()
               for i in method.inits]  # fmt: skip
    assert method.after_step(step.taps) == sum(int(0.05 * w.numel()) for w in before)
    for t, init in enumerate(method.inits):
        w, g = init.weight, step.grads[_position(step.params, init.weight)]
        k = int(0.05 * w.numel())
        score = (before[t] * g).abs().flatten().numpy()
        changed = np.flatnonzero((w != before[t]).flatten().numpy())
        kept = np.setdiff1d(np.arange(w.numel()), changed)
        # Exactly k re-drawn, none scoring above a kept one (ties, e.g. dead units' zero
        # gradients, may go either way).
        assert len(changed) == k and score[changed].max() <= score[kept].min()
        assert (w.flatten()[changed].abs() <= init.scale).all()
        momentum = optimizer.state["momentum_buffer"][_position(step.params, w)].flatten()
        assert (momentum[changed] == 0).all()
        assert torch.equal(momentum[kept], momenta[t].flatten()[kept])
    assert method.weight_counts() == [int(0.05 * w.numel()) for w in before]


def test_rate_zero_gives_bp_rows_bit_for_bit():
    measured = ("accuracy", "train_accuracy", "loss", "resets")
    bp = run(PermutedMNISTConfig(method="bp", **SMALL))
    swr = run(PermutedMNISTConfig(method="swr", replacement_rate=0.0, **SMALL))
    assert [[r[k] for k in measured] for r in swr] == [[r[k] for k in measured] for r in bp]


@pytest.mark.parametrize("utility", ["magnitude", "gxd_weight", "random"])
def test_swr_resets_weights_and_restores_bit_identically(utility):
    config = PermutedMNISTConfig(method="swr", utility=utility, replacement_rate=1e-3,
                                 maturity=20, **{**SMALL, "tasks": 3})  # fmt: skip
    uninterrupted, continued, _ = restored_at_a_boundary(run, config)
    assert sum(r["resets"] for r in uninterrupted) > 0
    assert continued == uninterrupted


def test_weight_inits_are_the_distributions_the_models_draw_from():
    mlp = MLP(784, (256, 256), 10, "relu", generator=torch.Generator().manual_seed(0))
    resnet = build_resnet("resnet8", 10, torch.Generator().manual_seed(0))
    inits = [*mlp.weight_inits(), *resnet.weight_inits()]
    assert len(inits) == 3 + sum(1 for m in resnet.modules() if isinstance(m, torch.nn.Conv2d)) + 1
    for init in inits:
        drawn = init.weight.detach().flatten().numpy()
        fresh = init.sample(len(drawn), torch.Generator().manual_seed(1)).numpy()
        # The model's own weights and fresh draws come from one distribution.
        assert stats.ks_2samp(drawn, fresh).pvalue > 1e-3, init.weight.shape


def test_swr_runs_on_a_resnet_and_gxd_weight_is_refused_there():
    config = dict(tasks=1, epochs_per_task=1, batch_size=50, method="swr",
                  replacement_rate=1e-3, maturity=5)  # fmt: skip
    rows = list(ContinuousCIFAR(ContinuousCIFARConfig(utility="magnitude", **config)))
    assert rows[0]["resets"] > 0
    with pytest.raises(ConfigError, match="hand-written step only"):
        ContinuousCIFAR(ContinuousCIFARConfig(utility="gxd_weight", **config))


def test_utilities_are_checked_against_the_methods_own_kind():
    with pytest.raises(ConfigError, match="unknown weight utility 'gxd'; choose from: magnitude"):
        PermutedMNISTConfig(method="swr", utility="gxd")
    with pytest.raises(ConfigError, match="unknown utility 'magnitude'"):
        PermutedMNISTConfig(method="cbp", utility="magnitude")
