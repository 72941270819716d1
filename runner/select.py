"""The select stage: the best configuration of each group, by a metric averaged over seeds.

A trial's score is its metric averaged over its last K tasks (K = 0: all tasks); a
configuration's score is the mean of its seeds' scores (with the standard error across
seeds). Within each combination of `select.per` (e.g. method x utility x activation x norm)
the configuration with the best score wins; configurations with a diverged seed are never
chosen. Ties go to the first configuration in grid order.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from plasticity_core.errors import PlasticityError
from runner.aggregate import mean_se
from runner.spec import SweepSpec


class SelectionError(PlasticityError):
    """The sweep cannot be ranked yet (unfinished trials, or nothing valid to choose)."""


@dataclass
class Selection:
    table: pd.DataFrame
    """One row per configuration: its group, tuned values, score mean/SE, seeds, diverged,
    selected."""
    choices: list[dict]
    """Per group: {"group", "params", "config_hash", "score", "score_se", "seeds"}."""

    def to_json(self, spec: SweepSpec) -> str:
        select = spec.select
        return json.dumps(
            {
                "metric": select.metric,
                "last_tasks": select.last_tasks,
                "mode": select.mode,
                "per": list(select.per),
                "choices": [_no_nan(c) for c in self.choices],
            },
            indent=1,
            default=_plain,
            allow_nan=False,
        )


def _no_nan(choice: dict) -> dict:
    """NaN (an SE from one seed) is not JSON: written as null."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in choice.items()}


def _plain(value):
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value))


def trial_score(rows: pd.DataFrame, metric: str, last_tasks: int) -> float:
    """Mean of `metric` over the trial's last `last_tasks` tasks (0 = all)."""
    values = rows.sort_values("task")[metric].to_numpy(dtype=float)
    if last_tasks:
        values = values[-last_tasks:]
    return float(values.mean()) if len(values) else math.nan


def select_best(spec: SweepSpec, rows: pd.DataFrame, trials: dict[str, dict]) -> Selection:
    """Rank the sweep. `rows` are the sweep's per-task rows, `trials` maps trial_id -> its
    trial.json record (status complete | diverged | running)."""
    select = spec.select
    records, unfinished = [], []
    by_trial = dict(tuple(rows.groupby("trial_id"))) if len(rows) else {}
    for order, params in enumerate(spec.configurations()):
        resolved = spec.build(params, seed=0).hyperparameters()
        scores, diverged = [], 0
        for trial in spec.trials("sweep", [params], spec.sweep_seeds):
            trial_id = trial.trial_id
            status = trials.get(trial_id, {}).get("status", "missing")
            if status == "diverged":
                diverged += 1
            elif status == "complete" and trial_id in by_trial:
                scores.append(trial_score(by_trial[trial_id], select.metric, select.last_tasks))
            else:
                unfinished.append(f"{trial_id} ({status})")
        n = len(scores)
        score, score_se = mean_se(scores)
        records.append(
            {
                "order": order,
                **{k: resolved[k] for k in select.per},
                **{k: _cell(v) for k, v in params.items() if k not in (*select.per, *spec.fixed)},
                "config_hash": spec.build(params, seed=0).config_hash(),
                "score": score,
                "score_se": score_se,
                "seeds": n,
                "diverged": diverged,
                "params": params,
            }
        )
    if unfinished:
        shown = ", ".join(unfinished[:5]) + (" ..." if len(unfinished) > 5 else "")
        raise SelectionError(
            f"{len(unfinished)} sweep trials are not finished ({shown}); "
            "run `plasticity resume DIR` to finish them before selecting"
        )
    table = pd.DataFrame(records)
    choices = _choose(table, select)
    if not choices:
        raise SelectionError("every configuration of the sweep diverged: lower the learning rates")
    return Selection(table.drop(columns=["order", "params"]), choices)


def _choose(table: pd.DataFrame, select) -> list[dict]:
    """Marks the best valid configuration of each group `selected`; returns the choices."""
    table["selected"] = False
    choices = []
    for _, group in table.groupby(list(select.per), sort=False, dropna=False):
        valid = group[(group["diverged"] == 0) & group["score"].notna()]
        if valid.empty:
            continue
        best = valid["score"].idxmax() if select.mode == "max" else valid["score"].idxmin()
        table.loc[best, "selected"] = True
        winner = table.loc[best]
        choices.append(
            {
                "group": {k: winner[k] for k in select.per},
                "params": winner["params"],
                "config_hash": winner["config_hash"],
                "score": winner["score"],
                "score_se": winner["score_se"],
                "seeds": int(winner["seeds"]),
            }
        )
    return choices


def _cell(value):
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


def format_selection(selection: Selection, spec: SweepSpec) -> str:
    """The table behind the choice, best first within each group, winners marked '*'."""
    table = selection.table
    per = list(spec.select.per)
    shown = table.sort_values(
        per + ["score"], ascending=[True] * len(per) + [spec.select.mode == "min"], kind="stable"
    )
    tuned = [c for c in table.columns if c not in per and c not in _SUMMARY]
    last = spec.select.last_tasks
    span = f"last {last} tasks" if last else "all tasks"
    lines = [f"selection by {spec.select.metric} ({spec.select.mode}, {span}, mean over seeds):"]
    for _, row in shown.iterrows():
        mark = "*" if row["selected"] else " "
        group = " ".join(f"{row[k]}" for k in per)
        values = " ".join(f"{k}={row[k]}" for k in tuned)
        score = "diverged" if row["diverged"] else f"{row['score']:.4f} ± {row['score_se']:.4f}"
        lines.append(f" {mark} {group:40s} {values:40s} {score}  ({row['seeds']} seeds)")
    return "\n".join(lines)


_SUMMARY = {"config_hash", "score", "score_se", "seeds", "diverged", "selected"}
