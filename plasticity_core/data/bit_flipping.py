"""The data of slowly-changing regression ("bit-flipping"; Dohare et al., Nature 2024,
Methods), drawn from a caller's generator: nothing is downloaded.

An input is m = 20 bits plus a constant bias input 1 (the last entry). The first f = 15
bits are slow: constant for a flip period of T = 10,000 examples, then changed — in mode
'flip' one randomly chosen slow bit flips (as the paper's text describes), in mode 'redraw'
all f are drawn afresh (as the reference code's default data does). The other m - f bits
are fresh random bits in every example.

The target is a fixed random network drawn once per stream: 100 linear-threshold units
with input weights uniform in {-1, +1} over all m + 1 inputs; unit i outputs 1 when its
weighted sum exceeds theta_i = beta (m + 1) - S_i (S_i: its number of negative weights,
beta = 0.7), else 0; the output is sum_i v_i ltu_i with v_i uniform in {-1, +1}.

One period is a few tensor ops (one matmul for the units): ~1 ms for 10,000 examples here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from plasticity_core.errors import ConfigError

MODES = ("flip", "redraw")


@dataclass(frozen=True)
class BitFlipping:
    """The problem's constants."""

    bits: int = 20
    slow_bits: int = 15
    flip_every: int = 10_000
    target_hidden: int = 100
    beta: float = 0.7
    mode: str = "flip"

    def __post_init__(self) -> None:
        if min(self.bits, self.flip_every, self.target_hidden) < 1:
            raise ConfigError("bits, flip_every and target_hidden must be >= 1, got "
                              f"{self.bits}, {self.flip_every}, {self.target_hidden}")  # fmt: skip
        if not 0 <= self.slow_bits <= self.bits:
            raise ConfigError(f"slow_bits must be in [0, bits={self.bits}], got {self.slow_bits}")
        if not math.isfinite(self.beta):
            raise ConfigError(f"beta must be a finite number, got {self.beta}")
        if self.mode not in MODES:
            raise ConfigError(f"unknown flip mode {self.mode!r}; choose from: {', '.join(MODES)}")


class SlowlyChangingStream:
    """`period()` gives the next flip period's examples; the target network and the slow
    bits are drawn from `generator` (a CPU generator the caller owns and saves)."""

    def __init__(self, problem: BitFlipping, generator: torch.Generator) -> None:
        self.problem = problem
        self.generator = generator
        self.n_inputs = problem.bits + 1
        signs = 2 * torch.randint(0, 2, (problem.target_hidden, self.n_inputs),
                                  generator=generator) - 1  # fmt: skip
        self.weights = signs.float()
        negatives = (signs < 0).sum(1).float()
        self.thresholds = problem.beta * self.n_inputs - negatives
        self.output = (2 * torch.randint(0, 2, (problem.target_hidden,), generator=generator)
                       - 1).float()  # fmt: skip
        self.slow = torch.randint(0, 2, (problem.slow_bits,), generator=generator).float()
        self.periods = 0

    def period(self) -> tuple[torch.Tensor, torch.Tensor]:
        """x [flip_every, bits + 1] float32 of 0/1 bits and the bias 1; y [flip_every]."""
        p = self.problem
        if self.periods and p.slow_bits:
            if p.mode == "flip":
                i = int(torch.randint(0, p.slow_bits, (1,), generator=self.generator))
                self.slow[i] = 1 - self.slow[i]
            else:
                self.slow = torch.randint(0, 2, (p.slow_bits,), generator=self.generator).float()
        self.periods += 1
        x = torch.empty(p.flip_every, self.n_inputs)
        x[:, : p.slow_bits] = self.slow
        x[:, p.slow_bits : p.bits].random_(0, 2, generator=self.generator)
        x[:, p.bits] = 1.0
        return x, self.target(x)

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """The target network's output for inputs x [n, bits + 1]: [n]."""
        units = torch.gt(x @ self.weights.T, self.thresholds).to(x.dtype)
        return units @ self.output

    def state_dict(self) -> dict:
        return {"weights": self.weights.clone(), "thresholds": self.thresholds.clone(),
                "output": self.output.clone(), "slow": self.slow.clone(),
                "periods": self.periods}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.weights = state["weights"].clone()
        self.thresholds = state["thresholds"].clone()
        self.output = state["output"].clone()
        self.slow = state["slow"].clone()
        self.periods = int(state["periods"])
