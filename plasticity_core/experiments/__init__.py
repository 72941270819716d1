"""Experiment protocols, by name."""

from plasticity_core.experiments import continuous_cifar, permuted_mnist
from plasticity_core.registry import Registry

EXPERIMENTS: Registry = Registry("experiment")
EXPERIMENTS.add(permuted_mnist.NAME, permuted_mnist)
EXPERIMENTS.add(continuous_cifar.NAME, continuous_cifar)
