"""UPGD: with zero utility and no noise a step is plain SGD bit for bit, two steps match a
hand-worked scalar computation, more useful weights move less, bad values are refused, it
learns Permuted MNIST, and a run restored at a task boundary continues bit for bit."""

import math

import pytest
import torch

from plasticity_core.errors import ConfigError
from plasticity_core.experiments.permuted_mnist import PermutedMNIST as run
from plasticity_core.experiments.permuted_mnist import PermutedMNISTConfig
from plasticity_core.optim import SGD
from plasticity_core.upgd import UtilityPerturbedGD
from tests.core.helpers import restored_at_a_boundary

SMALL = dict(tasks=2, hidden=(32, 32), batch_size=32, probe_size=300)


def _step(method, params, grads, lr: float) -> None:
    """One training-loop step: the method's hook, then the project's plain SGD."""
    method.before_step(params, grads)
    SGD(params, lr).step(grads)


@pytest.mark.parametrize("decay", [0.0, 0.9, 0.9999])
def test_zero_utility_without_noise_steps_exactly_as_sgd(decay):
    # All-zero weights make every first utility -g * 0 = 0, whatever the gradient: the gate
    # is 2 * (1 - sigmoid(0)) = 1.
    gen = torch.Generator().manual_seed(0)
    params = [torch.zeros(5, 4), torch.zeros(5)]
    grads = [torch.randn(p.shape, generator=gen) for p in params]
    expected = [p - 0.05 * g for p, g in zip(params, grads, strict=True)]
    method = UtilityPerturbedGD(params, decay, noise=0.0, weight_decay=0.0, generator=gen)
    _step(method, params, grads, lr=0.05)
    for p, e in zip(params, expected, strict=True):
        assert torch.equal(p, e)


def _hand_worked(w, gs, noises, lr, beta, kappa) -> list[float]:
    """UPGD on a flat list of scalars in plain Python (the README rule, step by step)."""
    w, trace = list(w), [0.0] * len(w)
    for t, (g, xi) in enumerate(zip(gs, noises, strict=True), start=1):
        trace = [beta * u + (1 - beta) * -gi * wi for u, gi, wi in zip(trace, g, w, strict=True)]
        eta = max(trace)
        correction = 1 - beta**t
        scaled = [1 / (1 + math.exp(-(u / correction) / eta)) for u in trace]
        w = [
            wi * (1 - lr * kappa) - 2 * lr * (gi + n) * (1 - s)
            for wi, gi, n, s in zip(w, g, xi, scaled, strict=True)
        ]
    return w


def test_two_steps_match_a_hand_worked_three_weight_case():
    lr, beta, sigma, kappa = 0.1, 0.5, 0.1, 0.01
    weight = torch.tensor([0.5, -2.0], dtype=torch.double)
    bias = torch.tensor([0.5], dtype=torch.double)
    # Per step: (weight gradient, bias gradient); the first step's utilities are -0.2, 0.2
    # and 0.4, so the bias holds the global max the weight's gate is scaled by.
    steps = [([0.4, 0.1], [-0.8]), ([-0.2, 0.3], [0.6])]
    # The noise the method draws: N(0, sigma^2) from the run's generator, weight then bias.
    twin = torch.Generator().manual_seed(7)
    noises = []
    for _ in steps:
        xi_w = torch.empty(2, dtype=torch.double).normal_(0, sigma, generator=twin)
        xi_b = torch.empty(1, dtype=torch.double).normal_(0, sigma, generator=twin)
        noises.append(xi_w.tolist() + xi_b.tolist())
    expected = _hand_worked([0.5, -2.0, 0.5], [gw + gb for gw, gb in steps], noises, lr,
                            beta, kappa)  # fmt: skip
    params = [weight, bias]
    method = UtilityPerturbedGD(params, beta, sigma, kappa, torch.Generator().manual_seed(7))
    for g_w, g_b in steps:
        grads = [torch.tensor(g_w, dtype=torch.double), torch.tensor(g_b, dtype=torch.double)]
        _step(method, params, grads, lr)
    assert max(abs(n) for xi in noises for n in xi) > 0.01  # the noise takes part
    torch.testing.assert_close(torch.cat(params), torch.tensor(expected, dtype=torch.double),
                               rtol=0, atol=1e-12)  # fmt: skip


def test_more_useful_weights_move_less():
    # Equal gradients, utilities -g * w = 2, 1, 0, -1: the step shrinks as utility grows, and
    # stays between 0 and twice SGD's step.
    weight = torch.tensor([2.0, 1.0, 0.0, -1.0], dtype=torch.double)
    start = weight.clone()
    method = UtilityPerturbedGD([weight], 0.0, 0.0, 0.0, torch.Generator())
    _step(method, [weight], [torch.full_like(weight, -1.0)], lr=0.1)
    moved = (weight - start).abs().tolist()
    assert moved == sorted(moved) and len(set(moved)) == 4
    assert 0 < moved[0] and moved[-1] < 2 * 0.1
    assert moved[2] == pytest.approx(0.1, abs=1e-15)  # zero utility: SGD's step


def test_the_noise_is_gated_too():
    # Half the weights useful (utility 1), half harmful (-1), under noise much larger than the
    # gradient: the useful half's perturbation spreads less.
    n = 2000
    weight = torch.ones(n, dtype=torch.double)
    grad = torch.cat([-torch.ones(n // 2), torch.ones(n // 2)]).double()
    start = weight.clone()
    method = UtilityPerturbedGD([weight], 0.0, 1.0, 0.0, torch.Generator().manual_seed(0))
    _step(method, [weight], [grad], lr=0.1)
    moved = weight - start
    useful, harmful = moved[: n // 2].std(), moved[n // 2 :].std()
    assert useful < 0.5 * harmful


@pytest.mark.parametrize(
    "bad",
    [
        dict(upgd_decay=1.0),
        dict(upgd_decay=-0.1),
        dict(upgd_noise=-1.0),
        dict(upgd_noise=math.nan),
        dict(upgd_weight_decay=math.inf),
        dict(optimizer="adam", lr=1e-3),
        dict(momentum=0.9),
    ],
)
def test_bad_values_are_config_errors(bad):
    with pytest.raises(ConfigError, match="upgd"):
        PermutedMNISTConfig(method="upgd", **bad)


def test_other_methods_keep_any_optimizer():
    PermutedMNISTConfig(method="bp", optimizer="adam", lr=1e-3)
    PermutedMNISTConfig(method="bp", momentum=0.9)


def test_it_learns_permuted_mnist_and_differs_from_bp():
    rows = list(run(PermutedMNISTConfig(method="upgd", **SMALL)))
    bp = list(run(PermutedMNISTConfig(method="bp", **SMALL)))
    assert len(rows) == 2 and all(r["accuracy"] > 0.3 for r in rows)  # chance: 0.1
    assert [r["loss"] for r in rows] != [r["loss"] for r in bp]


def test_restore_at_a_task_boundary_continues_bit_identically():
    config = PermutedMNISTConfig(method="upgd", **{**SMALL, "tasks": 3})
    uninterrupted, continued, state = restored_at_a_boundary(run, config)
    assert state["method"]["steps"] == 2 * 4000 // 32
    assert len(state["method"]["utility"]) == 6  # three weights and three biases
    assert continued == uninterrupted
