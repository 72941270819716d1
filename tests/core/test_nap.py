"""Normalize-and-project: every normalised layer's weights keep their initial norm after
every step (SGD and Adam, MLP and ResNet) while the head is left free, the rows differ from
bp's, an unnormalised network is refused, and a run restored at a task boundary continues
bit for bit."""

import pytest
import torch

from plasticity_core.errors import ConfigError
from plasticity_core.experiments.continuous_cifar import ContinuousCIFAR, ContinuousCIFARConfig
from plasticity_core.experiments.permuted_mnist import PermutedMNIST as run
from plasticity_core.experiments.permuted_mnist import PermutedMNISTConfig
from plasticity_core.models import MLP
from plasticity_core.nap import check_normalised
from tests.core.helpers import restored_at_a_boundary

SMALL = dict(tasks=2, hidden=(16, 16), batch_size=32, probe_size=0, norm="layer")


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """The weights NaP holds: those whose outputs are normalised (unit layers with a norm)."""
    return [layer.incoming.weight for layer in model.unit_layers() if layer.norm is not None]


def _check_norms_after_every_step(experiment) -> list[int]:
    """Wrap the method's after_step to compare each weight's norm with the norm it had
    before the first step; returns [steps checked]."""
    initial = [w.detach().norm().item() for w in _weights(experiment.model)]
    method, steps = experiment.method, [0]
    after_step = method.after_step

    def checked(taps):
        resets = after_step(taps)
        now = [w.detach().norm().item() for w in _weights(experiment.model)]
        assert now == pytest.approx(initial, rel=1e-6)
        steps[0] += 1
        return resets

    method.after_step = checked
    return steps


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.05), ("adam", 1e-3)])
def test_every_weight_keeps_its_initial_norm_after_every_step(optimizer, lr):
    experiment = run(PermutedMNISTConfig(method="nap", optimizer=optimizer, lr=lr, **SMALL))
    steps = _check_norms_after_every_step(experiment)
    head = experiment.model.head.weight.detach().norm().item()
    rows = list(experiment)
    assert steps[0] == 2 * 4000 // 32 and rows[-1]["accuracy"] > 0.5
    assert len(_weights(experiment.model)) == 2, "both hidden layers are projected"
    assert experiment.model.head.weight.norm().item() != pytest.approx(head, rel=1e-3)


def test_resnet_conv_kernels_keep_their_initial_norm_after_every_step():
    config = ContinuousCIFARConfig(tasks=1, epochs_per_task=1, batch_size=50, method="nap")
    experiment = ContinuousCIFAR(config)
    steps = _check_norms_after_every_step(experiment)
    list(experiment)
    assert steps[0] > 0 and any(w.ndim == 4 for w in _weights(experiment.model))


def test_nap_rows_differ_from_bp():
    bp = list(run(PermutedMNISTConfig(method="bp", **SMALL)))
    nap = list(run(PermutedMNISTConfig(method="nap", **SMALL)))
    assert [r["loss"] for r in nap] != [r["loss"] for r in bp]


def test_an_unnormalised_network_is_refused():
    with pytest.raises(ConfigError, match="--norm layer"):
        PermutedMNISTConfig(method="nap", norm="none")
    with pytest.raises(ConfigError, match="nap needs normalised"):
        check_normalised(MLP(8, (4,), 2).unit_layers())
    check_normalised(MLP(8, (4,), 2, norm="layer").unit_layers())


def test_restore_at_a_task_boundary_continues_bit_identically():
    config = PermutedMNISTConfig(method="nap", optimizer="adam", lr=1e-3, **{**SMALL, "tasks": 3})
    initial = [w.detach().norm() for w in _weights(run(config).model)]
    uninterrupted, continued, state = restored_at_a_boundary(run, config)
    torch.testing.assert_close(state["method"]["radii"], initial, rtol=0, atol=0)
    assert continued == uninterrupted
