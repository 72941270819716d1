"""Aggregation of per-task rows across seeds, for the dashboard's views (pure pandas).

A *curve* is one labelled configuration: every column that describes the configuration
(method, utility, activation, norm and any hyperparameter that varies in the rows) except
the seed. Means and standard errors are taken across seeds at each task.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FACETS = ("activation", "norm")
IDENTITY = ("method", "utility")
NOT_CONFIG = {
    "experiment", "stage", "trial_id", "seed", "task", "accuracy", "train_accuracy", "loss",
    "resets", "examples_seen", "seconds", "config_hash", "code_version", "data", "tasks",
    "diagnostics_version", "diagnostics_seconds", "grad_norm", "mean_age",
}  # fmt: skip
"""Row columns that are measurements or bookkeeping, not configuration."""


def curve_label(method: str, utility: str) -> str:
    return method if utility in ("none", "", None) else f"{method}+{utility}"


def config_columns(rows: pd.DataFrame) -> list[str]:
    """Configuration columns that vary within a (method, utility, activation, norm)
    curve and so must be part of its label (e.g. lr in a sweep)."""
    measured = set(NOT_CONFIG) | {c for c in rows.columns if _is_diagnostic(c)}
    keys = [c for c in (*IDENTITY, *FACETS) if c in rows.columns]
    varying = []
    for column in rows.columns:
        if column in measured or column in keys:
            continue
        if len(keys) and rows.groupby(keys, dropna=False)[column].nunique(dropna=False).max() > 1:
            varying.append(column)
    return varying


def _is_diagnostic(column: str) -> bool:
    stems = ("dormant_fraction", "dead_fraction", "effective_rank", "stable_rank",
             "feature_norm", "weight_magnitude", "resets_l", "mean_age_l")  # fmt: skip
    return column.startswith(stems)


def with_labels(rows: pd.DataFrame) -> pd.DataFrame:
    """Adds `curve` (e.g. 'cbp+gxd lr=0.03') and fills missing facet columns."""
    rows = rows.copy()
    for column in FACETS:
        if column not in rows:
            rows[column] = "n/a"
    for column in IDENTITY:
        if column not in rows:
            rows[column] = "none" if column == "utility" else "unknown"
    extra = config_columns(rows)
    labels = [curve_label(m, u) for m, u in zip(rows["method"], rows["utility"], strict=True)]
    for column in extra:
        labels = [f"{lab} {column}={v}" for lab, v in zip(labels, rows[column], strict=True)]
    rows["curve"] = labels
    return rows


def curve_stats(rows: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Per (facets, curve, task): mean and standard error of `metric` across seeds.

    Columns: activation, norm, curve, task, mean, se (std ddof=1 / sqrt(n); NaN for n=1), n.
    """
    labelled = with_labels(rows)
    keys = [*FACETS, "curve", "task"]
    grouped = labelled.groupby(keys, sort=True)[metric]
    stats = grouped.agg(mean="mean", std=lambda v: v.std(ddof=1), n="count").reset_index()
    stats["se"] = stats["std"] / np.sqrt(stats["n"])
    return stats.drop(columns="std")


def moving_average(values: pd.Series, window: int) -> pd.Series:
    """Trailing mean over up to `window` values (shorter at the start)."""
    return values.rolling(window, min_periods=1).mean()


def relative_to_baseline(
    stats: pd.DataFrame, baseline: str = "bp", window: int = 50
) -> pd.DataFrame:
    """Each curve's mean minus the baseline method's mean at the same task, within each
    facet, smoothed by a `window`-task moving average (paper Fig. 4 right). Where several
    baseline curves exist (a sweep over its lr), the one with the best mean is used.

    Columns: activation, norm, curve, task, delta, baseline. Facets without the baseline
    are absent.
    """
    parts = []
    for facet, group in stats.groupby(list(FACETS), sort=True):
        is_base = (group["curve"] == baseline) | group["curve"].str.startswith(f"{baseline} ")
        if not is_base.any():
            continue
        best = group[is_base].groupby("curve")["mean"].mean().idxmax()
        base = group[group["curve"] == best].set_index("task")["mean"]
        for curve, values in group[~is_base].groupby("curve", sort=True):
            values = values.set_index("task")["mean"]
            delta = (values - base).dropna().sort_index()
            parts.append(
                pd.DataFrame(
                    {
                        "activation": facet[0],
                        "norm": facet[1],
                        "curve": curve,
                        "task": delta.index,
                        "delta": moving_average(delta, window).to_numpy(),
                        "baseline": best,
                    }
                )
            )
    columns = ["activation", "norm", "curve", "task", "delta", "baseline"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
