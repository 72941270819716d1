"""A trial: one run of one experiment configuration with one seed, in one stage.

Built once from a spec (or from `plasticity run`'s options) and consumed as is by the Ray
trainable, the select stage and `plasticity run`; its id is the one formula that names a
trial's rows, record and checkpoints everywhere."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from plasticity_core.experiments import EXPERIMENTS, Experiment


def trial_id(config) -> str:
    """`<config_hash>-s<seed>`: seeds of one configuration share the hash, and a longer run
    of a configuration keeps its id."""
    return f"{config.config_hash()}-s{config.seed}"


@dataclass(frozen=True)
class Trial:
    trial_id: str
    stage: str
    experiment: str
    params: dict[str, Any]
    """The config fields the spec (or the command line) sets, as plain values."""
    seed: int
    tasks: int
    module: str
    """The module that registers the experiment: a worker process imports it when the
    experiment is not built in (e.g. one a user registered in their own module)."""

    @classmethod
    def of(cls, experiment: str, stage: str, params: dict[str, Any], seed: int) -> Trial:
        entry = EXPERIMENTS.get(experiment)
        config = entry.config(**params, seed=seed)
        return cls(trial_id(config), stage, experiment, dict(params), seed, config.tasks,
                   entry.run.__module__)  # fmt: skip

    @property
    def entry(self) -> Experiment:
        if self.experiment not in EXPERIMENTS:
            importlib.import_module(self.module)
        return EXPERIMENTS.get(self.experiment)

    def config(self, device: str = "cpu"):
        """The experiment config of this trial on `device`."""
        return self.entry.config(**self.params, seed=self.seed, device=device)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (Tune stores it in its trial configs)."""
        return {name: getattr(self, name) for name in FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trial:
        return cls(**{name: data[name] for name in FIELDS})


FIELDS = ("trial_id", "stage", "experiment", "params", "seed", "tasks", "module")
