"""A spec's seeds and the ceiling on trials per stage, counted before anything is expanded:
a count of seeds stays a `range` and a grid stays its lists until the product is known to
be under the ceiling (a `seeds: {sweep: 10**18}` or a 2-million-point grid is refused at
once)."""

from __future__ import annotations

import math

from plasticity_core.errors import brief

Seeds = range | tuple[int, ...]
"""A stage's seeds: a count stays a range until the trial count is under the ceiling."""


def parse_seeds(raw, problems) -> tuple[Seeds, Seeds]:
    if not isinstance(raw, dict):
        problems.append("seeds: expected {sweep: N or [..], final: N or [..]}")
        return (), ()
    problems += [f"seeds.{k}: unknown key; allowed: final, sweep" for k in raw
                 if k not in ("sweep", "final")]  # fmt: skip
    stages: dict[str, Seeds] = {}
    start = 0
    for stage, default in (("sweep", 5), ("final", 15)):
        value = raw.get(stage, default)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            seeds: Seeds = range(start, start + value)
        elif (
            isinstance(value, list)
            and value
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
            and len(set(value)) == len(value)
        ):
            seeds = tuple(value)
        else:
            problems.append(
                f"seeds.{stage}: expected a count >= 1 or a list of distinct seeds >= 0, "
                f"got {brief(value)}"
            )
            seeds = ()
        stages[stage] = seeds
        start = (seeds[-1] if isinstance(seeds, range) else max(seeds, default=-1)) + 1
    sweep, final = stages["sweep"], stages["final"]
    shared = []  # two counts never overlap: final starts after the sweep's largest seed
    if isinstance(sweep, tuple) or isinstance(final, tuple):
        listed, other = (sweep, final) if isinstance(sweep, tuple) else (final, sweep)
        lookup = other if isinstance(other, range) else set(other)
        shared = sorted(s for s in listed if s in lookup)
    if shared:
        problems.append(
            f"seeds.final: {brief(shared)} also in seeds.sweep; final seeds must be new "
            "so the reported runs are independent of the selection"
        )
    return sweep, final


def above_ceiling(grid: list[dict[str, tuple]], sweep: Seeds, final: Seeds,
                   max_trials: int) -> list[str]:  # fmt: skip
    """The stage whose trials (configurations x seeds) pass `max_trials`, counted without
    expanding the grid: each entry's product of list lengths, summed. The final stage's
    count is an upper bound (every configuration may win its selection group)."""
    configurations = sum(math.prod(len(values) for values in entry.values()) for entry in grid)
    for stage, seeds in (("sweep", sweep), ("final", final)):
        trials = configurations * len(seeds)
        if trials > max_trials:
            bound = "" if stage == "sweep" else "up to "
            return [
                f"grid x seeds.{stage}: {bound}{trials:,} {stage} trials (grid "
                f"{configurations:,} configurations x {len(seeds):,} seeds), above the "
                f"ceiling of {max_trials:,}; raise it with --max-trials N"
            ]
    return []
