"""Reset-cost assay output: Parquet files per checkpoint and the paper-shaped tables."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from plasticity_core.experiments.assay_rows import ORACLE, CheckpointResult
from plasticity_core.experiments.reset_cost import NAME
from runner.aggregate import mean_se
from runner.results import write_rows

TABLES = ("units", "layers", "summary")


def write_checkpoint(result: CheckpointResult, out: Path) -> None:
    """One file per (table, activation, norm, seed, checkpoint) under out/reset-cost/
    (weight level: out/reset-cost-weights/, with the table `weights` for `units`).

    A re-run of the same checkpoint replaces its files; the folders read back as one
    dataset each (`pyarrow.parquet.read_table(out / 'reset-cost' / 'summary')`).
    """
    key = result.summary[0]
    stem = f"{key['activation']}-{key['norm']}-s{key['seed']}-t{key['checkpoint']}"
    if "model" in key:  # conv-net assays: one file set per model
        stem = f"{key['model']}-{stem}"
    folder, names = Path(out) / NAME, dict(zip(TABLES, TABLES, strict=True))
    if key.get("level") == "weight":  # rows of other columns: a dataset of their own
        folder, names["units"] = Path(out) / f"{NAME}-weights", "weights"
    for table in TABLES:
        write_rows(getattr(result, table), folder / names[table] / f"{stem}.parquet")


PAPER_TABLE7 = {
    ("mlp", "relu", "gxd", "L1"): 0.996,
    ("mlp", "relu", "gxi", "L1"): 0.970,
    ("mlp", "silu", "gxd", "L1"): 0.980,
    ("mlp", "silu", "gxi", "L1"): 0.469,
    ("resnet18", "relu", "gxd", "L1"): 0.926,
    ("resnet18", "relu", "gxd_all", "L1"): 0.937,
    ("resnet18", "relu", "gxd", "KL"): 0.803,
    ("resnet18", "relu", "gxd_all", "KL"): 0.783,
}
"""The Spearman values of the paper's Table 7 that its text states (Appendix B; mean over 3
seeds x 5 checkpoints for the MLP, 3 x 4 for the ResNet-18). The table's other cells are
not in the text, so they are not here."""


SETTING_ASIDE = frozenset({"activations", "device", "data", "model", "permutation_seed"})
"""Config fields that do not make a run's setting the paper's or not (data is checked apart)."""


def paper_differences(config, paper, summary: Sequence[dict]) -> list[str]:
    """The settings in which `config` departs from `paper` (the same config class with the
    paper's values), including the data and the probe examples it could actually draw."""
    names = [
        f.name
        for f in dataclasses.fields(config)
        if f.name not in SETTING_ASIDE and getattr(config, f.name) != getattr(paper, f.name)
    ]
    if str(config.data).startswith("embedded"):
        names.append(f"data ({config.data}; the paper: the full dataset)")
    probe = min(row["probe"] for row in summary)
    if "probe" not in names and probe < paper.probe:
        names.append(f"probe ({probe} examples available)")
    return names


def _cell(spec: str):
    def fmt(values: pd.Series) -> str:
        mean, se = mean_se(values)
        if np.isnan(mean):
            return "n/a"
        return f"{mean:{spec}}" if np.isnan(se) else f"{mean:{spec}} ± {se:{spec}}"

    return fmt


PRINTED = (
    ("Spearman rho between utility and realized shock, pooled: every assayed unit (weight) "
     "in one ranking (higher is better)", "spearman_{}_pooled", ".3f"),
    ("Spearman rho, per layer: the mean of each layer's own ranking (higher is better)",
     "spearman_{}_per_layer", ".3f"),
    ("Shock@5%: mean realized shock of each layer's lowest 5% (lower is better; L1 in "
     "logits, KL in nats)", "shock5_{}", ".2e"),
)  # fmt: skip


def format_tables(summary: Sequence[dict], differs: Sequence[str] = ()) -> str:
    """Spearman pooled and per layer (paper Tables 1/7), Shock@5% (Fig. 2), mean ± SE over
    seeds x checkpoints; L1 Spearman per checkpoint; the paper's stated values beside ours.
    `differs`: the settings in which this run departs from the paper's."""
    frame = pd.DataFrame(list(summary))
    order = list(dict.fromkeys(frame["utility"]))
    activations = list(dict.fromkeys(frame["activation"]))
    groups = frame.groupby(["utility", "activation"], sort=False)
    parts = []
    for title, column, spec in PRINTED:
        cells = {
            f"{activation} {metric}": groups[column.format(metric.lower())]
            .apply(_cell(spec))
            .xs(activation, level="activation")
            for activation in activations
            for metric in ("L1", "KL")
        }
        table = pd.DataFrame(cells).reindex(order)
        if column.startswith("spearman"):
            table = table.drop(index=ORACLE, errors="ignore")
        parts.append(f"{title}\n{table.to_string()}")
    if frame["checkpoint"].nunique() > 1:
        parts.append(_by_checkpoint(frame, order))
    paper = _beside_paper(frame, differs)
    if paper:
        parts.append(paper)
    n = frame.groupby("activation").size().iloc[0] // len(order)
    parts.append(f"({n} seed x checkpoint pairs per activation; norm={frame['norm'].iloc[0]})")
    return "\n\n".join(parts)


def _by_checkpoint(frame: pd.DataFrame, order: list[str]) -> str:
    """Spearman on logit L1 per checkpoint, 'pooled / per layer', mean over seeds."""
    frame = frame[frame["utility"] != ORACLE]
    means = frame.groupby(["activation", "utility", "checkpoint"], sort=False)[
        ["spearman_l1_pooled", "spearman_l1_per_layer"]
    ].mean()
    cells = means.apply(lambda r: f"{r.iloc[0]:.3f} / {r.iloc[1]:.3f}", axis=1).unstack()
    cells = cells.reindex([i for i in cells.index if i[1] in order])
    return (
        "Spearman rho on logit L1 by checkpoint (tasks completed), pooled / per layer, mean "
        f"over seeds\n{cells.to_string()}"
    )


def _beside_paper(frame: pd.DataFrame, differs: Sequence[str]) -> str:
    """The paper's stated Table 7 values beside this run's, where the setting matches."""
    model = frame["model"].iloc[0] if "model" in frame else "mlp"
    lines = []
    for (where, activation, utility, metric), value in PAPER_TABLE7.items():
        rows = frame[(frame["activation"] == activation) & (frame["utility"] == utility)]
        if where != model or rows.empty:
            continue
        pooled = _cell(".3f")(rows[f"spearman_{metric.lower()}_pooled"])
        per_layer = _cell(".3f")(rows[f"spearman_{metric.lower()}_per_layer"])
        lines.append((f"{activation} {utility} {metric}", f"{value:.3f}", pooled, per_layer))
    if not lines:
        return ""
    table = pd.DataFrame(lines, columns=["", "paper", "here pooled", "here per layer"])
    note = (
        f"this run differs from the paper's setting in: {', '.join(differs)}"
        if differs
        else "this run uses the paper's setting"
    )
    return (
        "Beside the paper: Spearman values its text states from Table 7 (the paper's numbers, "
        f"not measured here; {note})\n{table.to_string(index=False)}"
    )
