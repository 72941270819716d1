"""The reset-cost assay's views: Shock@5% per utility (paper Fig. 2) and the Spearman table
(paper Tables 1/7) with the paper's stated values beside the measured ones."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from runner.aggregate import mean_se
from runner.assay import PAPER_TABLE7
from runner.dashboard.identity import ranked, style_of

ORACLE = "oracle"
SHOCKS = (("shock5_l1", "L1", "logit L1"), ("shock5_kl", "KL", "KL, nats"))
"""(summary column, metric, unit) of the two realized shocks."""
PAPER_NORM = {"mlp": "none", "resnet18": "batch"}
"""The normalisation of the paper's networks: its values are shown only beside the same."""


def assay_view(summary: pd.DataFrame, order: Sequence[str] | None = None) -> go.Figure | str:
    """Shock@5% per utility and setting, L1 and KL side by side on log y axes (ReLU's
    0.0025 must stay visible next to random's 0.12), mean ± SE over seeds × checkpoints;
    utilities in `order` (best first; default alphabetical), the oracle last."""
    shocks = [s for s in SHOCKS if s[0] in summary]
    if summary.empty or not shocks:
        return "No reset-cost assay results: run `plasticity assay`."
    setting = _setting(summary)
    settings = list(dict.fromkeys(setting))
    utilities = _utilities(summary, order) + ([ORACLE] if (summary["utility"] == ORACLE).any()
                                              else [])  # fmt: skip
    fig = make_subplots(rows=1, cols=len(shocks), horizontal_spacing=0.1,
                        subplot_titles=[f"Shock@5%, {unit}" for _, _, unit in shocks])  # fmt: skip
    for rank, utility in enumerate(utilities):
        color = style_of(utility)["color"]
        for col, (column, metric, unit) in enumerate(shocks, start=1):
            stats = [mean_se(summary.loc[(summary["utility"] == utility) & (setting == s),
                                         column]) for s in settings]  # fmt: skip
            fig.add_trace(go.Bar(
                x=settings, y=[m for m, _ in stats], name=utility, legendgroup=utility,
                showlegend=col == 1, legendrank=10 * (rank + 1), marker_color=color,
                error_y={"type": "data", "array": [0 if pd.isna(s) else s for _, s in stats]},
                meta=metric, hovertemplate=f"{utility}, %{{x}}: %{{y:.3g}} ({unit})"
                                           "<extra></extra>",
            ), row=1, col=col)  # fmt: skip
    for col, (_, _, unit) in enumerate(shocks, start=1):
        fig.update_yaxes(title_text=f"Shock@5% ({unit}, log scale)", row=1, col=col)
    fig.update_yaxes(type="log", showgrid=True, gridcolor="#e5e5e5")
    fig.update_layout(
        barmode="group", height=460, plot_bgcolor="white",
        title="Shock@5%: mean realized shock of each layer's lowest-scoring 5% (lower is "
              "better; oracle = ranking by the shock itself)",
        legend={"orientation": "h", "x": 0, "y": -0.15, "yanchor": "top"},
    )  # fmt: skip
    return fig


def _setting(summary: pd.DataFrame) -> pd.Series:
    """The x category of each row: its activation, with the model where there are several."""
    activation = summary["activation"].astype(str)
    if "model" in summary and summary["model"].nunique() > 1:
        return summary["model"].astype(str) + " " + activation
    return activation


def _utilities(summary: pd.DataFrame, order: Sequence[str] | None) -> list[str]:
    return ranked((u for u in summary["utility"].astype(str) if u != ORACLE), order)


SPEARMAN_COLUMNS = {
    "spearman_l1_pooled": "L1 pooled", "spearman_l1_per_layer": "L1 per layer",
    "spearman_kl_pooled": "KL pooled", "spearman_kl_per_layer": "KL per layer",
}  # fmt: skip
"""Summary columns of the assay's Spearman table: pooled over every unit, mean per layer."""


