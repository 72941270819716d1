"""The dashboard's summary section: the ranked tables of `runner.summary` as HTML, for a
few window lengths K picked with a selector.

Every table is in the page, one per group and K, each tagged `data-k`; the selector's
inline handler shows the chosen K's tables and hides the rest, so the page needs no
server and no code from outside (it works offline). The first choice, "each study's own
K", shows each source's default (a sweep's select.last_tasks); its tables carry
`data-default="1"`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

import pandas as pd

from runner.summary import (
    GROUP,
    decimals_for,
    group_heading,
    group_name,
    plus_minus,
    prepare,
    summarise,
)

QUARTER = 0.25
"""A window of a quarter of a study's tasks: long enough to average out task-to-task noise,
short enough to show where the curves end up."""
FIXED_CHOICES = (1, 10)

_STYLE = """<style>table[data-table=summary] tr.best td{font-weight:bold}
table[data-table=summary] caption{text-align:left;font-weight:bold;padding:.3em 0}</style>"""
_SCRIPT = """<script>(function(){var s=document.getElementById("summary-k");
function show(){document.querySelectorAll('table[data-table="summary"]').forEach(function(t){
t.hidden=s.value==="default"?t.getAttribute("data-default")!=="1":t.getAttribute("data-k")!==s.value
})}s.addEventListener("change",show);show()})();</script>"""


def summary_tables(rows: pd.DataFrame, defaults: int | Mapping[str, int] = 0) -> pd.DataFrame:
    """`runner.summary.summary_table` for each K of `k_choices`, concatenated, with a
    `default` column: whether the row's K is its source's default (`defaults`: one K for
    every source or K by source name; see `runner.summary.last_tasks_by_source`)."""
    prepared = prepare(rows)
    if prepared.empty:
        return summarise(prepared).assign(default=pd.Series(dtype=bool))
    longest = _tasks_per_source(prepared)
    own = {s: _normalised(_k_of(defaults, s), max(longest.values())) for s in longest}
    parts = [summarise(prepared, k) for k in k_choices(longest, own)]
    table = pd.concat(parts, ignore_index=True)
    return table.assign(default=table["last_tasks"] == table["source"].map(own))


def k_choices(longest: Mapping[str, int], defaults: Mapping[str, int]) -> list[int]:
    """The window lengths offered: each source's default, 1, 10 and a quarter of each
    source's tasks, then 0 (every task), without repeats; a K at least as long as every run
    is the same as every task. `longest`: the most tasks of a run, by source."""
    most = max(longest.values(), default=0)
    quarters = [max(1, round(QUARTER * n)) for n in longest.values()]
    ks = {_normalised(k, most) for k in (*defaults.values(), *FIXED_CHOICES, *quarters)}
    return [*sorted(ks - {0}), 0]


def _normalised(k: int, most: int) -> int:
    return 0 if k >= most else k


def _k_of(defaults: int | Mapping[str, int], source: str) -> int:
    return int(defaults.get(source, 0)) if isinstance(defaults, Mapping) else int(defaults)


def _tasks_per_source(prepared: pd.DataFrame) -> dict[str, int]:
    """The most tasks any run of each source has."""
    run = "trial_id" if "trial_id" in prepared else "seed"
    counts = prepared.groupby(["source", run], sort=True).size()
    return {str(s): int(n) for s, n in counts.groupby(level=0).max().items()}


def summary_html(table: pd.DataFrame) -> str:
    """The summary section's HTML fragment: a K selector and one
    `<table class="data" data-table="summary" data-group=... data-k=...>` per group and K,
    in rank order, the best row `<tr class="best">`. `table` is `summary_tables` (or one
    `summary_table`, whose tables are then all the default)."""
    if table.empty:
        return '<p class="empty">No per-task rows to summarise.</p>'
    if "default" not in table:
        table = table.assign(default=True)
    ks = sorted({int(k) for k in table["last_tasks"]}, key=lambda k: (k == 0, k))
    defaults = {int(k) for k in table.loc[table["default"], "last_tasks"]}
    first = "default" if len(defaults) > 1 else str(defaults.pop())
    groups = table.groupby([*GROUP, "last_tasks"], sort=False)
    tables = "".join(_table(group, first) for _, group in groups)
    return _STYLE + _selector(ks, first) + tables + _SCRIPT


def _selector(ks: list[int], first: str) -> str:
    """The K choices; "default" (each study's own K) only where the studies differ."""
    options = []
    if first == "default":
        options.append('<option value="default" selected>each study\'s own K</option>')
    for k in ks:
        label = "every task" if k == 0 else f"the last {k} task{'s' * (k != 1)}"
        chosen = " selected" if str(k) == first else ""
        options.append(f'<option value="{k}"{chosen}>{label}</option>')
    choices = "".join(options)
    return f'<label>Score each run over <select id="summary-k">{choices}</select></label>'


def _table(group: pd.DataFrame, first: str) -> str:
    """One group at one K: its heading as caption, then rank, curve, mean ± SE, Δ bp ± SE
    and seeds; hidden unless it is the first choice's."""
    k, is_default = str(int(group["last_tasks"].iloc[0])), bool(group["default"].iloc[0])
    shown = is_default if first == "default" else k == first
    decimals = decimals_for(pd.concat([group["se"], group["diff_bp_se"]]))
    head = "".join(f"<th>{h}</th>" for h in ("rank", "curve", "mean ± SE", "Δ bp ± SE", "seeds"))
    body = "".join(_row(row, decimals) for _, row in group.iterrows())
    return (f'<table class="data" data-table="summary" '
            f'data-group="{html.escape(group_name(group))}" data-k="{k}" '
            f'data-default="{int(is_default)}"{"" if shown else " hidden"}>'
            f"<caption>{html.escape(group_heading(group))}</caption>"
            f"<tr>{head}</tr>{body}</table>")  # fmt: skip


def _row(row: pd.Series, decimals: int) -> str:
    if not row["baseline"]:
        delta = "no bp"
    elif row["curve"] == row["baseline"]:
        delta = "baseline"
    else:
        delta = plus_minus(row["diff_bp"], row["diff_bp_se"], decimals, sign=True)
        delta += "" if row["paired"] else " (unpaired)"
    mean = plus_minus(row["mean"], row["se"], decimals)
    cells = "".join(
        f"<td>{html.escape(str(c))}</td>"
        for c in (row["rank"], row["curve"], mean, delta, row["seeds"])
    )
    return f'<tr class="best">{cells}</tr>' if row["best"] else f"<tr>{cells}</tr>"


def curve_order(table: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """(experiment, source) -> its curves best first, by mean rank across its facets (ties
    by name), so plots can order their legends as the summary does. Of `summary_tables`,
    the default K's ranks are used."""
    if "default" in table:
        table = table[table["default"]]
    order = {}
    for (experiment, source), part in table.groupby(["experiment", "source"], sort=True):
        ranks = part.groupby("curve")["rank"].mean()
        order[(experiment, source)] = sorted(ranks.index, key=lambda c: (ranks[c], c))
    return order
