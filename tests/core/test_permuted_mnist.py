"""Online Permuted MNIST: determinism, bit-exact resume, divergence, and what a task
permutes (pixels, labels or both), checked on the task's data against the split itself."""

import io

import pytest
import torch

from plasticity_core.data.mnist import load_mnist
from plasticity_core.data.permuted import task_label_permutation, task_permutation
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


def test_a_state_written_before_reset_optimizer_and_permute_existed_resumes_at_their_defaults():
    config = PermutedMNISTConfig(method="bp", **SMALL)
    uninterrupted = _strip(run(config))
    experiment = run(config)
    next(iter(experiment))
    state = experiment.state_dict()
    for name in ("reset_optimizer", "permute"):
        del state["config"][name]
    assert _strip(run(config, state)) == uninterrupted[1:]
    for changed in (dict(reset_optimizer=True), dict(permute="labels")):
        with pytest.raises(ConfigError, match="different configuration"):
            run(PermutedMNISTConfig(method="bp", **SMALL, **changed), state)


def _task_data(permute: str, task: int, seed: int = 0, permutation_seed: int = 0):
    """Task `task`'s (x_train, y_train, x_test, y_test) as the experiment trains on them."""
    experiment = run(PermutedMNISTConfig(method="bp", permute=permute, seed=seed,
                                         permutation_seed=permutation_seed, **SMALL))  # fmt: skip
    experiment.task = task
    data = experiment.start_task()
    return (*data.examples, data.x_test, data.y_test)


def _relabelling(y: torch.Tensor, relabelled: torch.Tensor) -> list[int]:
    """The map class -> new label read off the data; asserts it is one label per class."""
    mapping = []
    for c in range(10):
        (new,) = relabelled[y == c].unique().tolist()
        mapping.append(new)
    return mapping


def test_label_permuted_tasks_keep_the_pixels_and_relabel_every_class_by_a_permutation():
    split = load_mnist("embedded")
    maps = {}
    for task in (0, 1, 2):
        x_train, y_train, x_test, y_test = _task_data("labels", task)
        assert torch.equal(x_train, split.x_train) and torch.equal(x_test, split.x_test)
        maps[task] = _relabelling(split.y_train, y_train)
        assert sorted(maps[task]) == list(range(10))  # a permutation of the classes
        assert _relabelling(split.y_test, y_test) == maps[task]  # the test split's too
        assert maps[task] == task_label_permutation(task, 0).tolist()
    assert len({tuple(m) for m in maps.values()}) == 3  # each task its own
    assert maps[0] != list(range(10))  # task 0 is relabelled, as its pixels are permuted
    same_seed = _task_data("labels", 1, seed=5)[1]  # another training seed, same tasks
    assert _relabelling(split.y_train, same_seed) == maps[1]
    other = _task_data("labels", 1, permutation_seed=1)[1]
    assert _relabelling(split.y_train, other) != maps[1]


def test_input_permuted_tasks_are_todays_and_both_composes_pixels_and_labels():
    split = load_mnist("embedded")
    pixels = task_permutation(1, 0)
    labels = task_label_permutation(1, 0)
    x_train, y_train, x_test, y_test = _task_data("inputs", 1)
    assert torch.equal(x_train, split.x_train[:, pixels]) and torch.equal(y_train, split.y_train)
    assert torch.equal(x_test, split.x_test[:, pixels]) and torch.equal(y_test, split.y_test)
    x_train, y_train, x_test, y_test = _task_data("both", 1)
    assert torch.equal(x_train, split.x_train[:, pixels])
    assert torch.equal(x_test, split.x_test[:, pixels])
    assert _relabelling(split.y_train, y_train) == labels.tolist()
    assert _relabelling(split.y_test, y_test) == labels.tolist()


def test_a_label_permuted_run_learns_and_its_accuracy_drops_at_a_boundary():
    """Trained on task 0, the network knows its labels (chance is 0.1) and not task 1's:
    the same digits under task 1's labels are a new task."""
    split = load_mnist("embedded")
    experiment = run(PermutedMNISTConfig(method="bp", permute="labels", tasks=2,
                                         hidden=(64,), lr=0.1, probe_size=0))  # fmt: skip
    rows = iter(experiment)
    task0 = next(rows)["accuracy"]
    on_task1 = experiment.evaluate(split.x_test, task_label_permutation(1, 0)[split.y_test])
    assert task0 > 0.5
    assert on_task1 < task0 - 0.4
    assert next(rows)["accuracy"] > 0.5  # and it learns task 1 in turn
