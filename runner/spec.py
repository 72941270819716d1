"""Sweep specs: a YAML file (or a packaged preset) validated into frozen dataclasses.

    name: demo                       # the experiment folder under --out
    experiment: permuted-mnist
    fixed: {tasks: 10, hidden: [100, 100]}     # config fields shared by every trial
    grid:                            # a mapping of lists, or a list of such mappings
      - {method: [bp], lr: [0.01, 0.03]}       # (the union of their products)
      - {method: [cbp], utility: [contribution, gxd], lr: [0.01, 0.03]}
    seeds: {sweep: 5, final: 15}     # counts (sweep 0.., final after them) or lists
    select:
      metric: accuracy               # a numeric per-task column
      last_tasks: 0                  # mean over the last K tasks of a trial; 0 = all
      per: [method, utility, activation, norm]   # one winner per combination
    resources: {cpu: 1, gpu: 0}      # per trial; gpu may be fractional (0.25)
    device: auto                     # auto (cuda when Ray gave the trial a GPU) | cpu | cuda
    checkpoint_every: 10             # tasks between checkpoints (and always at the end)
    max_failures: 2                  # retries of a crashed trial within one run
    pack: 1                          # up to N runs (seeds, lr, rates) in one vectorised
                                     # step: one Ray trial, whose resources they share

Every problem of a spec is reported at once, each with its YAML path.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources as package_files
from pathlib import Path
from typing import Any

from plasticity_core.errors import ConfigError, brief, clip
from plasticity_core.experiments import EXPERIMENTS
from plasticity_core.packed.loop import PACKED_METHODS, pack_key
from runner.safe_yaml import MAX_BYTES, load_yaml
from runner.schema import (
    BAD,
    CONTROL,
    coerce,
    field_types,
    folder_name_problems,
    integer,
    parse_section,
    text_problems,
)
from runner.seeds import above_ceiling, parse_seeds
from runner.trial import Trial

RESERVED = {"seed": "seeds", "device": "device"}
"""Config fields a spec sets elsewhere: field -> the spec key that controls it."""
STAGES = ("sweep", "select", "final")
DEVICES = ("auto", "cpu", "cuda")
METRICS = {"accuracy": "max", "train_accuracy": "max", "loss": "min"}
"""Per-task columns a selection may rank by, with their natural direction."""
PRESETS = package_files.files("runner") / "presets"
MAX_TRIALS = 10_000
"""Most trials a stage may have (`--max-trials` raises it): counted before anything is
expanded, so a typo like `seeds: {sweep: 200000}` is refused at once, not after minutes."""
NAME_LENGTH = 100
"""Most characters of a spec's name, the experiment folder's name."""
KEYS = ("name", "experiment", "description", "fixed", "grid", "seeds", "select", "resources",
        "device", "checkpoint_every", "max_failures", "pack")  # fmt: skip


class SpecError(ConfigError):
    """A spec with problems; `problems` lists each as 'yaml.path: message'."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {_clip(p)}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: {len(problems)} {noun}:\n{lines}")


def _clip(line: str, limit: int = 300) -> str:
    """A problem line printable and cut to `limit` characters: the last guard against a
    message that quotes a huge value or a key with terminal escapes in it (the config
    classes' own errors quote what they were given)."""
    return clip(CONTROL.sub(lambda match: repr(match.group())[1:-1], line), limit)


@dataclass(frozen=True)
class Select:
    metric: str = "accuracy"
    last_tasks: int = 0
    """Average the metric over each trial's last K tasks (0 = every task)."""
    mode: str = "max"
    per: tuple[str, ...] = ("method", "utility", "activation", "norm")
    """Config fields whose every combination gets its own winner (default: method,
    utility and the experiment's dashboard facets)."""


@dataclass(frozen=True)
class Resources:
    cpu: float = 1.0
    gpu: float = 0.0
    accelerator: str = ""
    """A GPU model the trial must run on, e.g. A10G: requested as a custom Ray resource of
    that name in the trial's GPU share, which cluster/ declares on its GPU nodes, so the
    autoscaler starts the right worker type."""

    def as_ray(self) -> dict[str, float]:
        resources = {"cpu": self.cpu, "gpu": self.gpu}
        if self.accelerator:
            resources[self.accelerator] = self.gpu
        return resources


