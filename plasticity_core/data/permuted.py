"""Pixel and label permutations that define the tasks of an Online Permuted MNIST stream.

Task ``t`` shows every image with its 784 pixels reordered by one fixed random
permutation, or (label-permuted tasks) relabels the classes by one, or both. A
permutation depends only on ``(permutation_seed, t)``, never on global RNG state or call
order, so it is the same in every process and on every machine. The permutation seed is
kept separate from the training seed and shared across methods: every method compared in
an experiment then sees exactly the same task sequence, and differences in results come
from the methods, not the tasks.
"""

from __future__ import annotations

import operator

import numpy as np
import torch

from plasticity_core.errors import ConfigError


def task_permutation(task: int, permutation_seed: int, n_pixels: int = 784) -> torch.Tensor:
    """Return the pixel permutation of task ``task``: int64 [n_pixels], a reordering of 0..n-1.

    Apply as ``x[:, perm]`` to images of shape [N, n_pixels]. Task 0 is permuted too.
    """
    task = _non_negative_int("task", task)
    permutation_seed = _non_negative_int("permutation_seed", permutation_seed)
    n_pixels = _non_negative_int("n_pixels", n_pixels)
    if n_pixels == 0:
        raise ConfigError("n_pixels must be >= 1, got 0")
    # A SeedSequence of both values gives independent, reproducible streams per task.
    perm = np.random.default_rng([permutation_seed, task]).permutation(n_pixels)
    return torch.from_numpy(perm.astype(np.int64))


LABEL_STREAM = 1
"""The spawn key of the label permutations' stream: the second child (`SeedSequence.spawn`)
of the task's pixel-stream seed sequence, independent of it, so adding labels left every
pixel permutation as it was."""


def task_label_permutation(task: int, permutation_seed: int, classes: int = 10) -> torch.Tensor:
    """Return the relabelling of task ``task``: int64 [classes], a reordering of 0..classes-1.

    A label-permuted task (the label-permuted streams of UPGD, Elsayed & Mahmood 2024; Lyle
    et al. 2023) keeps the inputs and maps class ``y`` to ``perm[y]``: apply as ``perm[y]``
    to labels of shape [N]. As with the pixels, task 0 is permuted too.
    """
    task = _non_negative_int("task", task)
    permutation_seed = _non_negative_int("permutation_seed", permutation_seed)
    classes = _non_negative_int("classes", classes)
    if classes == 0:
        raise ConfigError("classes must be >= 1, got 0")
    seeds = np.random.SeedSequence([permutation_seed, task], spawn_key=(LABEL_STREAM,))
    perm = np.random.default_rng(seeds).permutation(classes)
    return torch.from_numpy(perm.astype(np.int64))


def _non_negative_int(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ConfigError(f"{name} must be a non-negative integer, got {value!r}") from None
    if number < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {number}")
    return number
