"""Reset-cost assay (paper §5.1, Appendix A.2): does a utility's ranking predict the shock
of resetting a unit?

Recipe, for each activation and seed:
1. train the assay network (784 -> [256] x 4 -> 10, Kaiming uniform, SGD lr 0.01, batch 64)
   on Online Permuted MNIST, one epoch per task;
2. at each checkpoint k (k tasks completed; 0 = at initialisation), on the data of the task
   last trained (task k-1; task 0's for k = 0):
   - calibration set (examples of the task's *training* split, as CBP would see them):
     every registered utility, with reference r_i = the unit's mean activation on the
     calibration set (or, with reference="ema", CBP's bias-corrected training EMA);
   - probe set (the task's *held-out* split, disjoint from calibration): clamp each hidden
     unit alone to r_i and measure the realized shock (logit L1, KL);
3. per utility: tie-aware Spearman rho between score and realized shock, both `pooled` (all
   hidden units of the network in one ranking) and `per_layer` (the mean of each layer's
   own Spearman; the paper does not say which it reports, and a per-layer constant in a
   score moves only the pooled value), and Shock@5% (mean shock of each layer's
   lowest-scoring 5%). The `oracle` ranks by the realized shock itself: its Shock@5% is the
   least achievable.

With the embedded 5,000-digit MNIST the held-out split has 1,000 examples, so the probe set
holds at most 1,000 (the paper's 2,048 needs full MNIST); calibration draws up to 2,048 of
the 4,000 training examples.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from plasticity_core.data.catalog import check_source
from plasticity_core.data.permuted import task_permutation
from plasticity_core.errors import ConfigError
from plasticity_core.experiments.assay_rows import (
    CheckpointResult,
    assay_rows,
    to_numpy,
)
from plasticity_core.experiments.permuted_mnist import PermutedMNIST, PermutedMNISTConfig
from plasticity_core.experiments.weight_reset_cost import weight_assay
from plasticity_core.models.mlp import check_architecture
from plasticity_core.shock import clamp_shocks
from plasticity_core.step import MLPStep
from plasticity_core.taps import TAPS
from plasticity_core.utility import UTILITIES, UtilityInputs

NAME = "reset-cost"
REFERENCES = ("calibration", "ema")
LEVELS = ("unit", "weight")
PAPER = {"checkpoints": (0, 5, 10, 20, 30), "seeds": 3, "calibration": 2048, "probe": 2048}
"""The paper's Table 3 MLP setting where it differs from the defaults (30 tasks, assayed at
initialisation and after 5, 10, 20 and 30 of them; 3 seeds; 2,048 calibration and probe
examples of full MNIST: the embedded split caps the probe at its 1,000 held-out digits)."""


@dataclass(frozen=True)
class ResetCostConfig:
    activations: tuple[str, ...] = ("relu", "silu", "leaky_relu", "tanh")
    seeds: int = 3
    """Seeds 0 .. seeds-1 per activation."""
    checkpoints: tuple[int, ...] = (0, 2, 5)
    """Tasks completed when the network is assayed, 0 = at initialisation (paper: 0, 5, 10,
    20, 30 of 30 tasks)."""
    norm: str = "none"
    hidden: tuple[int, ...] = (256, 256, 256, 256)
    lr: float = 0.01
    batch_size: int = 64
    calibration: int = 2048
    """Calibration examples (capped by the training split)."""
    probe: int = 2048
    """Probe examples (capped by the held-out split: 1,000 for the embedded data)."""
    reference: str = "calibration"
    """'calibration': r = mean activation on the calibration set; 'ema': CBP's EMA."""
    fraction: float = 0.05
    """Shock@fraction: the share of each layer's lowest-scoring units."""
    level: str = "unit"
    """'unit': reset single units (the paper's assay); 'weight': single weights set to their
    reset endpoint, ranked by the weight utilities (`weight_reset_cost.py`)."""
    weights_per_layer: int = 256
    """level weight: weights assayed per weight matrix, drawn uniformly."""
    data: str = "embedded"
    permutation_seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "activations", tuple(self.activations))
        object.__setattr__(self, "checkpoints", tuple(sorted(set(self.checkpoints))))
        for activation in self.activations:
            check_architecture(self.hidden, activation, self.norm)
        if not self.activations:
            raise ConfigError("give at least one activation")
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds}")
        if not self.checkpoints or min(self.checkpoints) < 0:
            raise ConfigError(f"checkpoints must be task counts >= 0, got {self.checkpoints}")
        if self.reference == "ema" and 0 in self.checkpoints:
            raise ConfigError("reference ema needs checkpoints >= 1: CBP tracks nothing before "
                              "training")  # fmt: skip
        if self.calibration < 2 or self.probe < 1:
            raise ConfigError("calibration needs >= 2 examples and probe >= 1")
        if self.reference not in REFERENCES:
            raise ConfigError(
                f"unknown reference {self.reference!r}; choose from: {', '.join(REFERENCES)}"
            )
        if self.level not in LEVELS:
            raise ConfigError(f"unknown level {self.level!r}; choose from: {', '.join(LEVELS)}")
        if self.level == "weight" and self.reference == "ema":
            raise ConfigError("level weight has no references: drop --reference ema")
        if self.weights_per_layer < 1:
            raise ConfigError(f"weights_per_layer must be >= 1, got {self.weights_per_layer}")
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"fraction must be in (0, 1], got {self.fraction}")
        check_source(self.data)

    def training(self, activation: str, seed: int) -> PermutedMNISTConfig:
        """The assay network's training run. With reference='ema' CBP tracks references
        but never resets (replacement rate 0)."""
        return PermutedMNISTConfig(
            tasks=max(1, *self.checkpoints),
            seed=seed,
            permutation_seed=self.permutation_seed,
            data=self.data,
            hidden=self.hidden,
            activation=activation,
            norm=self.norm,
            # ema: CBP's references, never used to rank (bp: none tracked).
            method="cbp" if self.reference == "ema" else "bp",
            utility="activation" if self.reference == "ema" else "",
            replacement_rate=0.0,
            lr=self.lr,
            batch_size=self.batch_size,
            device=self.device,
        )


