"""Saving and restoring an experiment at a task boundary (shared by the protocols).

An experiment object holds `config` (a frozen dataclass), `task`, `examples_seen`, `model`,
`optimizer`, `method` and some torch generators; `state_dict` copies all of it, and
`load_state_dict` refuses a state written by a different configuration (the task count and
device may differ: a run can be extended, or moved between CPU and GPU; a state written
before a field was added is that field's default, as the config hash has it).
"""

from __future__ import annotations

import dataclasses

from plasticity_core.errors import ConfigError
from plasticity_core.fields import later_defaults


def state_dict(experiment, generators: tuple[str, ...]) -> dict:
    return {
        "config": dataclasses.asdict(experiment.config),
        "task": experiment.task,
        "examples_seen": experiment.examples_seen,
        # state_dict() tensors alias the live parameters: copy, like everything else here.
        "model": {k: v.clone() for k, v in experiment.model.state_dict().items()},
        "optimizer": experiment.optimizer.state_dict(),
        "method": experiment.method.state_dict(),
        "recipe": experiment.recipe_state(),
        **{name: getattr(experiment, name).get_state() for name in generators},
    }


def load_state_dict(experiment, state: dict, generators: tuple[str, ...]) -> None:
    config = experiment.config
    saved = dict(state["config"], tasks=config.tasks, device=config.device)
    for name in later_defaults(config):  # a state written before the field existed
        saved.setdefault(name, getattr(config, name))
    current = dataclasses.asdict(config)
    if {k: saved.get(k) for k in current} != current:
        raise ConfigError("checkpoint was written by a different configuration")
    experiment.task = int(state["task"])
    experiment.examples_seen = int(state["examples_seen"])
    experiment.model.load_state_dict(state["model"])
    experiment.optimizer.load_state_dict(state["optimizer"])
    experiment.method.load_state_dict(state["method"])
    experiment.load_recipe_state(state.get("recipe", {}))
    for name in generators:
        getattr(experiment, name).set_state(state[name])
