"""Reset-cost assay output: Parquet files per checkpoint and the paper-shaped tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from plasticity_core.experiments.reset_cost import NAME, ORACLE, CheckpointResult
from runner.aggregate import mean_se
from runner.results import write_rows

TABLES = ("units", "layers", "summary")


def write_checkpoint(result: CheckpointResult, out: Path) -> None:
    """One file per (table, activation, norm, seed, checkpoint) under out/reset-cost/.

    A re-run of the same checkpoint replaces its files; the folders read back as one
    dataset each (`pyarrow.parquet.read_table(out / 'reset-cost' / 'summary')`).
    """
    key = result.summary[0]
    stem = f"{key['activation']}-{key['norm']}-s{key['seed']}-t{key['checkpoint']}"
    if "model" in key:  # conv-net assays: one file set per model
        stem = f"{key['model']}-{stem}"
    for table in TABLES:
        write_rows(getattr(result, table), Path(out) / NAME / table / f"{stem}.parquet")


def _cell(spec: str):
    def fmt(values: pd.Series) -> str:
        mean, se = mean_se(values)
        if np.isnan(mean):
            return "n/a"
        return f"{mean:{spec}}" if np.isnan(se) else f"{mean:{spec}} ± {se:{spec}}"

    return fmt


def format_tables(summary: Sequence[dict]) -> str:
    """Spearman (paper Tables 1/7) and Shock@5% (Fig. 2), mean ± SE over seeds x checkpoints."""
    frame = pd.DataFrame(list(summary))
    order = list(dict.fromkeys(frame["utility"]))
    groups = frame.groupby(["utility", "activation"], sort=False)
    parts = []
    for title, metrics, spec in (
        (
            "Spearman rho between utility and realized shock (higher is better)",
            ("spearman_l1", "spearman_kl"),
            ".3f",
        ),
        (
            "Shock@5%: mean realized shock of each layer's lowest 5% (lower is better;"
            " L1 in logits, KL in nats)",
            ("shock5_l1", "shock5_kl"),
            ".2e",
        ),
    ):
        cells = {
            (activation, metric.rsplit("_", 1)[1].upper()): groups[metric]
            .apply(_cell(spec))
            .xs(activation, level="activation")
            for activation in dict.fromkeys(frame["activation"])
            for metric in metrics
        }
        table = pd.DataFrame(cells).reindex(order)
        if title.startswith("Spearman"):
            table = table.drop(index=ORACLE, errors="ignore")
        table.columns = [f"{a} {m}" for a, m in table.columns]
        parts.append(f"{title}\n{table.to_string()}")
    n = frame.groupby("activation").size().iloc[0] // len(order)
    parts.append(f"({n} seed x checkpoint pairs per activation; norm={frame['norm'].iloc[0]})")
    return "\n\n".join(parts)
