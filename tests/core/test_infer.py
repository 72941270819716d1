"""InFeR: the gradient it adds (and its heads' SGD step) is autograd's gradient of the
written-out auxiliary loss, the loss is exactly 0 at step 0 and strength 0 is bp, the
features keep the initial outputs linearly readable where bp's lose them, a run restored at
a task boundary continues bit for bit, it runs on a ResNet (BatchNorm statistics untouched)
and through the CLI, and bad values are ConfigErrors."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from plasticity_core.errors import ConfigError
from plasticity_core.experiments.continuous_cifar import ContinuousCIFAR, ContinuousCIFARConfig
from plasticity_core.experiments.permuted_mnist import PermutedMNIST as run
from plasticity_core.experiments.permuted_mnist import PermutedMNISTConfig, _task_split
from plasticity_core.infer import InitialFeatureRegularization
from plasticity_core.models import MLP
from plasticity_core.models.resnet import build_resnet
from runner.cli import main
from tests.core.helpers import restored_at_a_boundary

SMALL = dict(tasks=3, hidden=(32, 32), batch_size=32, probe_size=0)


def _mlp_features(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """phi(x) of a 2-hidden-layer ReLU MLP written out: params = w1, b1, w2, b2, head."""
    w1, b1, w2, b2 = params[:4]
    return F.relu(F.relu(x @ w1.T + b1) @ w2.T + b2)


def test_added_gradient_and_head_step_are_autograds_of_the_written_out_loss():
    gen = torch.Generator().manual_seed(0)
    model = MLP(8, (6, 5), 3, generator=gen).double()
    x = torch.randn(7, 8, generator=gen, dtype=torch.double)
    initial = [p.detach().clone() for p in model.parameters()]
    method = InitialFeatureRegularization(0.7, heads=4, scale=3.0, lr=0.1, generator=gen)
    draws = torch.Generator().set_state(gen.get_state())
    method.bind(SimpleNamespace(model=model, batch=(x, None)))
    # The heads: 3 x a Kaiming-uniform (gain 1) draw from the run's generator, zero bias.
    bound = 3.0 * math.sqrt(3 / 5)
    drawn = torch.empty(4, 5, dtype=torch.double).uniform_(-bound, bound, generator=draws)
    torch.testing.assert_close(method.initial_weight, drawn, rtol=0, atol=0)
    with torch.no_grad():  # move network and heads away from step 0: a loss with a slope
        for p in [*model.parameters(), method.weight, method.bias]:
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    params = list(model.parameters())
    task = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    grads = [t.clone() for t in task]
    leaves = [t.detach().clone().requires_grad_() for t in [*params, method.weight, method.bias]]
    w, b = leaves[-2:]
    target = _mlp_features(initial, x) @ drawn.T  # the initial heads' bias is zero
    loss = 0.7 * (_mlp_features(leaves, x) @ w.T + b - target).square().mean()
    expected = torch.autograd.grad(loss, leaves, allow_unused=True)
    assert loss > 1e-3

    method.before_step(params, grads)
    for i, (g, t, e) in enumerate(zip(grads, task, expected[:-2], strict=True)):
        torch.testing.assert_close(g, t if e is None else t + e, msg=f"parameter {i}")
    assert expected[4] is None and expected[5] is None, "the output head does not shape phi"
    torch.testing.assert_close(method.weight, w.detach() - 0.1 * expected[-2])
    torch.testing.assert_close(method.bias, b.detach() - 0.1 * expected[-1])


def test_aux_loss_is_exactly_zero_at_step_zero_and_zero_strength_is_bp():
    experiment = run(PermutedMNISTConfig(method="infer", **SMALL))
    x, y = experiment.x_train[:32], experiment.y_train[:32]
    step, method = experiment.step, experiment.method
    assert method.loss(step.params, x).item() == 0.0
    step(x, y)
    before = [g.clone() for g in step.grads]
    method.before_step(step.params, step.grads)
    assert all(torch.equal(a, b) for a, b in zip(before, step.grads, strict=True))

    bp = list(run(PermutedMNISTConfig(method="bp", **SMALL)))
    zero = list(run(PermutedMNISTConfig(method="infer", infer_strength=0.0, **SMALL)))
    for key in ("accuracy", "loss"):
        assert [r[key] for r in zero] == [r[key] for r in bp], key


def _relative_probe_error(features: torch.Tensor, target: torch.Tensor) -> float:
    """Held-out error of the ridge regression of `target` [N, k] on [features, 1], fit on
    the first half, relative to the second half's variance (1 = no better than its mean)."""
    a = torch.cat([features, torch.ones(len(features), 1)], 1).double()
    t, n = target.double(), len(features) // 2
    ridge = 1e-3 * n * torch.eye(a.shape[1], dtype=a.dtype)
    solution = torch.linalg.solve(a[:n].T @ a[:n] + ridge, a[:n].T @ t[:n])
    held_out = t[n:] - a[n:] @ solution
    return float(held_out.square().sum() / (t[n:] - t[n:].mean(0)).square().sum())


