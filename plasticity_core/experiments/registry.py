"""The experiment registry: one entry holds everything the layers above need.

An experiment module registers itself at import time:

    EXPERIMENTS.add(NAME, Experiment(name=NAME, config=MyConfig, run=run, description=...))

and the command line (`plasticity run NAME`, `plasticity list experiments`), the spec
validator, the Ray trainable, `plasticity plan` and the dashboard all read that entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from plasticity_core.registry import Registry


class StepCost(NamedTuple):
    """What `plasticity plan` needs to estimate one task of a configuration."""

    steps_per_task: int
    flops_per_step: int
    """Matmul FLOPs of one optimizer step: the bench's MLP figures are scaled by it."""
    examples_per_task: int


@dataclass(frozen=True)
class Experiment:
    name: str
    config: type
    """Its config dataclass (a `TaskConfig`): command line, spec schema and rows."""
    run: Callable[..., Any]
    """`run(config, state=None)`: an iterable of one row per task, with `task`,
    `config_hash`, `state_dict()` at any task boundary."""
    description: str
    measured: tuple[str, ...] = ()
    """Row columns this experiment adds that describe a task or a measurement, not the
    configuration (the dashboard does not label curves by them)."""
    facets: tuple[str, str] = ("activation", "norm")
    """Config fields the dashboard's accuracy views split into columns and rows."""
    cost: Callable[[Any], StepCost | None] = lambda config: None
    """Step counts for `plasticity plan` (None: only trials and tasks are counted)."""
    packable: bool = False
    """Whether many runs can share one vectorised step (`packed.PackedLoop(run, configs)`:
    an MLP recipe whose tasks give their examples as a pool)."""
    metric: str = "accuracy"
    """The row column its results are judged by (selection, summaries)."""
    mode: str = "max"
    """'max' when a higher `metric` is better, 'min' when lower is (an error)."""


EXPERIMENTS: Registry[Experiment] = Registry("experiment")
