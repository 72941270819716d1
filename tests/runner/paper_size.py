"""Per-task rows the size of the paper's Permuted MNIST study (Fig. 3: 4 activations × 9
curves × 800 tasks × 15 seeds = 432,000 rows), with the columns a real run writes, for
checking that the dashboard stays fast and its page reasonable at that scale."""

from __future__ import annotations

import numpy as np
import pandas as pd

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "silu")
CURVES = (("bp", "none"), ("cbp", "activation"), ("cbp", "contribution"),
          ("cbp", "mc_contribution"), ("cbp", "mc_adaptable"), ("cbp", "loss_gradient"),
          ("cbp", "gxi"), ("cbp", "gxd"), ("cbp", "random"))  # fmt: skip
LAYERS = 4
DIAGNOSTICS = (("dormant_fraction", 0.05, 0.02), ("dead_fraction", 0.02, 0.01),
               ("effective_rank", 150.0, 20.0), ("stable_rank", 120.0, 15.0),
               ("feature_norm", 8.0, 1.0), ("weight_magnitude", 0.05, 0.005))  # fmt: skip
"""(name, typical value, seed spread) of each feature diagnostic, per layer and mean."""
CONFIG = {
    "experiment": "permuted-mnist", "stage": "final", "replacement_rate": 1e-4,
    "maturity": 100, "utility_decay": 0.99, "compensation": "reference",
    "optimizer": "sgd", "momentum": 0.0, "batch_size": 64, "permutation_seed": 0,
    "data": "mnist", "hidden": "256,256,256,256", "norm": "none", "head_reset_every": 0,
    "probe_size": 2000, "code_version": "0.1.0", "diagnostics_version": "1",
}  # fmt: skip


def paper_rows(tasks: int = 800, seeds: int = 15, activations: int = 4,
               curves: int = 9, seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """Rows of `activations` × `curves` × `seeds` runs of `tasks` tasks each: bp loses
    accuracy over the tasks, each CBP utility keeps a level of its own; diagnostics (mean
    and per layer) drift with it; seed noise throughout."""
    rng = np.random.default_rng(seed)
    grid = [(a, m, u, s) for a in ACTIVATIONS[:activations] for m, u in CURVES[:curves]
            for s in range(seeds)]  # fmt: skip
    n = len(grid) * tasks
    task = np.tile(np.arange(tasks), len(grid))
    run = np.repeat(np.arange(len(grid)), tasks)
    activation, method, utility, seed_of = (np.array(c, dtype=object)[run]
                                            for c in zip(*grid, strict=True))  # fmt: skip
    level = np.array([0.0 if m == "bp" else 0.02 * (i % len(CURVES)) for _, m, u, _ in grid
                      for i in [CURVES.index((m, u))]])[run]  # fmt: skip
    decay = np.where(method == "bp", 0.25 * task / tasks, 0.02 * task / tasks)
    accuracy = np.clip(0.93 - decay + level - 0.1 + rng.normal(0, 0.01, n), 0, 1)
    frame = pd.DataFrame({
        **CONFIG, "method": method, "utility": utility, "activation": activation,
        "lr": np.where(method == "bp", 0.003, 0.01), "seed": seed_of.astype(int),
        "task": task, "trial_id": [f"t{r}" for r in run], "accuracy": accuracy,
        "train_accuracy": np.clip(accuracy - 0.02 + rng.normal(0, 0.01, n), 0, 1),
        "loss": 0.3 + decay * 2 + rng.gamma(2, 0.02, n), "resets": rng.integers(0, 20, n),
        "examples_seen": (task + 1) * 60_000, "seconds": rng.gamma(4, 2, n),
        "config_hash": [f"h{r % (len(grid) // seeds or 1)}" for r in run],
        "grad_norm": rng.gamma(5, 0.2, n), "diagnostics_seconds": rng.gamma(2, 0.01, n),
        "mean_age": rng.gamma(5, 500, n),
    })  # fmt: skip
    for name, base, spread in DIAGNOSTICS:
        layers = [np.abs(base * (1 + decay) + rng.normal(0, spread, n)) for _ in range(LAYERS)]
        frame[name] = np.mean(layers, axis=0)
        for i, values in enumerate(layers):
            frame[f"{name}_l{i}"] = values
    return frame
