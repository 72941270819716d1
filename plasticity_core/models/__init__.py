from plasticity_core.models.activations import ACTIVATIONS, Activation
from plasticity_core.models.mlp import MLP, NORMS
from plasticity_core.models.units import UnitLayer

__all__ = ["ACTIVATIONS", "MLP", "NORMS", "Activation", "UnitLayer"]
