"""The ranked summary: which method or utility keeps plasticity best, one number per curve.

Each run (one seed of one curve) is scored as the select stage scores a trial: its metric
averaged over its last K tasks (`runner.select.trial_score`; a NaN in the window gives the
run no score). A curve's number is the mean ± SE of its runs' scores, and curves are ranked
within their *group*: experiment × source (studies are never pooled) × the experiment's two
facets. Each curve is compared with the group's backprop curve: the same seed gives every
method the same initial network and the same example order (separate seed streams in
`plasticity_core/experiments/task_loop.py`), so where the two curves share seeds the
difference is taken seed by seed (paired), which removes the variance the runs share.

Rows are read as the dashboard reads them: a study's final-stage rows where it has any
(its reported seeds), else all its rows; curves are labelled per source, so a label names
only what varies inside that study.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from plasticity_core.errors import PlasticityError
from plasticity_core.experiments import EXPERIMENTS
from runner.aggregate import by_experiment, facets_of, mean_se, metric_of, with_labels
from runner.manifest import load_folder_spec
from runner.spec import METRICS
from runner.storage import Folder

if TYPE_CHECKING:
    from runner.dashboard.sources import Sources

GROUP = ["experiment", "source", "facets", "facet_a", "facet_b"]
"""A group's columns: `facets` names the experiment's two facets ('activation/norm'),
facet_a and facet_b hold their values as text, so every experiment shares one schema."""
COLUMNS = [*GROUP, "curve", "method", "utility", "metric", "mode", "last_tasks", "tasks",
           "seeds", "mean", "se", "baseline", "diff_bp", "diff_bp_se", "paired", "rank",
           "best"]  # fmt: skip
BASELINE = "bp"
MIN_PAIRED = 2
"""Common seeds needed for a paired difference: with fewer, a paired SE does not exist and
the unpaired one still uses every seed of both curves."""


def preferred_stage(rows: pd.DataFrame) -> pd.DataFrame:
    """Per source and experiment, its final-stage rows when it has any (a sweep's reported
    seeds), else all its rows. Rows without a `stage` column are returned as they are."""
    if "stage" not in rows or rows.empty:
        return rows
    keys = [k for k in ("source", "experiment") if k in rows]
    groups = rows.groupby(keys, sort=False, dropna=False) if keys else [(None, rows)]
    parts = []
    for _, part in groups:
        final = part[part["stage"] == "final"]
        parts.append(final if len(final) else part)
    return pd.concat(parts, ignore_index=True)


def prepare(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows as they are summarised: the preferred stage, a `curve` label per source, and
    the group columns (experiment, source, facets, facet_a, facet_b) filled in. Summarising
    several K from one prepared frame saves labelling the rows again."""
    if rows.empty:
        return pd.DataFrame(columns=[*GROUP, "curve"])
    rows = preferred_stage(rows)
    rows = rows.assign(
        experiment=rows["experiment"].fillna("").astype(str) if "experiment" in rows else "",
        source=rows["source"].fillna("").astype(str) if "source" in rows else "",
    )
    parts = []
    for _, part in rows.groupby("source", sort=True):
        for name, labelled in by_experiment(with_labels(part)):
            a, b = facets_of(name)
            parts.append(labelled.assign(facets=f"{a}/{b}", facet_a=labelled[a].astype(str),
                                         facet_b=labelled[b].astype(str)))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def summary_table(
    rows: pd.DataFrame,
    last_tasks: int | Mapping[str, int] | None = None,
    modes: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per curve of each group, best first.

    rows: per-task rows as `runner.results.read_results` gives them (a `source` column
    names the study of each; absent: one study named '').
    last_tasks: K, each run's score is its metric's mean over its last K tasks (0 or None:
    every task; a run with fewer tasks uses the ones it has); a mapping gives each source
    its own K (a source it does not name: every task).
    modes: experiment -> 'max' | 'min', overriding the registry's direction.

    Columns (COLUMNS): the group (experiment, source, facets, facet_a, facet_b); curve,
    method, utility; metric and mode ('max': higher is better); last_tasks (the K used,
    0 = every task); tasks (fewest tasks any of the curve's runs was averaged over: a
    diverged or unfinished run has fewer); seeds (runs with a score); mean, se (std ddof=1 /
    sqrt(seeds), NaN for one seed); baseline (the bp curve compared with, the best one if
    several; '' without one); diff_bp, diff_bp_se (mean minus the baseline's, in the
    metric's units, not flipped for 'min'; paired over the common seeds when there are at
    least MIN_PAIRED, so it may differ from the difference of the two means; 0 and NaN for
    the baseline itself, NaN without one); paired; rank (1 = best, ties share the lower
    rank, no score ranks last); best (rank 1 with a score).
    """
    return summarise(prepare(rows), last_tasks, modes)


def summarise(
    prepared: pd.DataFrame,
    last_tasks: int | Mapping[str, int] | None = None,
    modes: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """`summary_table` of rows that went through `prepare` already."""
    parts = []
    for (name, source), part in prepared.groupby(["experiment", "source"], sort=True):
        metric = metric_of(name)
        if metric not in part:
            continue
        k = _k_of(last_tasks, source)
        mode = (modes or {}).get(name) or _mode_of(name, metric)
        groups = run_scores(part, metric, k).groupby(GROUP, sort=True)
        table = pd.DataFrame([record for _, runs in groups for record in _compare(runs, mode)])
        parts.append(_ranked(table, mode).assign(metric=metric, mode=mode, last_tasks=k))
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.concat(parts, ignore_index=True)[COLUMNS]
    order = [*GROUP, "rank", "curve"]
    return table.sort_values(order, kind="stable").reset_index(drop=True)


def _k_of(last_tasks: int | Mapping[str, int] | None, source: str) -> int:
    if isinstance(last_tasks, Mapping):
        return int(last_tasks.get(source, 0))
    return int(last_tasks or 0)


def _mode_of(experiment: str, metric: str) -> str:
    if experiment in EXPERIMENTS:
        return EXPERIMENTS.get(experiment).mode
    return METRICS.get(metric, "max")


def run_scores(prepared: pd.DataFrame, metric: str, last_tasks: int) -> pd.DataFrame:
    """One row per run (trial_id; seed where rows have no trial_id) of each curve: its
    group and curve columns, method, utility, seed, score (the metric's mean over its last
    `last_tasks` tasks, 0 = all; NaN when the window holds a NaN) and tasks (the window's
    length)."""
    run = "trial_id" if "trial_id" in prepared else "seed"
    keys = [*GROUP, "curve", run]
    rows = prepared if "seed" in prepared else prepared.assign(seed=prepared[run])
    rows = rows.assign(_value=pd.to_numeric(rows[metric], errors="coerce"))
    if "task" in rows:
        rows = rows.sort_values("task", kind="stable")
    if last_tasks:
        rows = rows.groupby(keys, sort=False, dropna=False).tail(last_tasks)
    runs = rows.assign(_gap=rows["_value"].isna()).groupby(keys, sort=True, dropna=False)
    scores = runs.agg(score=("_value", "mean"), tasks=("_value", "size"), gap=("_gap", "any"),
                      method=("method", "first"), utility=("utility", "first"),
                      seed=("seed", "first")).reset_index()  # fmt: skip
    scores.loc[scores["gap"], "score"] = math.nan
    return scores.drop(columns=["gap"])


def _compare(runs: pd.DataFrame, mode: str) -> list[dict]:
    """One group's curves: mean ± SE of each and its difference to the baseline."""
    group = {k: runs[k].iloc[0] for k in GROUP}
    curves = dict(tuple(runs.groupby("curve", sort=True)))
    stats = {curve: mean_se(part["score"]) for curve, part in curves.items()}
    base = _baseline(stats, mode)
    records = []
    for curve, part in curves.items():
        diff, diff_se, paired = math.nan, math.nan, False
        if curve == base:
            diff = 0.0
        elif base is not None:
            diff, diff_se, paired = _difference(part, curves[base])
        records.append({
            **group, "curve": curve, "method": part["method"].iloc[0],
            "utility": part["utility"].iloc[0],
            "tasks": int(part["tasks"].min()), "seeds": int(part["score"].notna().sum()),
            "mean": stats[curve][0], "se": stats[curve][1], "baseline": base or "",
            "diff_bp": diff, "diff_bp_se": diff_se, "paired": paired,
        })  # fmt: skip
    return records


def _baseline(stats: dict[str, tuple[float, float]], mode: str) -> str | None:
    """The group's bp curve ('bp' or 'bp <config>'); of several, the best by mean."""
    candidates = [c for c in stats if c == BASELINE or c.startswith(f"{BASELINE} ")]
    if not candidates:
        return None
    sign = 1 if mode == "max" else -1
    scored = [c for c in candidates if not math.isnan(stats[c][0])] or candidates
    return max(scored, key=lambda c: sign * stats[c][0])


def _difference(curve: pd.DataFrame, base: pd.DataFrame) -> tuple[float, float, bool]:
    """(difference, its SE, paired): paired over the seeds both curves scored, when at
    least MIN_PAIRED; otherwise the difference of the means with sqrt(se_a² + se_b²)."""
    a = curve.groupby("seed")["score"].mean().dropna()
    b = base.groupby("seed")["score"].mean().dropna()
    common = a.index.intersection(b.index)
    if len(common) >= MIN_PAIRED:
        diff, se = mean_se(a[common] - b[common])
        return diff, se, True
    (mean_a, se_a), (mean_b, se_b) = mean_se(curve["score"]), mean_se(base["score"])
    return mean_a - mean_b, math.hypot(se_a, se_b), False


def _ranked(table: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Ranks the curves within each group by mean, in the metric's direction."""
    ranks = table.groupby(GROUP, sort=False)["mean"].rank(
        method="min", ascending=mode == "min", na_option="bottom"
    )
    return table.assign(rank=ranks.astype(int), best=(ranks == 1) & table["mean"].notna())


def default_last_tasks(folder: str | Path | Folder) -> int:
    """K of a folder: a sweep's experiment folder (spec.yaml) its `select.last_tasks` (0 =
    every task); any other folder 0."""
    folder = folder if isinstance(folder, Folder) else Folder(folder)
    if not (folder / "spec.yaml").exists():
        return 0
    return load_folder_spec(folder).select.last_tasks


def last_tasks_by_source(sources: Sources) -> dict[str, int]:
    """Each sweep source's own K (`default_last_tasks`), by source name; run folders are
    absent (every task). A spec that cannot be read gave no rows, so it is skipped."""
    found = {}
    for experiment in sources.experiments:
        try:
            found[experiment["name"]] = default_last_tasks(experiment["folder"])
        except PlasticityError:
            continue
    return found


def group_name(group: pd.DataFrame) -> str:
    """'permuted-mnist · demo · activation=relu, norm=none': experiment, source (left out
    where it is the experiment's own name, as a run folder's is) and facet values."""
    first = group.iloc[0]
    values = (first["facet_a"], first["facet_b"])
    names = str(first["facets"]).split("/", 1)
    facets = ", ".join(f"{n}={v}" for n, v in zip(names, values, strict=True))
    source = first["source"] if first["source"] != first["experiment"] else ""
    return " · ".join(str(p) for p in (first["experiment"], source, facets) if p)


def group_heading(group: pd.DataFrame) -> str:
    """The line naming one group of a summary table and how it is measured, e.g.
    'permuted-mnist · demo · activation=relu, norm=none · accuracy (max) over the last 10
    tasks, 6 seeds'."""
    first = group.iloc[0]
    k, fewest, most = int(first["last_tasks"]), int(group["tasks"].min()), group["tasks"].max()
    span = f"the last {k} task{'s' * (k != 1)}" if k else "every task"
    if fewest < (k or most):
        span += f" (some runs have only {fewest})"
    low, high = int(group["seeds"].min()), int(group["seeds"].max())
    seeds = f"{low} seed{'s' * (low != 1)}" if low == high else f"{low}-{high} seeds"
    return f"{group_name(group)} · {first['metric']} ({first['mode']}) over {span}, {seeds}"


def format_summary(table: pd.DataFrame) -> str:
    """A plain-text table per group, best first, the best curve marked '*': rank, curve,
    mean ± se and its difference to bp ± se (seeds too where they differ by curve)."""
    blocks = []
    for _, group in table.groupby(GROUP, sort=False):
        blocks.append("\n".join([group_heading(group), *_lines(group)]))
    return "\n\n".join(blocks)


def _lines(group: pd.DataFrame) -> list[str]:
    decimals = decimals_for(pd.concat([group["se"], group["diff_bp_se"]]))
    base = group["baseline"].iloc[0]
    head = ["", "rank", "curve", "mean ± se", "Δ bp ± se"]
    with_seeds = group["seeds"].nunique() > 1
    cells = []
    for _, row in group.iterrows():
        line = ["*" if row["best"] else "", str(row["rank"]), str(row["curve"]),
                plus_minus(row["mean"], row["se"], decimals), _delta(row, decimals)]  # fmt: skip
        cells.append([*line, str(row["seeds"])] if with_seeds else line)
    head = [*head, "seeds"] if with_seeds else head
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]
    right = {1, 5}  # rank and seeds are numbers
    lines = [
        "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in
                  enumerate(zip(line, widths, strict=True))).rstrip()
        for line in [head, *cells]
    ]  # fmt: skip
    if not base:
        return [*lines, "(no bp curve in this group)"]
    return lines if base == BASELINE else [*lines, f"(Δ against {base}, the best bp curve)"]


def _delta(row: pd.Series, decimals: int) -> str:
    if not row["baseline"]:
        return "n/a"
    if row["curve"] == row["baseline"]:
        return "(baseline)"
    text = plus_minus(row["diff_bp"], row["diff_bp_se"], decimals, sign=True)
    return text if row["paired"] else f"{text} unpaired"


def plus_minus(value: float, se: float, decimals: int, sign: bool = False) -> str:
    """'0.8123 ± 0.0042' ('+0.0123 ± ...' with `sign`; 'n/a' for a missing SE)."""
    if math.isnan(value):
        return "no score"
    number = f"{value:+.{decimals}f}" if sign else f"{value:.{decimals}f}"
    return f"{number} ± {'n/a' if math.isnan(se) else f'{se:.{decimals}f}'}"


def decimals_for(errors: pd.Series) -> int:
    """Decimals that show the smallest standard error to two significant digits (3 to 8;
    4 without one)."""
    errors = errors[(errors > 0) & errors.notna()]
    if errors.empty:
        return 4
    return min(8, max(3, 1 - math.floor(math.log10(float(errors.min())))))
