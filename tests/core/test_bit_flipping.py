"""The slowly-changing regression data: target thresholds and outputs against hand-worked
and plain-loop references, the slow/fast bit schedule of both modes, seeds, exact resume."""

import hashlib

import numpy as np
import pytest
import torch

from plasticity_core.data.bit_flipping import (
    BitFlipping,
    SlowlyChangingStream,
    ltu_thresholds,
)
from plasticity_core.errors import ConfigError, DataError

SMALL = dict(flip_every=64)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _stream(seed: int = 0, **problem) -> SlowlyChangingStream:
    return SlowlyChangingStream(BitFlipping(**{**SMALL, **problem}),
                                torch.Generator().manual_seed(seed))  # fmt: skip


def _periods(stream: SlowlyChangingStream, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [stream.period() for _ in range(n)]


def test_thresholds_and_outputs_match_a_hand_worked_case():
    # 4 inputs (3 bits + bias), beta 0.7: theta = 2.8 - S.
    weights = torch.tensor([[1.0, 1, 1, 1], [-1, 1, -1, 1], [-1, -1, -1, -1]])
    assert torch.allclose(ltu_thresholds(weights, 0.7), torch.tensor([2.8, 0.8, -1.2]))
    stream = _stream(bits=3, slow_bits=1, target_hidden=3, flip_every=4)
    stream.load_state_dict({**stream.state_dict(), "weights": weights,
                            "thresholds": ltu_thresholds(weights, 0.7),
                            "output": torch.tensor([1.0, -1, 1])})  # fmt: skip
    x = torch.tensor([[1.0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]])
    # sums (4, 0, -4): unit 0 fires, y = 1; (2, 2, -2): unit 1, y = -1; (1, 1, -1): units 1, 2.
    assert stream.target(x).tolist() == [1.0, -1.0, 0.0]


def test_a_unit_needs_strictly_more_than_its_threshold():
    weights = torch.ones(1, 4)  # beta 0.5: theta = 2, a sum of exactly 2 does not fire
    stream = _stream(bits=3, slow_bits=1, target_hidden=1, flip_every=4, beta=0.5)
    stream.load_state_dict({**stream.state_dict(), "weights": weights,
                            "thresholds": ltu_thresholds(weights, 0.5),
                            "output": torch.ones(1)})  # fmt: skip
    assert stream.target(torch.tensor([[1.0, 0, 0, 1], [1, 1, 0, 1]])).tolist() == [0.0, 1.0]


def _plain_target(x: np.ndarray, weights: np.ndarray, output: np.ndarray, beta: float):
    """y by loops over examples and units, thresholds counted from the weights."""
    ys = []
    for row in x:
        y = 0.0
        for w, v in zip(weights, output, strict=True):
            negatives = sum(1 for wj in w if wj < 0)
            theta = beta * len(w) - negatives
            total = sum(float(wj) * float(xj) for wj, xj in zip(w, row, strict=True))
            y += float(v) * (1.0 if total > theta else 0.0)
        ys.append(y)
    return np.array(ys)


@pytest.mark.parametrize(
    "problem",
    [dict(), dict(bits=12, slow_bits=2, target_hidden=30, beta=0.6)],
    ids=["tabulated-32-patterns", "every-example-1024-patterns"],
)
def test_y_matches_a_plain_loop_over_the_units(problem):
    stream = _stream(seed=3, **problem)
    state = stream.state_dict()
    w, v = state["weights"].numpy(), state["output"].numpy()
    beta = stream.problem.beta
    assert set(np.unique(w)) == {-1.0, 1.0} and set(np.unique(v)) == {-1.0, 1.0}
    for x, y in _periods(stream, 2):
        assert np.array_equal(y[:40].numpy(), _plain_target(x[:40].numpy(), w, v, beta))
        assert torch.equal(y, stream.target(x))  # the lookup gives the direct evaluation


def test_period_shapes_dtypes_and_bit_values():
    stream = SlowlyChangingStream(BitFlipping(), torch.Generator().manual_seed(0))
    assert stream.n_inputs == 21
    x, y = stream.period()
    assert x.shape == (10_000, 21) and y.shape == (10_000,)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    assert set(x[:, :20].unique().tolist()) == {0.0, 1.0}
    assert torch.equal(x[:, 20], torch.ones(10_000))
    assert torch.equal(y, y.round()) and y.abs().max() <= 100


def test_flip_mode_flips_exactly_one_slow_bit_per_period_and_redraws_fast_bits():
    stream = _stream(seed=1)
    initial = stream.state_dict()["slow"]
    periods = _periods(stream, 8)
    assert torch.equal(periods[0][0][0, :15], initial)  # the first period keeps them
    slow = []
    for x, _ in periods:
        assert torch.equal(x[:, :15], x[:1, :15].expand(64, 15))  # constant within a period
        assert torch.equal(x[:, 20], torch.ones(64))
        fast = x[:, 15:20]
        assert set(fast.unique().tolist()) == {0.0, 1.0}
        assert (fast != fast[:1]).any(0).all()  # every fast bit varies within the period
        slow.append(x[0, :15])
    for before, after in zip(slow, slow[1:], strict=False):
        assert int((before != after).sum()) == 1


def test_redraw_mode_holds_slow_bits_within_a_period_and_redraws_them_between():
    stream = _stream(seed=1, mode="redraw")
    initial = stream.state_dict()["slow"]
    periods = _periods(stream, 8)
    assert torch.equal(periods[0][0][0, :15], initial)
    for x, _ in periods:
        assert torch.equal(x[:, :15], x[:1, :15].expand(64, 15))
        assert torch.equal(x[:, 20], torch.ones(64))
    changed = [int((a[0, :15] != b[0, :15]).sum()) for (a, _), (b, _) in
               zip(periods, periods[1:], strict=False)]  # fmt: skip
    assert max(changed) > 1  # not one flip: several bits change at once


def test_same_seed_gives_the_same_stream_and_another_seed_another_target():
    for mode in ("flip", "redraw"):
        a, b = _stream(seed=5, mode=mode), _stream(seed=5, mode=mode)
        for (xa, ya), (xb, yb) in zip(_periods(a, 3), _periods(b, 3), strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(_stream(seed=5).weights, _stream(seed=6).weights)
    assert not torch.equal(_stream(seed=5).output, _stream(seed=6).output)


def test_a_seed_gives_the_stream_it_always_gave():
    # Pins the draw order; results already computed depend on it.
    digest = hashlib.sha256()
    for mode in ("flip", "redraw"):
        for x, y in _periods(_stream(seed=7, mode=mode, flip_every=100), 3):
            digest.update(x.numpy().tobytes() + y.numpy().tobytes())
    assert digest.hexdigest()[:16] == "48573a48e4d0a6cb"


@pytest.mark.parametrize("mode", ["flip", "redraw"])
def test_state_dict_round_trip_continues_bit_identically(tmp_path, mode):
    uninterrupted = _stream(seed=2, mode=mode)
    expected = _periods(uninterrupted, 5)

    first = _stream(seed=2, mode=mode)
    _periods(first, 2)
    state = first.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    torch.save({"stream": state, "generator": first.generator.get_state()}, tmp_path / "s.pt")

    saved = torch.load(tmp_path / "s.pt", weights_only=True)
    resumed = _stream(seed=99, mode=mode)  # another target and stream until loaded
    resumed.load_state_dict(saved["stream"])
    resumed.generator.set_state(saved["generator"])
    for (xe, ye), (xr, yr) in zip(expected[2:], _periods(resumed, 3), strict=True):
        assert torch.equal(xe, xr) and torch.equal(ye, yr)


def test_a_state_for_other_sizes_is_refused():
    state = _stream(target_hidden=50).state_dict()
    with pytest.raises(DataError, match="weights should have shape"):
        _stream().load_state_dict(state)


@pytest.mark.parametrize(
    "bad",
    [dict(slow_bits=21), dict(slow_bits=-1), dict(bits=0, slow_bits=0), dict(flip_every=0),
     dict(target_hidden=-3), dict(bits=20.0), dict(mode="swap"), dict(beta=float("nan")),
     dict(beta=float("inf")), dict(beta="0.7")],
)  # fmt: skip
def test_bad_constants_raise_config_error(bad):
    with pytest.raises(ConfigError):
        BitFlipping(**bad)
