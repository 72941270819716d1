"""`reset_optimizer`: at every task boundary after the first, the optimizer state (SGD
momentum; Adam's moments and bias corrections) is zero, as a fresh optimizer's, and nothing
else changes; a pack clears each run's part of its shared state. The independent
computations: the state tensors themselves, a run continued from a checkpoint whose
optimizer state was zeroed by hand, and the runs alone for a pack."""

import pytest
import torch

from plasticity_core.experiments.continuous_cifar import ContinuousCIFAR, ContinuousCIFARConfig
from plasticity_core.experiments.permuted_mnist import PermutedMNIST, PermutedMNISTConfig
from plasticity_core.packed.loop import PackedLoop

SMALL = dict(tasks=3, hidden=(16,), probe_size=0)
OPTIMIZERS = {
    "sgd-momentum": dict(optimizer="sgd", lr=0.01, momentum=0.9),
    "adam": dict(optimizer="adam", lr=1e-3),
}
STATE_KEYS = {
    "sgd-momentum": {"momentum_buffer"},
    "adam": {"exp_avg", "exp_avg_sq", "correction1", "correction2"},
}
MEASURED = ("accuracy", "train_accuracy", "loss", "resets", "examples_seen")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _is_zero(optimizer) -> bool:
    return all(not t.any() for tensors in optimizer.state.values() for t in tensors)


def _spy_first_steps(loop) -> dict[int, bool]:
    """Task -> whether the optimizer state of `loop` (a run, or a pack) was all zero when
    that task's first step began (its step wrapped, so the loop runs as it does)."""
    optimizer, step, seen = loop.optimizer, loop.optimizer.step, {}

    def spied(grads):
        seen.setdefault(loop.task, _is_zero(optimizer))
        step(grads)

    optimizer.step = spied
    return seen


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("reset", [True, False])
def test_the_state_is_zero_right_after_each_boundary_and_not_before(name, reset):
    config = PermutedMNISTConfig(method="bp", reset_optimizer=reset, **SMALL, **OPTIMIZERS[name])
    loop = PermutedMNIST(config)
    assert set(loop.optimizer.state) == STATE_KEYS[name]  # there is state to clear
    first_steps = _spy_first_steps(loop)
    zero_at_task_end = [_is_zero(loop.optimizer) for _ in loop]
    assert zero_at_task_end == [False, False, False]  # before each boundary: state
    assert first_steps == {0: True, 1: reset, 2: reset}  # after it: zero iff reset


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_reset_is_the_run_continued_with_its_optimizer_state_zeroed(name):
    """Task 0 is untouched; task 1 is what a run without the reset gives from task 0's
    checkpoint with every optimizer state tensor zeroed by hand (CBP's resets and ages
    carry over in both)."""
    changes = dict(SMALL, tasks=2, utility="gxd", replacement_rate=0.02, maturity=10)
    reset = list(PermutedMNIST(PermutedMNISTConfig(reset_optimizer=True, **changes,
                                                   **OPTIMIZERS[name])))  # fmt: skip
    kept = PermutedMNISTConfig(reset_optimizer=False, **changes, **OPTIMIZERS[name])
    first = PermutedMNIST(kept)
    task0 = next(iter(first))
    state = first.state_dict()
    state["optimizer"] = {k: [t.zero_() for t in v] for k, v in state["optimizer"].items()}
    (task1,) = list(PermutedMNIST(kept, state))
    untouched = next(iter(PermutedMNIST(kept, first.state_dict())))
    for column in MEASURED:
        assert reset[0][column] == task0[column], column
        assert reset[1][column] == task1[column], column
    assert reset[1]["loss"] != untouched["loss"]  # the reset mattered
    assert reset[1]["resets"] > 0


def _stable(row: dict) -> dict:
    return {k: "NaN" if v != v else v for k, v in row.items() if not k.endswith("seconds")}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_packed_pair_with_the_reset_gives_the_rows_of_its_runs_alone(name):
    configs = [PermutedMNISTConfig(method="bp", reset_optimizer=True, seed=s, **SMALL,
                                   **OPTIMIZERS[name]) for s in (0, 1)]  # fmt: skip
    pack = PackedLoop(PermutedMNIST, configs)
    first_steps = _spy_first_steps(pack)
    rows = [[_stable(r) for r in task] for task in pack]
    assert first_steps == {0: True, 1: True, 2: True}  # the pack's own state, every run's
    for i, config in enumerate(configs):
        assert [task[i] for task in rows] == [_stable(r) for r in PermutedMNIST(config)]


def test_continuous_cifar_clears_the_optimizer_by_default_and_keeps_it_when_asked():
    """The paper's protocol clears the state with the head; --no-reset-optimizer keeps it."""
    base = dict(tasks=2, epochs_per_task=1, batch_size=100, method="bp")
    assert ContinuousCIFARConfig().reset_optimizer
    for reset in (True, False):
        loop = ContinuousCIFAR(ContinuousCIFARConfig(reset_optimizer=reset, **base))
        first_steps = _spy_first_steps(loop)
        list(loop)
        assert first_steps == {0: True, 1: reset}