@dataclass(frozen=True)
class SweepSpec:
    name: str
    experiment: str
    fixed: dict[str, Any]
    grid: tuple[dict[str, tuple], ...]
    sweep_seeds: tuple[int, ...]
    final_seeds: tuple[int, ...]
    select: Select = Select()
    resources: Resources = Resources()
    device: str = "auto"
    checkpoint_every: int = 10
    max_failures: int = 2
    pack: int = 1
    description: str = ""

    @property
    def config_class(self) -> type:
        return EXPERIMENTS.get(self.experiment).config

    def configurations(self) -> list[dict[str, Any]]:
        """The distinct configurations, each as the full set of spec-controlled fields
        (fixed + grid values), in grid order. Two grid points that make the same experiment
        config (e.g. utility '' and the method's default) are one configuration."""
        seen, points = set(), []
        for point in self.points():
            marker = self.build(point, seed=0).config_hash()
            if marker not in seen:
                seen.add(marker)
                points.append(point)
        return points

    def points(self) -> list[dict[str, Any]]:
        """Every grid point (fixed + grid values), unvalidated, in grid order."""
        return [
            {**self.fixed, **dict(zip(grid, values, strict=True))}
            for grid in self.grid
            for values in itertools.product(*grid.values())
        ]

    def build(self, params: Mapping[str, Any], seed: int, device: str = "cpu"):
        """The experiment config of one trial."""
        return self.config_class(**params, seed=seed, device=device)

    def trials(self, stage: str, points: list[dict[str, Any]], seeds: tuple[int, ...]):
        """The trials of a stage: every configuration (fixed + grid values) x every seed."""
        return [Trial.of(self.experiment, stage, params, seed) for params in points
                for seed in seeds]  # fmt: skip

    def packs(self, trials: list[Trial]) -> list[list[Trial]]:
        """The trials in packs of up to `pack` runs that can share a step (same experiment
        config but for `PACKED_FIELDS`, a packable method), in trial order."""
        groups: dict[tuple, list[Trial]] = {}
        for trial in trials:
            config = trial.config()
            alone = self.pack == 1 or config.method not in PACKED_METHODS
            groups.setdefault(("alone", trial.trial_id) if alone else pack_key(config),
                              []).append(trial)  # fmt: skip
        return [runs[i : i + self.pack] for runs in groups.values()
                for i in range(0, len(runs), self.pack)]  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """A plain mapping that `parse_spec` turns back into an equal spec."""
        return {
            "name": self.name,
            "experiment": self.experiment,
            "description": self.description,
            "fixed": {k: _plain(v) for k, v in self.fixed.items()},
            "grid": [{k: [_plain(v) for v in vs] for k, vs in g.items()} for g in self.grid],
            "seeds": {"sweep": list(self.sweep_seeds), "final": list(self.final_seeds)},
            "select": {**dataclasses.asdict(self.select), "per": list(self.select.per)},
            "resources": dataclasses.asdict(self.resources),
            "device": self.device,
            "checkpoint_every": self.checkpoint_every,
            "max_failures": self.max_failures,
            "pack": self.pack,
        }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def presets() -> list[str]:
    return sorted(p.name[: -len(".yaml")] for p in PRESETS.iterdir() if p.name.endswith(".yaml"))


def load_spec(
    spec: str | Path, overrides: dict[str, Any] | None = None, max_trials: int | None = MAX_TRIALS
) -> SweepSpec:
    """A spec from a YAML file path, a preset name (`plasticity list presets`) or '-'
    (standard input); `overrides` replace or add `fixed` fields (e.g. {"data": "/data"});
    a stage of more than `max_trials` trials is refused (None: no ceiling)."""
    document, source = _read(spec)
    data = load_yaml(document, source)
    if overrides and isinstance(data, dict) and isinstance(data.get("fixed") or {}, dict):
        data["fixed"] = {**(data.get("fixed") or {}), **overrides}
    return parse_spec(data, source, max_trials)


def _read(spec: str | Path) -> tuple[bytes | str, str]:
    """The spec's bytes (at most one more than load_yaml accepts) and its name in messages."""
    if str(spec) == "-":
        return getattr(sys.stdin, "buffer", sys.stdin).read(MAX_BYTES + 1), "standard input"
    path = Path(spec)
    try:
        if path.suffix in (".yaml", ".yml") or path.exists():
            if not path.is_file():
                problem = "is not a file" if path.exists() else "does not exist"
                raise ConfigError(f"spec file {brief(str(path))} {problem}")
            with path.open("rb") as file:
                return file.read(MAX_BYTES + 1), str(path)
    except OSError as err:
        raise ConfigError(f"spec file {brief(str(path))}: {err.strerror}") from None
    if str(spec) not in presets():
        raise ConfigError(f"{brief(str(spec))} is neither a spec file nor a preset; presets: "
                          f"{', '.join(presets())}")  # fmt: skip
    return (PRESETS / f"{spec}.yaml").read_bytes(), f"preset {spec}"


