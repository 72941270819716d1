"""Core library: models, utility measures, the CBP reset operator, methods, data, experiments.

Pure PyTorch/numpy; never imports Ray.
"""

__version__ = "0.1.0"
