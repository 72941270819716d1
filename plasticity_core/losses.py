"""The training losses of the hand-written MLP step, and the seed rows each gives it.

The step's backward pass starts from a seed matrix [rows, outputs] (see `step.MLPStep`): the
loss gradient dl/dz of every example, then, when a utility asks, the rows whose backward
gives dz_target/dh (one per example) and the |dz_c/dh| of every output c. A loss says what
its gradient and its "target output" are:

- `cross_entropy` (classification): the batch-mean cross-entropy; the target output is the
  true class's logit z_y, and the step also counts correct predictions.
- `squared_error` (regression, one output): the batch mean of (y_hat - y)^2 (PyTorch's
  MSELoss, as the slowly-changing-regression reference code trains with); the target
  output is y_hat itself, so GXD there is |dy_hat/dh * (h - r)|.

Shapes: logits z [batch, outputs] for one run, [runs, batch, outputs] for a pack; targets
[batch] / [runs, batch]. Sums are per run: a scalar, or [runs].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from plasticity_core.registry import Registry


def per_run_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over everything but a pack's run axis: [batch, ...] -> scalar, [runs, batch, ...]
    -> [runs] (the caller says which by the target's rank)."""
    return t.sum() if t.ndim <= 2 else t.flatten(1).sum(1)


class CrossEntropy:
    classification = True

    def __init__(self, n_outputs: int, device, dtype) -> None:
        self.eye = torch.eye(n_outputs, device=device, dtype=dtype)

    def loss_and_seed(
        self, z: torch.Tensor, y: torch.Tensor, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sum of the examples' losses, dl/dz of the batch mean, target rows one-hot)."""
        logp = F.log_softmax(z, dim=-1)
        onehot = self.eye[y]
        loss = -per_run_sum(logp.gather(-1, y.unsqueeze(-1)))
        return loss, (logp.exp() - onehot) / batch, onehot

    def correct(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Correctly classified examples: a scalar, or [runs]."""
        hits = z.argmax(-1) == y
        return hits.sum() if hits.ndim == 1 else hits.sum(1)


class SquaredError:
    classification = False

    def __init__(self, n_outputs: int, device, dtype) -> None:
        if n_outputs != 1:
            raise ValueError(f"squared_error has one output, got {n_outputs}")
        self.eye = torch.ones(1, 1, device=device, dtype=dtype)

    def loss_and_seed(
        self, z: torch.Tensor, y: torch.Tensor, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        error = z - y.unsqueeze(-1)
        return per_run_sum(error * error), error * (2.0 / batch), torch.ones_like(z)


LOSSES: Registry[type] = Registry("loss")
LOSSES.add("cross_entropy", CrossEntropy)
LOSSES.add("squared_error", SquaredError)
