"""Experiment protocols, by name: each module registers itself in EXPERIMENTS."""

from plasticity_core.experiments import continuous_cifar, permuted_mnist  # noqa: F401 (registers)
from plasticity_core.experiments.registry import EXPERIMENTS, Experiment, StepCost

__all__ = ["EXPERIMENTS", "Experiment", "StepCost"]
