"""Y-axis titles with their units, one wording per row column for every view."""

from __future__ import annotations

from runner.aggregate import metric_of

TITLES = {
    "accuracy": "test accuracy (fraction)",
    "train_accuracy": "train accuracy (fraction, online)",
    "loss": "training loss (cross-entropy, nats)",
    "dormant_fraction": "dormant units (fraction, τ=0.025)",
    "dormant_fraction_tau0": "dormant units (fraction, τ=0)",
    "dead_fraction": "dead units (fraction)",
    "effective_rank": "effective rank (units)",
    "stable_rank": "stable rank (units, δ=0.01)",
    "feature_norm": "feature norm ‖h(x)‖₂",
    "weight_magnitude": "mean |w|",
    "grad_norm": "gradient L2 norm (mean over steps)",
    "mean_age": "mean unit age (steps)",
}
"""Row column -> axis title; a regression's metric `loss` is its squared error (below)."""


def axis_title(column: str, experiment: str = "") -> str:
    """The y-axis title of a row column in an experiment's views: 'test accuracy
    (fraction)'; the metric of a regression experiment (loss) is 'squared error'."""
    if column == "loss" and metric_of(experiment) == "loss":
        return "squared error (online, per task)"
    return TITLES.get(column, column.replace("_", " "))


def delta_title(column: str, experiment: str, versus: str) -> str:
    """'Δ test accuracy vs bp (fraction)': a difference keeps the column's unit."""
    title = axis_title(column, experiment)
    name, paren, unit = title.partition(" (")
    return f"Δ {name} vs {versus}" + (f" ({unit}" if paren else "")
