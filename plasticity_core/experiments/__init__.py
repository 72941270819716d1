"""Experiment protocols, by name: each module registers itself in EXPERIMENTS.

Modules named in the environment variable PLASTICITY_EXPERIMENTS (comma-separated, e.g.
`my_lab.experiments`) are imported too, so the command line, sweeps and Ray workers find
experiments registered outside this package.
"""

import importlib
import os

from plasticity_core.experiments import (  # noqa: F401 (registers)
    continuous_cifar,
    permuted_mnist,
    slowly_changing_regression,
)
from plasticity_core.experiments.registry import EXPERIMENTS, Experiment, StepCost

PLUGINS_ENV = "PLASTICITY_EXPERIMENTS"

for _module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
    importlib.import_module(_module)

__all__ = ["EXPERIMENTS", "PLUGINS_ENV", "Experiment", "StepCost"]
