"""The rows every reset-cost assay writes (units of the MLP or a ResNet, single weights):
per item, per layer (Spearman and Shock@fraction) and a summary over layers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from plasticity_core.shock import shock_at, spearman

ORACLE = "oracle"


@dataclass
class CheckpointResult:
    """The rows of one (activation, seed, checkpoint)."""

    units: list[dict] = field(default_factory=list)
    """Per unit and utility: score, the reference r_i it was clamped to, realized shocks."""
    layers: list[dict] = field(default_factory=list)
    """Per utility and layer: Spearman and Shock@fraction."""
    summary: list[dict] = field(default_factory=list)
    """Per utility (and the oracle), all layers pooled."""
    seconds: float = 0.0


def assay_rows(
    key, layers, scores, references, l1, kl, fraction: float, unit_ids=None, item="unit"
) -> CheckpointResult:
    """Unit, layer and summary rows of one checkpoint; arrays are [units] per layer
    (`unit_ids`: per layer, the unit index of each array entry when a subset was assayed).
    `item` 'weight': the entries are single weights (`weight_reset_cost.py`), the index
    columns are `weight` (flat index into the layer's weight) and `endpoint`."""
    result = CheckpointResult()
    for name, per_layer in scores.items():
        for li, (layer, s) in enumerate(zip(layers, per_layer, strict=True)):
            result.units += [
                {
                    **key,
                    "layer": layer.name,
                    item: unit_ids[li][i] if unit_ids else i,
                    "utility": name,
                    "score": float(s[i]),
                    "reference" if item == "unit" else "endpoint": float(references[li][i]),
                    "shock_l1": float(l1[li][i]),
                    "shock_kl": float(kl[li][i]),
                }
                for i in range(len(s))
            ]
    rankings = {**{n: (s, s) for n, s in scores.items()}, ORACLE: (l1, kl)}
    for name, (by_l1, by_kl) in rankings.items():
        for li, layer in enumerate(layers):
            result.layers.append(
                {
                    **key,
                    "utility": name,
                    "layer": layer.name,
                    **_layer_metrics(by_l1[li], by_kl[li], l1[li], kl[li], fraction),
                }
            )
        result.summary.append(
            {
                **key,
                "utility": name,
                f"n_{item}s": sum(len(x) for x in l1),
                **_summary_metrics(by_l1, by_kl, l1, kl, fraction),
            }
        )
    return result


def _layer_metrics(by_l1, by_kl, l1, kl, fraction: float) -> dict:
    """One layer's Spearman and Shock@fraction (arrays [units])."""
    return {
        "spearman_l1": spearman(by_l1, l1),
        "spearman_kl": spearman(by_kl, kl),
        "shock5_l1": shock_at([by_l1], [l1], fraction),
        "shock5_kl": shock_at([by_kl], [kl], fraction),
    }


def _summary_metrics(by_l1, by_kl, l1, kl, fraction: float) -> dict:
    """Over all layers: Spearman pooled (one ranking of every unit) and per layer (the mean
    of the layers' own; layers where a side is constant are left out), Shock@fraction."""
    metrics = {}
    for name, scores, shocks in (("l1", by_l1, l1), ("kl", by_kl, kl)):
        metrics[f"spearman_{name}_pooled"] = spearman(
            np.concatenate(scores), np.concatenate(shocks)
        )
        metrics[f"spearman_{name}_per_layer"] = per_layer_spearman(scores, shocks)
    metrics["shock5_l1"] = shock_at(by_l1, l1, fraction)
    metrics["shock5_kl"] = shock_at(by_kl, kl, fraction)
    return metrics


def per_layer_spearman(scores: list[np.ndarray], shocks: list[np.ndarray]) -> float:
    """Mean over layers of Spearman(score, shock) within the layer; nan if no layer has one."""
    values = [spearman(s, x) for s, x in zip(scores, shocks, strict=True)]
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()
