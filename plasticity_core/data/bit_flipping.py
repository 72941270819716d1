"""The data of slowly-changing regression ("bit-flipping"; Dohare et al., Nature 2024,
Methods), drawn from a caller's generator: nothing is downloaded.

An input is m = 20 bits of 0/1 plus a constant bias input 1 (the last entry). The first
f = 15 bits are slow: constant for a flip period of T = 10,000 examples, then changed. In
mode 'flip' one randomly chosen slow bit flips (the paper's text; the reference code's
`flip_one`), in mode 'redraw' all f are drawn afresh (the reference code's default data).
The other m - f bits are fresh random bits in every example.

The target is a fixed random network drawn once per stream: 100 linear-threshold units
(LTUs) with input weights uniform in {-1, +1} over all m + 1 inputs; unit i outputs 1 when
its weighted sum exceeds theta_i = beta (m + 1) - S_i (S_i: its number of negative weights,
beta = 0.7), else 0; the output is y = sum_i v_i ltu_i with v_i uniform in {-1, +1}.

This follows the paper's formulas where the reference code (lop/nets/fix_ltu_net.py)
departs from them: there S_i = (m - sum_j w_ij + b_i) / 2 with b_i the bias weight, which
puts theta_i 1.5 above the paper's for a unit with b_i = -1 (such units then fire ~0.1% of
the time, not ~2%) and 0.5 below for b_i = +1 (no effect at beta = 0.7); and y gets an
output bias from {-1, +1}.

Within a period y depends on an example only through its m - f fast bits, so when their
2^(m-f) patterns (32 by default) are no more than the period's examples the target is
evaluated once per pattern and looked up; otherwise on every example. Both give the same
bits, since every sum here is a small integer and exact in float32. One default period
takes ~1 ms this way against ~4-5 ms evaluating every example (one thread, a loaded
2-core machine), so 300 streams x 100 periods take ~30 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import torch

from plasticity_core.errors import ConfigError, DataError

MODES = ("flip", "redraw")


@dataclass(frozen=True)
class BitFlipping:
    """The problem's constants; the defaults are the paper's."""

    bits: int = 20
    """m: random input bits, not counting the constant bias input."""
    slow_bits: int = 15
    """f: the first f bits, constant within a flip period (0 gives a stationary problem)."""
    flip_every: int = 10_000
    """T: examples (steps) per flip period."""
    target_hidden: int = 100
    """Linear-threshold units of the target network."""
    beta: float = 0.7
    """How selective a target unit is: theta_i = beta (m + 1) - S_i."""
    mode: str = "flip"
    """How the slow bits change between periods: 'flip' one of them or 'redraw' all."""

    def __post_init__(self) -> None:
        for name in ("bits", "flip_every", "target_hidden"):
            value = getattr(self, name)
            if not _is_a(value, Integral) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not _is_a(self.slow_bits, Integral) or not 0 <= self.slow_bits <= self.bits:
            raise ConfigError(f"slow_bits must be an integer in [0, bits={self.bits}], "
                              f"got {self.slow_bits!r}")  # fmt: skip
        if not (_is_a(self.beta, Real) and math.isfinite(self.beta)):
            raise ConfigError(f"beta must be a finite number, got {self.beta!r}")
        if self.mode not in MODES:
            raise ConfigError(f"unknown flip mode {self.mode!r}; choose from: {', '.join(MODES)}")

    @property
    def fast_bits(self) -> int:
        """m - f: the bits drawn afresh for every example."""
        return self.bits - self.slow_bits


def _is_a(value: object, kind: type) -> bool:
    """isinstance, but a bool (an Integral to Python) is not a size or a beta."""
    return isinstance(value, kind) and not isinstance(value, bool)


def ltu_thresholds(weights: torch.Tensor, beta: float) -> torch.Tensor:
    """theta_i = beta * n_inputs - S_i, S_i the number of negative weights of unit i.

    weights: [units, n_inputs] of -1/+1, the bias input's weight included; returns [units].
    A unit can reach at most n_inputs - S_i, so theta_i asks for all but a fixed share of
    its favourable inputs whatever its sign mix (paper, Methods).
    """
    negatives = (weights < 0).sum(1).to(weights.dtype)
    return beta * weights.shape[1] - negatives


def _signs(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Uniform draws from {-1, +1} as float32."""
    return (2 * torch.randint(0, 2, shape, generator=generator) - 1).float()


