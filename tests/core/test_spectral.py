"""Spectral regularisation: the gradient it adds is autograd's gradient of the penalty with
the exact sigma_max, strength 0 is bp, it pulls every layer's sigma_max toward 1, and a run
restored at a task boundary continues bit for bit."""

import pytest
import torch

from plasticity_core.experiments.permuted_mnist import PermutedMNIST as run
from plasticity_core.experiments.permuted_mnist import PermutedMNISTConfig
from plasticity_core.spectral import SpectralRegularization
from tests.core.helpers import restored_at_a_boundary

SMALL = dict(tasks=3, hidden=(32, 32), batch_size=32, probe_size=300)


def _penalty(w: torch.Tensor, strength: float) -> torch.Tensor:
    """strength * (sigma_max^2 - 1)^2 with the exact sigma_max of w as [out, rest]."""
    return strength * (torch.linalg.matrix_norm(w.flatten(1), ord=2) ** 2 - 1) ** 2


@pytest.mark.parametrize("shape", [(20, 30), (8, 3, 3, 3)])
def test_the_added_gradient_is_autograds_gradient_of_the_exact_penalty(shape):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(shape, generator=g, dtype=torch.double) / 4
    grads = [torch.zeros_like(w)]
    SpectralRegularization([w], strength=0.3, iterations=200).before_step([w], grads)
    leaf = w.clone().requires_grad_()
    (expected,) = torch.autograd.grad(_penalty(leaf, 0.3), leaf)
    assert torch.linalg.matrix_norm(w.flatten(1), ord=2) > 1.5  # a penalty with a slope
    torch.testing.assert_close(grads[0], expected, rtol=1e-4, atol=1e-4 * expected.abs().max())


def test_zero_strength_gives_bp_rows_bit_for_bit():
    bp = list(run(PermutedMNISTConfig(method="bp", **SMALL)))
    zero = list(run(PermutedMNISTConfig(method="spectral", spectral_strength=0.0, **SMALL)))
    for key in ("accuracy", "loss", "weight_magnitude", "effective_rank", "stable_rank"):
        assert [r[key] for r in zero] == [r[key] for r in bp], key


def test_a_short_run_keeps_every_layers_sigma_max_closer_to_one_than_bp():
    def distances(method: str) -> list[float]:
        experiment = run(PermutedMNISTConfig(method=method, spectral_strength=1e-2, **SMALL))
        rows = list(experiment)
        assert rows[-1]["accuracy"] > 0.5  # the penalty leaves the tasks learnable
        weights = [p.detach() for p in experiment.model.parameters() if p.ndim >= 2]
        return [abs(float(torch.linalg.matrix_norm(w, ord=2)) - 1) for w in weights]

    bp, spectral = distances("bp"), distances("spectral")
    assert all(s < b for s, b in zip(spectral, bp, strict=True)), (spectral, bp)


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.01), ("adam", 1e-3)])
def test_restore_at_a_task_boundary_continues_bit_identically(optimizer, lr):
    config = PermutedMNISTConfig(
        method="spectral", spectral_strength=1e-2, optimizer=optimizer, lr=lr, **SMALL
    )
    uninterrupted, continued, state = restored_at_a_boundary(run, config)
    assert len(state["method"]["left"]) == 3  # two hidden layers and the head
    assert continued == uninterrupted
