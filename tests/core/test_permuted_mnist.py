"""Online Permuted MNIST: determinism, bit-exact resume, divergence."""

import io

import pytest
import torch

from plasticity_core.errors import ConfigError, TrainingDiverged
from plasticity_core.experiments.permuted_mnist import PermutedMNIST, PermutedMNISTConfig

run = PermutedMNIST

SMALL = dict(tasks=4, hidden=(32, 32), batch_size=32, maturity=20, replacement_rate=0.01)


def _strip(rows):
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]


@pytest.mark.parametrize("method,utility", [("cbp", "gxd"), ("shrink_perturb", "")])
def test_same_seed_gives_identical_rows(method, utility):
    config = PermutedMNISTConfig(method=method, utility=utility, **SMALL)
    first, second = list(run(config)), list(run(config))
    assert _strip(first) == _strip(second)
    assert [r["task"] for r in first] == [0, 1, 2, 3]
    other = list(run(PermutedMNISTConfig(method=method, utility=utility, seed=1, **SMALL)))
    assert _strip(other) != _strip(first)


@pytest.mark.parametrize("optimizer,momentum", [("sgd", 0.9), ("adam", 0.0)])
def test_restore_at_a_task_boundary_continues_bit_identically(optimizer, momentum):
    config = PermutedMNISTConfig(
        method="cbp",
        utility="gxd",
        optimizer=optimizer,
        momentum=momentum,
        lr=0.01 if optimizer == "sgd" else 1e-3,
        **SMALL,
    )
    uninterrupted = _strip(run(config))

    experiment = run(config)
    head = [next(iter(experiment)) for _ in range(2)]
    buffer = io.BytesIO()
    torch.save(experiment.state_dict(), buffer)
    del experiment
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    tail = list(run(config, state))

    assert _strip(head) == uninterrupted[:2]
    assert _strip(tail) == uninterrupted[2:]
    assert sum(r["resets"] for r in uninterrupted) > 0  # the CBP state really mattered


def test_a_state_kept_in_memory_is_a_snapshot_not_a_view():
    config = PermutedMNISTConfig(method="cbp", utility="gxd", **SMALL)
    uninterrupted = _strip(run(config))
    experiment = run(config)
    rows = iter(experiment)
    next(rows)
    state = experiment.state_dict()
    next(rows)  # keeps training after the snapshot was taken
    assert _strip(run(config, state)) == uninterrupted[1:]


def test_restore_refuses_a_checkpoint_from_another_configuration():
    experiment = run(PermutedMNISTConfig(method="bp", **SMALL))
    next(iter(experiment))
    with pytest.raises(ConfigError, match="different configuration"):
        PermutedMNIST(
            PermutedMNISTConfig(method="bp", **{**SMALL, "lr": 0.5}), experiment.state_dict()
        )


def test_rows_report_learning_and_resets():
    rows = list(run(PermutedMNISTConfig(method="cbp", utility="contribution", **SMALL)))
    assert all(0 <= r["accuracy"] <= 1 and 0 <= r["train_accuracy"] <= 1 for r in rows)
    assert rows[-1]["accuracy"] > 0.3  # 10 classes: chance is 0.1
    assert [r["examples_seen"] for r in rows] == [4000, 8000, 12000, 16000]
    assert sum(r["resets"] for r in rows) > 0
    assert len({r["config_hash"] for r in rows}) == 1


def test_the_permutation_stream_does_not_depend_on_the_method():
    """Same seeds -> same tasks and order: at task 0 bp and cbp see identical batches."""
    bp = next(iter(run(PermutedMNISTConfig(method="bp", **{**SMALL, "tasks": 1}))))
    cbp = next(
        iter(run(PermutedMNISTConfig(method="cbp", **{**SMALL, "tasks": 1, "maturity": 10_000})))
    )
    assert bp["accuracy"] == cbp["accuracy"] and bp["loss"] == cbp["loss"]


def test_divergence_raises_a_clear_error():
    with pytest.raises(TrainingDiverged, match="task 0.*lower the learning rate"):
        list(run(PermutedMNISTConfig(method="bp", lr=1e6, **SMALL)))