class SlowlyChangingStream:
    """One run's stream: a target network drawn once, then one flip period per `period()`.

    Everything random comes from `generator`, in this order: the target's input weights,
    its output weights, the initial slow bits; then per period the change of the slow bits
    (from the second period on) and the fast bits. So a seed fixes the stream, and
    `state_dict()` with the generator's `get_state()` resumes it bit for bit.
    """

    def __init__(self, problem: BitFlipping, generator: torch.Generator) -> None:
        """problem: the constants (trusted, validated by BitFlipping); generator: a CPU
        generator the caller owns and saves with its checkpoints."""
        if generator.device.type != "cpu":
            raise ConfigError(f"the stream draws on the CPU; got a {generator.device} generator")
        self.problem = problem
        self.generator = generator
        self.n_inputs = problem.bits + 1
        self.weights = _signs((problem.target_hidden, self.n_inputs), generator)
        self.thresholds = ltu_thresholds(self.weights, problem.beta)
        self.output = _signs((problem.target_hidden,), generator)
        self.slow = torch.randint(0, 2, (problem.slow_bits,), generator=generator).float()
        self.periods = 0
        # Every fast-bit pattern, when they are few: row c holds the bits of c, so a row of
        # fast bits is pattern `fast @ place_values`.
        k = problem.fast_bits
        self._patterns: torch.Tensor | None = None
        if 2**k <= problem.flip_every:
            bit = torch.arange(k)
            self._place_values = 2**bit
            self._patterns = torch.arange(2**k)[:, None] >> bit & 1

    def period(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next flip period: x [flip_every, bits + 1] float32 (0/1 bits, slow ones
        first, the bias 1 last) and the target's y [flip_every] float32.

        The slow bits change first (not before the first period), then the fast bits are
        drawn; torch.randint of 0/1 for the bits, as the reference does.
        """
        p = self.problem
        if self.periods and p.slow_bits:
            if p.mode == "flip":
                i = int(torch.randint(0, p.slow_bits, (1,), generator=self.generator))
                self.slow[i] = 1 - self.slow[i]
            else:
                self.slow = torch.randint(0, 2, (p.slow_bits,), generator=self.generator).float()
        self.periods += 1
        fast = torch.randint(0, 2, (p.flip_every, p.fast_bits), generator=self.generator)
        x = self._inputs(fast)
        if self._patterns is None:  # more fast-bit patterns than examples: evaluate each
            return x, self.target(x)
        table = self.target(self._inputs(self._patterns))
        return x, table[fast @ self._place_values]

    def _inputs(self, fast: torch.Tensor) -> torch.Tensor:
        """[n, bits + 1]: the current slow bits, fast [n, bits - slow_bits], the bias 1."""
        p = self.problem
        x = torch.empty(fast.shape[0], self.n_inputs)
        x[:, : p.slow_bits] = self.slow
        x[:, p.slow_bits : p.bits] = fast
        x[:, p.bits] = 1.0
        return x

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """The target network's y [n] for inputs x [n, bits + 1].

        A unit fires when its sum is strictly greater than theta_i, as the reference's LTU
        (`inp > tau`); with the default beta no integer sum equals a threshold anyway.
        """
        units = torch.gt(x @ self.weights.T, self.thresholds).to(x.dtype)
        return units @ self.output

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The target network, the slow bits and the period counter, as tensors only (so
        torch.load(weights_only=True) reads it); the generator's state is the caller's."""
        return {"weights": self.weights.clone(), "thresholds": self.thresholds.clone(),
                "output": self.output.clone(), "slow": self.slow.clone(),
                "periods": torch.tensor(self.periods)}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()`; raises DataError if it was saved for other sizes."""
        p = self.problem
        shapes = {"weights": (p.target_hidden, self.n_inputs), "thresholds": (p.target_hidden,),
                  "output": (p.target_hidden,), "slow": (p.slow_bits,)}  # fmt: skip
        for key, shape in shapes.items():
            if key not in state or tuple(state[key].shape) != shape:
                got = tuple(state[key].shape) if key in state else "missing"
                raise DataError(f"stream state does not fit this problem: {key} should have "
                                f"shape {shape}, got {got}")  # fmt: skip
        self.weights = state["weights"].float().clone()
        self.thresholds = state["thresholds"].float().clone()
        self.output = state["output"].float().clone()
        self.slow = state["slow"].float().clone()
        self.periods = int(state["periods"])
