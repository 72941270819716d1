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

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from plasticity_core.data.catalog import check_source
from plasticity_core.data.permuted import task_permutation
from plasticity_core.errors import ConfigError
from plasticity_core.experiments.permuted_mnist import PermutedMNIST, PermutedMNISTConfig
from plasticity_core.models.mlp import check_architecture
from plasticity_core.shock import clamp_shocks, shock_at, spearman
from plasticity_core.step import MLPStep
from plasticity_core.taps import TAPS
from plasticity_core.utility import UTILITIES, UtilityInputs

NAME = "reset-cost"
ORACLE = "oracle"
REFERENCES = ("calibration", "ema")
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
            _numpy(fn(UtilityInputs(tap, r, u.incoming.weight, u.outgoing.weight, generator)))
            for tap, r, u in zip(step.taps, references, layers, strict=True)
        ]
    shocks = [clamp_shocks(model, u, x_probe, r) for u, r in zip(layers, references, strict=True)]
    l1 = [_numpy(s[0]) for s in shocks]
    kl = [_numpy(s[1]) for s in shocks]

    key = {
        "activation": cfg.activation,
        "norm": cfg.norm,
        "seed": cfg.seed,
        "checkpoint": checkpoint,
        "data_task": task,
        "reference_mode": config.reference,
    }
    result = _rows(key, layers, scores, [_numpy(r) for r in references], l1, kl, config.fraction)
    result.seconds = time.perf_counter() - start
    for row in result.summary:
        row.update(calibration=n_cal, probe=len(x_probe), seconds=result.seconds)
    return result


def _rows(
    key, layers, scores, references, l1, kl, fraction: float, unit_ids=None
) -> CheckpointResult:
    """Unit, layer and summary rows of one checkpoint; arrays are [units] per layer
    (`unit_ids`: per layer, the unit index of each array entry when a subset was assayed)."""
    result = CheckpointResult()
    for name, per_layer in scores.items():
        for li, (layer, s) in enumerate(zip(layers, per_layer, strict=True)):
            result.units += [
                {
                    **key,
                    "layer": layer.name,
                    "unit": unit_ids[li][i] if unit_ids else i,
                    "utility": name,
                    "score": float(s[i]),
                    "reference": float(references[li][i]),
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
                "n_units": sum(len(x) for x in l1),
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


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()