def spearman_table(summary: pd.DataFrame, order: Sequence[str] | None = None) -> str:
    """Spearman ρ between each utility and the realized shock (paper Tables 1/7), pooled
    and per layer for L1 and KL, the best utility of each measured column in bold, and a
    'paper' column (in italics) of the values the paper's text states from Table 7 where
    the model, activation and normalisation are the paper's."""
    # Rows written before the per-layer columns existed hold the pooled value only.
    summary = summary.rename(columns={"spearman_l1": "spearman_l1_pooled",
                                      "spearman_kl": "spearman_kl_pooled"})  # fmt: skip
    measured = [c for c in SPEARMAN_COLUMNS if c in summary]
    if summary.empty or not measured:
        return ""
    utilities = _utilities(summary, order)
    columns = [column for activation in dict.fromkeys(summary["activation"].astype(str))
               for column in _columns(summary, activation, measured)]  # fmt: skip
    cells = {c: [_measured(summary, u, c) if c[1] != "paper" else _paper(summary, u, c)
                 for u in utilities] for c in columns}  # fmt: skip
    best = {c: max(range(len(utilities)), key=lambda i, c=c: _or_low(cells[c][i][0]))
            for c in columns if c[1] != "paper"}  # fmt: skip
    head = "".join(_header(c) for c in columns)
    body = []
    for i, utility in enumerate(utilities):
        row = "".join(_cell(cells[c][i], c[1] == "paper", best.get(c) == i) for c in columns)
        body.append(f"<tr><th>{html.escape(utility)}</th>{row}</tr>")
    return ('<h3>Spearman ρ between utility and realized shock, mean ± SE over seeds × '
            'checkpoints (higher is better, best in bold; pooled: every unit in one ranking, '
            "per layer: the mean of each layer's; paper Tables 1/7). <i>paper</i> columns: "
            "the values the paper's text states from its Table 7 (its networks on full data; "
            "not measured here: `plasticity assay --paper` names where a run's setting "
            'differs)</h3><table class="data" data-table="spearman"><tr><th>utility</th>'
            f"{head}</tr>{''.join(body)}</table>")  # fmt: skip


def _columns(summary: pd.DataFrame, activation: str, measured: list[str]) -> list[tuple]:
    """(activation, column) for each measured column, and (activation, 'paper', metric)
    after a metric's columns where the paper states a value for this setting."""
    out: list[tuple] = []
    for metric in ("L1", "KL"):
        mine = [(activation, c) for c in measured if f"_{metric.lower()}_" in c]
        out += mine
        if mine and any(_paper_value(summary, u, activation, metric) is not None
                        for u in summary["utility"].astype(str)):  # fmt: skip
            out.append((activation, "paper", metric))
    return out


def _paper_value(summary: pd.DataFrame, utility: str, activation: str,
                 metric: str) -> float | None:  # fmt: skip
    model = str(summary["model"].iloc[0]) if "model" in summary else "mlp"
    norms = set(summary.loc[summary["activation"].astype(str) == activation, "norm"]
                .astype(str)) if "norm" in summary else {"none"}  # fmt: skip
    if norms != {PAPER_NORM.get(model, "none")}:
        return None
    return PAPER_TABLE7.get((model, activation, utility, metric))


def _measured(summary: pd.DataFrame, utility: str, column: tuple) -> tuple[float, float]:
    activation, name = column
    where = (summary["utility"] == utility) & (summary["activation"].astype(str) == activation)
    return mean_se(summary.loc[where, name])


def _paper(summary: pd.DataFrame, utility: str, column: tuple) -> tuple[float, float]:
    value = _paper_value(summary, utility, column[0], column[2])
    return (math.nan if value is None else value), math.nan


def _header(column: tuple) -> str:
    if column[1] == "paper":
        return f"<th><i>{html.escape(column[0])} {column[2]} paper (Table 7)</i></th>"
    return f"<th>{html.escape(column[0])} {SPEARMAN_COLUMNS[column[1]]}</th>"


def _cell(stats: tuple[float, float], paper: bool, best: bool) -> str:
    mean, se = stats
    if paper:
        return f'<td class="paper"><i>{mean:.3f}</i></td>' if not pd.isna(mean) else "<td></td>"
    text = "n/a" if pd.isna(mean) else f"{mean:.3f}" if pd.isna(se) else f"{mean:.3f} ± {se:.3f}"
    return f"<td>{'<b>' + text + '</b>' if best else text}</td>"


def _or_low(value: float) -> float:
    return -math.inf if math.isnan(value) else value