def parse_spec(data: Any, source: str = "spec", max_trials: int | None = MAX_TRIALS) -> SweepSpec:
    """Validate a loaded YAML document; raises SpecError listing every problem, a stage of
    more than `max_trials` trials among them (None: no ceiling)."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise SpecError(source, [f"(top): expected a mapping, got {type(data).__name__}"])
    problems += [f"{k}: unknown key; allowed: {', '.join(sorted(KEYS))}" for k in data
                 if k not in KEYS]  # fmt: skip

    name = data.get("name")
    problems += [f"name: {problem}" for problem in folder_name_problems(name, NAME_LENGTH)]
    experiment = data.get("experiment")
    if not isinstance(experiment, str) or experiment not in EXPERIMENTS:
        problems.append(
            f"experiment: {brief(experiment)} cannot be swept; choose from {EXPERIMENTS.names()}"
        )
        raise SpecError(source, problems)  # nothing else can be checked without it
    config_class = EXPERIMENTS.get(experiment).config
    types = field_types(config_class)

    fixed = _parse_params(data.get("fixed", {}), "fixed", types, problems, as_list=False)
    grid = _parse_grid(data.get("grid"), fixed, types, problems)
    sweep_seeds, final_seeds = parse_seeds(data.get("seeds", {}), problems)
    select = _parse_select(data.get("select", {}), experiment, types, problems)
    res = _parse_resources(data.get("resources", {}), problems)
    device = data.get("device", "auto")
    if device not in DEVICES:
        problems.append(f"device: {brief(device)}; choose from {', '.join(DEVICES)}")
    elif device == "cuda" and res is not None and res.gpu == 0:
        problems.append("device: cuda needs resources.gpu > 0 so Ray reserves a GPU")
    every = integer(data.get("checkpoint_every", 10), "checkpoint_every", problems, minimum=1)
    failures = integer(data.get("max_failures", 2), "max_failures", problems, minimum=0)
    pack = integer(data.get("pack", 1), "pack", problems, minimum=1)
    if isinstance(pack, int) and pack > 1 and not EXPERIMENTS.get(experiment).packable:
        problems.append(f"pack: {experiment} cannot pack runs (its model is no MLP); use 1")
    description = data.get("description", "")
    problems += [f"description: {p}" for p in text_problems(description, allowed="\n\t")]
    if max_trials is not None:
        problems += above_ceiling(grid, sweep_seeds, final_seeds, max_trials)

    _check_each_value(config_class, fixed, grid, problems)
    if not problems:  # seed ranges become tuples only now, below the ceiling
        spec = SweepSpec(
            name=name, experiment=experiment, fixed=fixed, grid=tuple(grid),
            sweep_seeds=tuple(sweep_seeds), final_seeds=tuple(final_seeds), select=select,
            resources=res, device=device, checkpoint_every=every, max_failures=failures,
            pack=pack, description=description,
        )  # fmt: skip
        _check_combinations(spec, problems)
        if not problems:
            return spec
    raise SpecError(source, problems)


def _parse_grid(raw_grid, fixed: dict, types, problems) -> list[dict[str, tuple]]:
    if isinstance(raw_grid, dict):
        raw_grid = [raw_grid]
    grid: list[dict[str, tuple]] = []
    if not isinstance(raw_grid, list) or not raw_grid:
        problems.append("grid: expected a mapping of lists, or a non-empty list of them")
        return grid
    for i, g in enumerate(raw_grid):
        path = f"grid[{i}]" if len(raw_grid) > 1 else "grid"
        if isinstance(g, dict) and not g:
            problems.append(f"{path}: empty; give at least one field with a list of values")
        grid.append(_parse_params(g, path, types, problems, as_list=True))
        problems += [f"{path}.{k}: also set in fixed" for k in grid[-1] if k in fixed]
    return grid


def _parse_select(raw, experiment: str, types, problems) -> Select | None:
    select = parse_section(raw, "select", Select, problems)
    if select is None:
        return None
    if "metric" not in raw:  # what the experiment's results are judged by
        select = dataclasses.replace(select, metric=EXPERIMENTS.get(experiment).metric)
    if "per" not in raw:  # one winner per method, utility and dashboard facet
        facets = EXPERIMENTS.get(experiment).facets
        select = dataclasses.replace(select, per=tuple(dict.fromkeys(("method", "utility",
                                                                      *facets))))  # fmt: skip
    return _check_select(select, "mode" in raw, types, problems)


def _parse_resources(raw, problems) -> Resources | None:
    res = parse_section(raw, "resources", Resources, problems)
    if res is None:
        return None
    if not res.cpu > 0:
        problems.append(f"resources.cpu: must be > 0, got {res.cpu}")
    if res.gpu < 0 or (res.gpu > 1 and res.gpu != int(res.gpu)):
        problems.append(f"resources.gpu: a fraction <= 1 or a whole number, got {res.gpu}")
    if res.accelerator and (not res.accelerator.isidentifier() or res.gpu <= 0):
        problems.append(
            f"resources.accelerator: {res.accelerator!r} needs resources.gpu > 0 and a "
            "name like A10G (the custom resource the cluster's GPU nodes declare)"
        )
    return res


def _parse_params(raw, path, types, problems, *, as_list: bool) -> dict:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{path}: expected a mapping of config fields")
        return {}
    params = {}
    for key, value in raw.items():
        where = f"{path}.{key}"
        if key in RESERVED:
            problems.append(f"{where}: set by '{RESERVED[key]}', not here")
        elif key not in types:
            problems.append(f"{where}: not a field of the experiment's config")
        elif as_list:
            if not isinstance(value, list) or not value:
                problems.append(f"{where}: expected a non-empty list of values")
                continue
            params[key] = tuple(
                coerce(v, types[key], f"{where}[{j}]", problems) for j, v in enumerate(value)
            )
        else:
            params[key] = coerce(value, types[key], where, problems)
    return params


def _check_select(select: Select, explicit_mode: bool, types, problems) -> Select:
    if select.metric not in METRICS:
        problems.append(f"select.metric: {select.metric!r}; choose from {', '.join(METRICS)}")
        return select
    if not explicit_mode:
        select = dataclasses.replace(select, mode=METRICS[select.metric])
    if select.mode not in ("max", "min"):
        problems.append(f"select.mode: {select.mode!r}; choose max or min")
    if select.last_tasks < 0:
        problems.append(f"select.last_tasks: must be >= 0, got {select.last_tasks}")
    problems += [f"select.per: {k!r} is not a config field" for k in select.per if k not in types]
    return select


def _check_each_value(config_class, fixed, grid, problems: list[str]) -> None:
    """Each well-typed value through the experiment's own validation (unknown names,
    out-of-range numbers), so these are reported along with every structural problem: a
    fixed value alone (when the fixed ones fail together), a grid value with the fixed ones
    and, should that fail, with any of the other values of its grid entry (a value fine
    only beside another, as method nap beside norm layer, is no problem of its own)."""
    base = fixed if not _problem(config_class, fixed) else {}
    for key, value in fixed.items() if not base else ():
        error = None if value is BAD else _problem(config_class, {key: value})
        if error:
            problems.append(f"fixed.{key}: {error}")
    for i, entry in enumerate(grid):
        path = f"grid[{i}]" if len(grid) > 1 else "grid"
        for key, values in entry.items():
            others = [[(k, v) for v in vs if v is not BAD] for k, vs in entry.items() if k != key]
            for j, value in enumerate(values):
                if value is BAD:
                    continue
                error = _problem(config_class, {**base, key: value})
                besides = itertools.islice(itertools.product(*others), 1000)
                if error and all(_problem(config_class, {**base, **dict(o), key: value})
                                 for o in besides):  # fmt: skip
                    problems.append(f"{path}.{key}[{j}]: {error}")


def _problem(config_class, values: dict) -> str | None:
    """The ConfigError message of building `values` (BAD values left out), or None."""
    try:
        config_class(**{k: v for k, v in values.items() if v is not BAD}, seed=0)
    except ConfigError as err:
        return str(err)
    return None


def _check_combinations(spec: SweepSpec, problems: list[str]) -> None:
    """Values that are fine alone but not together (e.g. an optimizer and its momentum)."""
    seen = set()
    for point in [spec.fixed, *spec.points()]:
        try:
            spec.build(point, seed=0)
        except ConfigError as err:
            if str(err) not in seen:
                seen.add(str(err))
                shown = ", ".join(f"{k!r}: {brief(v, 40)}" for k, v in point.items())
                where = "fixed" if point is spec.fixed else f"grid: the combination {{{shown}}}"
                problems.append(f"{where}: {err}")


__all__ = ["STAGES", "Resources", "Select", "SpecError", "SweepSpec", "load_spec", "presets"]