def test_features_keep_the_initial_outputs_readable_where_bps_drift_away():
    config = dict(SMALL, hidden=(64, 64), batch_size=64, lr=0.05)
    infer = run(PermutedMNISTConfig(method="infer", **config))
    bp = run(PermutedMNISTConfig(method="bp", **config))  # the same initial network
    assert all(r["accuracy"] > 0.5 for r in list(infer)), "the tasks stay learnable"
    list(bp)
    method = infer.method
    w0, b0 = method.initial_weight, method.initial_bias
    x = _task_split("embedded", torch.device("cpu"), SMALL["tasks"] - 1, 0, "inputs").x_train
    with torch.no_grad():  # on the last task's inputs
        features = {e: method.features(list(e.model.parameters()), x) for e in (infer, bp)}
        target = torch.addmm(b0, method.features(method.initial, x), w0.T)
        variance = target.var(0, correction=0).mean()
        # L_aux / beta, relative: InFeR's with its SGD-trained heads; bp's (no heads of its
        # own) with the initial heads, i.e. what its features' drift costs the same loss.
        own = method.loss(list(infer.model.parameters()), x) / method.strength / variance
        drift = (torch.addmm(b0, features[bp], w0.T) - target).square().mean() / variance
    assert own < 0.05 * drift, (own, drift)  # measured: 0.46 against 36
    # The best linear read-out of the initial outputs (ridge, held out) from the features.
    probe = {e: _relative_probe_error(f, target) for e, f in features.items()}
    assert probe[infer] < 0.8 * probe[bp], (probe[infer], probe[bp])  # measured: 0.28, 0.38


def test_restore_at_a_task_boundary_continues_bit_identically():
    config = PermutedMNISTConfig(method="infer", optimizer="adam", lr=1e-3, **SMALL)
    initial = [p.detach().clone() for p in run(config).model.parameters()]
    uninterrupted, continued, state = restored_at_a_boundary(run, config)
    torch.testing.assert_close(state["method"]["initial"], initial, rtol=0, atol=0)
    assert not torch.equal(state["method"]["heads"][0], state["method"]["initial_heads"][0])
    assert continued == uninterrupted


def test_resnet_steps_leave_batchnorm_statistics_and_match_autograd_of_its_features():
    config = ContinuousCIFARConfig(tasks=1, epochs_per_task=1, batch_size=20, method="infer")
    experiment = ContinuousCIFAR(config)
    step, method, model = experiment.step, experiment.method, experiment.model
    task = experiment.begin_task()
    batches = iter(task.minibatches())
    for _ in range(3):  # the run's own loop, a few steps in
        step(*next(batches))
        method.before_step(step.params, step.grads)
        experiment.optimizer.step(step.grads)
    x, y = next(batches)
    step(x, y)
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    task_grads = [g.clone() for g in step.grads]
    heads = method.weight.clone(), method.bias.clone()
    method.before_step(step.params, step.grads)
    assert all(torch.equal(b, buffers[k]) for k, b in model.named_buffers())

    initial = build_resnet("resnet8", 2)  # the initial network, via the model's own features()
    initial.load_state_dict(dict(zip([n for n, _ in model.named_parameters()], method.initial,
                                     strict=True)), strict=False)  # fmt: skip
    params = list(model.parameters())
    with torch.no_grad():
        target = torch.addmm(method.initial_bias, initial.features(x), method.initial_weight.T)
    out = torch.addmm(heads[1], model.features(x), heads[0].T)
    loss = method.strength * (out - target).square().mean()
    expected = torch.autograd.grad(loss, params, allow_unused=True)
    assert loss > 0
    for g, t, e in zip(step.grads, task_grads, expected, strict=True):
        torch.testing.assert_close(g, t if e is None else t + e, rtol=1e-4, atol=1e-6)
    assert math.isfinite(experiment.evaluate(task.x_test, task.y_test))


def test_cli_run_and_bad_values(tmp_path, capsys):
    base = ["run", "permuted-mnist", "--tasks", "1", "--hidden", "16", "--probe-size", "0"]
    assert main([*base, "--method", "infer", "--infer-heads", "3", "--out", str(tmp_path)]) == 0
    assert list(tmp_path.rglob("*.parquet"))
    for args, message in [
        (["--infer-strength", "-1"], "infer_strength must be a finite number >= 0"),
        (["--infer-heads", "0"], "infer_heads must be >= 1"),
        (["--infer-scale", "0"], "infer_scale must be a finite number > 0"),
    ]:
        capsys.readouterr()
        assert main([*base, "--method", "infer", *args, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    with pytest.raises(ConfigError, match="infer_scale"):
        PermutedMNISTConfig(method="infer", infer_scale=math.inf)
