"""The methods a pack can run: plain backprop and CBP with any utility.

`PackedCBP` updates every run's unit statistics in one `UnitStatistics` of shape
[R, units]. How many units a layer replaces, and when, follows from ages alone, so runs that
share replacement rate and maturity share that schedule: it is kept once per such group (by
the group's first run). Which units, and the reset itself, are each run's own
`ContinualBackprop._replace` on views of the pack (its layers, optimizer state, statistics
and generator), so a run's reset decisions are those it makes alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from plasticity_core.cbp import ContinualBackprop
from plasticity_core.packed.model import PackedMLP
from plasticity_core.taps import LayerTaps
from plasticity_core.unit_statistics import UnitStatistics


class PackedBackprop:
    needs: frozenset[str] = frozenset()

    def __init__(self, runs: int) -> None:
        self.resets = [0] * runs

    def after_step(self, taps: Sequence[LayerTaps]) -> None:
        pass

    def sync(self) -> None:
        pass


class PackedCBP:
    """`after_step(taps)` after every optimizer step of the pack; `resets[r]` counts run r's
    replaced units (the caller zeroes it); `sync()` before reading a run's CBP state."""

    def __init__(self, runs: Sequence[ContinualBackprop], model: PackedMLP) -> None:
        self.runs = list(runs)
        first = self.runs[0]
        self.needs = first.needs
        self.resets = [0] * len(self.runs)
        decays = [run.config.decay for run in self.runs]
        decay = decays[0] if len(set(decays)) == 1 else torch.tensor(decays)
        consumers = [b.linear.weight for b in model.blocks[1:]] + [model.head.weight]
        weights = [(b.linear.weight, out) for b, out in zip(model.blocks, consumers, strict=True)]
        generators = [run.generator for run in self.runs]
        self.stats = UnitStatistics(
            weights, first.sizes, first.utility, decay, generators, runs=len(self.runs)
        )
        self.born = torch.stack([run.born for run in self.runs])
        for name in ("correction", "activation_ema", "utility_ema"):
            stacked = getattr(self.stats, name)
            stacked.copy_(torch.stack([getattr(run.stats, name) for run in self.runs]))
        for r, run in enumerate(self.runs):  # each run now reads and writes the pack
            run.born = self.born[r]
            for name in ("correction", "activation_ema", "utility_ema"):
                setattr(run.stats, name, getattr(self.stats, name)[r])
        self.groups: dict[tuple[float, int], list[int]] = {}
        for r, run in enumerate(self.runs):
            key = (run.config.replacement_rate, run.config.maturity)
            self.groups.setdefault(key, []).append(r)
        for members in self.groups.values():
            leader = self.runs[members[0]]
            for r in members:
                if _schedule(self.runs[r]) != _schedule(leader):
                    raise ValueError("runs of a pack group were at different steps")

    @torch.no_grad()
    def after_step(self, taps: Sequence[LayerTaps]) -> None:
        reference = self.stats.update(taps)
        for members in self.groups.values():
            leader = self.runs[members[0]]
            leader.steps += 1
            for layer, k in leader.due():
                for r in members:
                    run = self.runs[r]
                    run.steps = leader.steps
                    run._replace(layer, k, reference[r])
                    self.resets[r] += k

    def sync(self) -> None:
        """Copy each group's schedule into its other runs (their state and diagnostics)."""
        for members in self.groups.values():
            leader = self.runs[members[0]]
            for r in members[1:]:
                run = self.runs[r]
                run.steps = leader.steps
                run.accumulated = list(leader.accumulated)
                run.counts = list(leader.counts)
                for layer in range(len(run.sizes)):
                    run.eligible_count(layer)  # drops reset records older than maturity


def _schedule(run: ContinualBackprop) -> tuple:
    young = [[(s, c) for s, c in q if run.steps - s <= run.config.maturity] for q in run.young]
    return run.steps, run.accumulated, run.counts, young
