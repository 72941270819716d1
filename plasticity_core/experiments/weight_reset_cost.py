"""The reset-cost assay at the level of single weights (`plasticity assay --level weight`):
does a weight utility's ranking predict the shock of resetting that weight?

The recipe is the unit assay's (`reset_cost.py`: the same trained networks, checkpoints,
calibration and probe sets), with weights in place of units:
- calibration: every weight utility (`weight_utility.py`: magnitude |w|, gradient |w g|,
  gxd_weight, random), with the batch-mean loss gradient and the mean |dz_y/dW| over the
  calibration set;
- probe: each sampled weight alone is set to its reset endpoint E[w_new] (the mean of its
  init distribution, 0 here) and the realized shock measured (`weight_shock.py`), in
  float64 on a copy of the network;
- per weight matrix (the hidden layers' and the head's), `weights_per_layer` weights drawn
  uniformly (seeded by seed and checkpoint) are assayed; Spearman pooled and per matrix,
  and Shock@fraction over each matrix's lowest-scoring share of its sampled weights, as
  for units.

gxd_weight is the first-order term of the realized change of the target logit, so its
Spearman measures how far first order carries for a jump to 0, as GXD's does for units.
"""

from __future__ import annotations

import copy
import time
from types import SimpleNamespace

import numpy as np
import torch

from plasticity_core.experiments.assay_rows import CheckpointResult, assay_rows, to_numpy
from plasticity_core.step import MLPStep
from plasticity_core.taps import WEIGHT_TAPS
from plasticity_core.weight_shock import weight_clamp_shocks
from plasticity_core.weight_utility import WEIGHT_UTILITIES, WeightInputs


def weight_assay(
    model,
    calibration: tuple[torch.Tensor, torch.Tensor],
    x_probe: torch.Tensor,
    config,
    rng: torch.Generator,
    key: dict,
) -> CheckpointResult:
    """Weight utilities vs realized shocks of a sample of every weight matrix's weights
    (`config`: a `reset_cost.ResetCostConfig`; `key`: the checkpoint's identifying columns)."""
    start = time.perf_counter()
    # A single weight's shock is small (1e-5 logits and 1e-9 nats at the bottom 5%):
    # in float32 the logit rounding (1e-6) and the KL's cancellation would be most of it.
    model = copy.deepcopy(model).double()
    x_probe = x_probe.double()
    step = MLPStep(model, frozenset(WEIGHT_TAPS))
    step(calibration[0].double(), calibration[1])
    position = {id(p): i for i, p in enumerate(step.params)}
    seed = int(torch.randint(2**62, (1,), generator=rng))
    generator = torch.Generator(x_probe.device).manual_seed(seed)
    names, chosen, scores, l1, kl = [], [], {n: [] for n in WEIGHT_UTILITIES}, [], []
    for init, name in zip(model.weight_inits(), _matrix_names(model), strict=True):
        w, i = init.weight, position[id(init.weight)]
        k = min(config.weights_per_layer, w.numel())
        flat = torch.randperm(w.numel(), generator=rng)[:k].sort().values.to(w.device)
        inputs = WeightInputs(w, step.grads[i], step.target_weight_grads[i], init.mean,
                              generator)  # fmt: skip
        for utility in WEIGHT_UTILITIES:
            scores[utility].append(
                to_numpy(WEIGHT_UTILITIES.get(utility).fn(inputs).view(-1)[flat])
            )
        shocks = weight_clamp_shocks(model, _linear(model, w), x_probe, flat, init.mean)
        names.append(SimpleNamespace(name=name))
        chosen.append(flat.tolist())
        l1.append(to_numpy(shocks[0]))
        kl.append(to_numpy(shocks[1]))
    endpoints = [np.zeros(len(c)) for c in chosen]
    result = assay_rows({**key, "level": "weight"}, names, scores, endpoints, l1, kl,
                   config.fraction, chosen, item="weight")  # fmt: skip
    result.seconds = time.perf_counter() - start
    return result


def _matrix_names(model) -> list[str]:
    """The weight matrices' names, in `model.weight_inits()` order."""
    by_id = {id(p): name for name, p in model.named_parameters()}
    return [by_id[id(init.weight)] for init in model.weight_inits()]


def _linear(model, weight: torch.Tensor) -> torch.nn.Linear:
    return next(m for m in model.modules() if getattr(m, "weight", None) is weight)
