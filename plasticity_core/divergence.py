"""When a task's training has diverged: the bounds `TaskLoop.finish_task` checks.

A non-finite mean training loss has diverged. A run can also blow up and stay finite
(Permuted MNIST at lr 1e9: mean loss 1.9e30, then 2.6e10, then 4.7e8, at 10% accuracy),
so a task's mean training loss is bounded as well, relative to the loss of a network whose
outputs are all zero (the loss of predicting nothing):

- cross-entropy over C classes: zero logits are a uniform prediction, loss ln C. The task
  has diverged when its loss exceeds 10 ln C (the true class's probability, a geometric
  mean over the examples, is below C^-10) *and* its train accuracy is at chance (at most
  1/C + 0.05).
- squared error: a zero output's loss is the mean square of the task's targets. The task
  has diverged when its loss exceeds 100 times that (errors ten times the targets' root
  mean square; 100 is 10 squared, the same factor on the outputs' scale).

Why these numbers: a network that stops learning (loss of plasticity, dead units: the effect
under study) predicts about uniformly or about zero, so it stays well inside the bounds.
Measured in short runs (3 tasks of 16 units; 6 periods of 2,000 steps): runs that learn
reach at most 0.9 ln C (Permuted MNIST, bp at lr 1) and 2.9 times the targets' mean square
(slowly-changing regression, bp at lr 0.7); blown-up ones sit orders of magnitude past the
bounds (bp at lr 1 on the regression: 340 times on its first task, 12,000 after; Permuted
MNIST at lr 1e6: 3e28 ln C). Between them, Permuted MNIST at lr 10 reaches 6.8 ln C on its
first task and then has only dead units (loss ln C, chance accuracy): it is not called
diverged, as its rows are those of a total loss of plasticity.
The chance condition keeps a network that still classifies but is confidently wrong on a
few examples from counting as diverged; the 0.05 margin covers class imbalance (full
MNIST's largest class is 11%; a blown-up network tends to predict one class) and a task's
sampling noise.
"""

from __future__ import annotations

import math

CROSS_ENTROPY_FACTOR = 10.0
"""Diverged above this many times ln C, a uniform prediction's cross-entropy."""
CHANCE_MARGIN = 0.05
"""Train accuracy at most 1/C plus this counts as chance."""
SQUARED_ERROR_FACTOR = 100.0
"""Diverged above this many times the targets' mean square, a zero output's squared error."""


def divergence(
    loss: float,
    *,
    classes: int | None = None,
    accuracy: float | None = None,
    target_mean_square: float | None = None,
) -> str | None:
    """Which bound a task's mean training loss broke, with its numbers; None if none did.

    loss: the task's mean training loss per example (nats for cross-entropy);
    classes, accuracy: a classification's output count C and train accuracy in [0, 1];
    target_mean_square: a regression's mean of y^2 over the task's training examples
    (None or 0: only the finiteness check applies).
    """
    if not math.isfinite(loss):
        return f"training loss became {loss}"
    if classes is not None and accuracy is not None:
        return _classification(loss, accuracy, classes)
    if target_mean_square:
        return _regression(loss, target_mean_square)
    return None


def _classification(loss: float, accuracy: float, classes: int) -> str | None:
    bound = CROSS_ENTROPY_FACTOR * math.log(classes)
    chance = 1 / classes + CHANCE_MARGIN
    if loss <= bound or accuracy > chance:
        return None
    return (
        f"mean training loss {loss:.4g} > {bound:.4g} = {CROSS_ENTROPY_FACTOR:g} x ln {classes}, "
        f"a uniform prediction's loss, at chance train accuracy {accuracy:.3f} <= "
        f"{chance:.3f} = 1/{classes} + {CHANCE_MARGIN:g}"
    )


def _regression(loss: float, target_mean_square: float) -> str | None:
    bound = SQUARED_ERROR_FACTOR * target_mean_square
    if loss <= bound:
        return None
    return (
        f"mean training loss {loss:.4g} > {bound:.4g} = {SQUARED_ERROR_FACTOR:g} x the "
        f"targets' mean square {target_mean_square:.4g}, a zero output's loss"
    )
