"""Aggregation of per-task rows across seeds, for the dashboard's views (pandas over the
experiment registry).

A *curve* is one labelled configuration: every column that describes the configuration
(method, utility, the experiment's two facets and any hyperparameter that varies in the
rows) except the seed. Means and standard errors are taken across seeds at each task.
Rows of several experiments are aggregated experiment by experiment (the `experiment`
column), each faceted by the fields its registry entry names.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from plasticity_core.experiments import EXPERIMENTS

DEFAULT_FACETS = ("activation", "norm")
"""Facets of rows whose experiment is not registered."""
IDENTITY = ("method", "utility")
NOT_CONFIG = {
    "experiment", "stage", "trial_id", "seed", "task", "accuracy", "train_accuracy", "loss",
    "resets", "examples_seen", "seconds", "config_hash", "code_version", "data", "tasks",
    "diagnostics_version", "diagnostics_seconds", "grad_norm", "mean_age",
}  # fmt: skip
"""Row columns of every experiment that are measurements or bookkeeping, not configuration;
an experiment's own ones are its registry entry's `measured`."""


def facets_of(experiment: str) -> tuple[str, str]:
    """The two config fields an experiment's views split into columns and rows."""
    return EXPERIMENTS.get(experiment).facets if experiment in EXPERIMENTS else DEFAULT_FACETS


def metric_of(experiment: str) -> str:
    """The row column an experiment's curves show (accuracy; a regression's error)."""
    return EXPERIMENTS.get(experiment).metric if experiment in EXPERIMENTS else "accuracy"


def measured_columns() -> set[str]:
    """Columns never part of a curve label: bookkeeping and every registered experiment's
    task or measurement columns (e.g. class_a, class_b of continuous-cifar100)."""
    return NOT_CONFIG | {c for name in EXPERIMENTS for c in EXPERIMENTS.get(name).measured}


def by_experiment(rows: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """(experiment name, its rows) in name order; rows without the column are one group
    named '' (an unregistered experiment)."""
    if "experiment" not in rows:
        yield "", rows
        return
    names = rows["experiment"].fillna("").astype(str)
    for name, part in rows.groupby(names, sort=True):
        yield str(name), part


def curve_label(method: str, utility: str) -> str:
    return method if utility in ("none", "", None) else f"{method}+{utility}"


def config_columns(rows: pd.DataFrame, facets: tuple[str, str] = DEFAULT_FACETS) -> list[str]:
    """Configuration columns that vary within a (method, utility, *facets) curve of one
    experiment's rows and so must be part of its label (e.g. lr in a sweep)."""
    measured = measured_columns() | {c for c in rows.columns if _is_diagnostic(c)}
    keys = [c for c in dict.fromkeys((*IDENTITY, *facets)) if c in rows.columns]
    candidates = [c for c in rows.columns if c not in measured and c not in keys]
    if not keys or not candidates or rows.empty:
        return []
    # one grouped pass over every candidate (a paper-size study has ~400k rows)
    counts = rows.groupby(keys, dropna=False)[candidates].nunique(dropna=False).max()
    return [c for c in candidates if counts[c] > 1]


def _is_diagnostic(column: str) -> bool:
    stems = ("dormant_fraction", "dead_fraction", "effective_rank", "stable_rank",
             "feature_norm", "weight_magnitude", "resets_l", "mean_age_l")  # fmt: skip
    return column.startswith(stems)


def with_labels(rows: pd.DataFrame) -> pd.DataFrame:
    """Adds `curve` (e.g. 'cbp+gxd lr=0.03') and fills missing facet and identity columns,
    experiment by experiment (rows come back grouped by experiment)."""
    parts = [_labelled(part, facets_of(name)) for name, part in by_experiment(rows)]
    return pd.concat(parts) if parts else rows.assign(curve=pd.Series(dtype=str))


def _labelled(rows: pd.DataFrame, facets: tuple[str, str]) -> pd.DataFrame:
    rows = rows.copy()
    for column in facets:
        if column not in rows:
            rows[column] = "n/a"
    for column in IDENTITY:
        if column not in rows:
            rows[column] = "none" if column == "utility" else "unknown"
    rows["curve"] = curve_labels(rows, facets)
    return rows


def curve_labels(rows: pd.DataFrame, facets: tuple[str, str] = DEFAULT_FACETS) -> pd.Series:
    """Each row's curve label ('cbp+gxd lr=0.03', see `with_labels`) without copying the
    rows: method+utility, then every configuration column that varies within a curve."""
    unknown = pd.Series("unknown", index=rows.index)
    labels = method = rows["method"].astype(str) if "method" in rows else unknown
    if "utility" in rows:
        utility = rows["utility"]
        plain = utility.isna() | utility.astype(str).isin(["none", ""])
        labels = method.where(plain, method + "+" + utility.astype(str))
    for column in config_columns(rows, facets):
        labels = labels + f" {column}=" + rows[column].astype(str)
    return labels


def mean_se(values) -> tuple[float, float]:
    """Mean and standard error across seeds (std with ddof=1 / sqrt(n); NaN for a single
    value) of the non-NaN values: the one definition every table and band uses."""
    values = pd.Series(values, dtype=float).dropna()
    if values.empty:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.sem())


def curve_stats(rows: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Per (experiment, its two facets, curve, task): mean and standard error of `metric`
    across seeds.

    Columns: experiment, the facets of each experiment (e.g. activation, norm), curve,
    task, mean, se (std ddof=1 / sqrt(n); NaN for n=1), n.
    """
    parts = []
    for name, part in by_experiment(rows):
        facets = facets_of(name)
        grouped = _labelled(part, facets).groupby([*facets, "curve", "task"], sort=True,
                                                  dropna=False)[metric]  # fmt: skip
        stats = grouped.agg(mean="mean", se="sem", n="count").reset_index()
        parts.append(stats.assign(experiment=name))
    if not parts:
        return pd.DataFrame(columns=["experiment", "curve", "task", "mean", "se", "n"])
    return pd.concat(parts, ignore_index=True)


def moving_average(values: pd.Series, window: int) -> pd.Series:
    """Trailing mean over up to `window` values (shorter at the start)."""
    return values.rolling(window, min_periods=1).mean()


def relative_to_baseline(
    stats: pd.DataFrame, baseline: str = "bp", window: int = 50
) -> pd.DataFrame:
    """Each curve's mean minus the baseline method's mean at the same task, within each
    facet of its experiment, smoothed by a `window`-task moving average (paper Fig. 4
    right). Where several baseline curves exist (a sweep over its lr), the one with the
    best mean is used.

    Columns: experiment, its facets, curve, task, delta, baseline. Facets without the
    baseline are absent.
    """
    parts = []
    for name, part in by_experiment(stats):
        facets = facets_of(name)
        for facet, group in part.groupby(list(facets), sort=True, dropna=False):
            is_base = (group["curve"] == baseline) | group["curve"].str.startswith(f"{baseline} ")
            if not is_base.any():
                continue
            best = group[is_base].groupby("curve")["mean"].mean().idxmax()
            base = group[group["curve"] == best].set_index("task")["mean"]
            for curve, values in group[~is_base].groupby("curve", sort=True):
                delta = (values.set_index("task")["mean"] - base).dropna().sort_index()
                parts.append(pd.DataFrame({
                    "experiment": name, **dict(zip(facets, facet, strict=True)),
                    "curve": curve, "task": delta.index,
                    "delta": moving_average(delta, window).to_numpy(), "baseline": best,
                }))  # fmt: skip
    columns = ["experiment", "curve", "task", "delta", "baseline"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