def run(config: ResetCostConfig) -> Iterator[CheckpointResult]:
    """Train and assay every (activation, seed); yields one result per checkpoint."""
    last = max(config.checkpoints)
    for activation in config.activations:
        for seed in range(config.seeds):
            experiment = PermutedMNIST(config.training(activation, seed))
            if 0 in config.checkpoints:
                yield assay(experiment, config, 0)
            if last == 0:
                continue
            for row in experiment:
                completed = row["task"] + 1
                if completed in config.checkpoints:
                    yield assay(experiment, config, completed)
                if completed == last:
                    break


def assay(experiment: PermutedMNIST, config: ResetCostConfig, checkpoint: int) -> CheckpointResult:
    """Utilities vs realized clamp shocks of every hidden unit of the experiment's network,
    `checkpoint` tasks into its training, on the data of the task it trained last."""
    start = time.perf_counter()
    cfg = experiment.config
    model = experiment.model
    task = max(checkpoint - 1, 0)
    pixels = task_permutation(task, cfg.permutation_seed).to(experiment.x_train.device)
    rng = torch.Generator().manual_seed(
        int(np.random.SeedSequence([cfg.seed, checkpoint]).generate_state(1)[0])
    )
    n_cal = min(config.calibration, len(experiment.y_train))
    chosen = torch.randperm(len(experiment.y_train), generator=rng)[:n_cal].to(pixels.device)
    x_cal, y_cal = experiment.x_train[chosen][:, pixels], experiment.y_train[chosen]
    x_probe = experiment.x_test[: config.probe][:, pixels]

    key = {
        "activation": cfg.activation,
        "norm": cfg.norm,
        "seed": cfg.seed,
        "checkpoint": checkpoint,
        "data_task": task,
        "reference_mode": config.reference,
    }
    if config.level == "weight":
        result = weight_assay(model, (x_cal, y_cal), x_probe, config, rng, key)
        for row in result.summary:
            row.update(calibration=n_cal, probe=len(x_probe), seconds=result.seconds)
        return result
    step = MLPStep(model, frozenset(TAPS))
    step(x_cal, y_cal)
    layers = model.unit_layers()
    if config.reference == "ema":
        tracked = experiment.method.reference()
        references = [tracked[sl] for sl in experiment.method.slices]
    else:
        references = [tap.h.mean(0) for tap in step.taps]

    # Only `random` draws from it; seeded from (seed, task) so the assay is reproducible.
    seed = int(torch.randint(2**62, (1,), generator=rng))
    generator = torch.Generator(x_cal.device).manual_seed(seed)
    scores: dict[str, list[np.ndarray]] = {}
    for name in UTILITIES:
        fn = UTILITIES.get(name).fn
        scores[name] = [
            to_numpy(fn(UtilityInputs(tap, r, u.incoming.weight, u.outgoing.weight, generator)))
            for tap, r, u in zip(step.taps, references, layers, strict=True)
        ]
    shocks = [clamp_shocks(model, u, x_probe, r) for u, r in zip(layers, references, strict=True)]
    l1 = [to_numpy(s[0]) for s in shocks]
    kl = [to_numpy(s[1]) for s in shocks]

    result = assay_rows(key, layers, scores, [_unit_references(r, u) for r, u in
                                              zip(references, layers, strict=True)], l1, kl,
                        config.fraction)  # fmt: skip
    result.seconds = time.perf_counter() - start
    for row in result.summary:
        row.update(calibration=n_cal, probe=len(x_probe), seconds=result.seconds)
    return result


def _unit_references(reference: torch.Tensor, layer) -> np.ndarray:
    """The reference column of a layer's unit rows: r_i, or NaN for units of several
    features (crelu: one reference per feature, both used by the clamp; not one number)."""
    if layer.features == 1:
        return to_numpy(reference)
    return np.full(layer.n_units, np.nan)
