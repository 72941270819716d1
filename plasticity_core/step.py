"""The MLP training step, written by hand: forward, loss, backward, and the utility taps.

One step computes, without an autograd graph,
- per-parameter gradients of the batch-mean cross-entropy (aligned with
  `model.parameters()`, written into preallocated buffers);
- for every hidden layer the taps a utility may need: the post-activations `h`, and, only
  when asked for, the per-example gradients dl/dh, dz_y/dh (target logit) and
  sum_c |dz_c/dh| (all logits).

The extra gradients ride along as extra rows of the same backward pass: the seed matrix
stacks [dl/dz; onehot(y); one block of one-hot rows per class], so GXD's target-logit
backward costs a wider matmul rather than a second pass. Autograd stays the independent
check (tests/core/test_step.py) and the engine for conv nets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from plasticity_core.models.mlp import MLP

TAPS = ("loss_grad", "target_grad", "logits_grad")
"""What a utility may ask for beyond h; see `LayerTaps`."""


@dataclass
class LayerTaps:
    """What one step saw of one hidden layer; every tensor is [batch, units]."""

    h: torch.Tensor
    """Post-activation values."""
    loss_grad: torch.Tensor | None = None
    """Per-example gradient of that example's cross-entropy w.r.t. h."""
    target_grad: torch.Tensor | None = None
    """Gradient of the target logit z_y w.r.t. h."""
    logits_grad: torch.Tensor | None = None
    """sum over classes c of |dz_c/dh|."""


class MLPStep:
    """Callable `(x [B, n_in], y [B]) -> None` that fills `grads`, `taps` and accumulators."""

    def __init__(self, model: MLP, needs: frozenset[str] = frozenset()) -> None:
        unknown = set(needs) - set(TAPS)
        if unknown:
            raise ValueError(f"unknown taps {sorted(unknown)}; known: {TAPS}")
        self.model = model
        self.needs = needs
        self.params = list(model.parameters())
        self.grads = [torch.zeros_like(p) for p in self.params]
        self.taps: list[LayerTaps] = []
        p0 = self.params[0]
        self.loss_sum = torch.zeros((), device=p0.device, dtype=p0.dtype)
        self.correct = torch.zeros((), device=p0.device, dtype=torch.long)
        n_classes = model.head.out_features
        self._eye = torch.eye(n_classes, device=p0.device, dtype=p0.dtype)

    def reset_accumulators(self) -> None:
        self.loss_sum.zero_()
        self.correct.zero_()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        model = self.model
        act = model.act
        inputs, pre, post, norm_stats = [], [], [], []
        for block in model.blocks:
            inputs.append(x)
            a = torch.addmm(block.linear.bias, x, block.linear.weight.t())
            if block.norm is not None:
                n = block.norm
                a_hat_scaled, mean, rstd = torch.native_layer_norm(
                    a, n.normalized_shape, n.weight, n.bias, n.eps
                )
                norm_stats.append(((a - mean) * rstd, rstd))
                a = a_hat_scaled
            else:
                norm_stats.append(None)
            x = act.fn(a)
            pre.append(a)
            post.append(x)
        z = torch.addmm(model.head.bias, x, model.head.weight.t())

        batch = y.shape[0]
        logp = F.log_softmax(z, dim=1)
        self.loss_sum -= logp.gather(1, y[:, None]).sum()
        self.correct += (z.argmax(1) == y).sum()
        onehot = self._eye[y]
        # Rows of the seed matrix: the loss gradient (scaled to the batch mean, which the
        # weight gradients need), then the optional attribution rows.
        seeds = [(logp.exp() - onehot) / batch]
        if "target_grad" in self.needs:
            seeds.append(onehot)
        if "logits_grad" in self.needs:
            seeds.append(self._eye.repeat_interleave(batch, dim=0))
        g = torch.cat(seeds) if len(seeds) > 1 else seeds[0]

        grads = iter(reversed(self.grads))
        g_bias, g_weight = next(grads), next(grads)
        torch.sum(g[:batch], 0, out=g_bias)
        torch.mm(g[:batch].t(), x, out=g_weight)
        weight = model.head.weight

        taps = []
        for i in range(len(model.blocks) - 1, -1, -1):
            block = model.blocks[i]
            g_h = torch.mm(g, weight)  # [rows, units]
            taps.append(self._taps(post[i], g_h, batch))
            rows = g_h.view(-1, batch, g_h.shape[1])
            g_a = rows * act.derivative(pre[i], post[i])
            if block.norm is not None:
                a_hat, rstd = norm_stats[i]
                g_norm_bias, g_norm_weight = next(grads), next(grads)
                torch.sum(g_a[0], 0, out=g_norm_bias)
                torch.sum(g_a[0] * a_hat, 0, out=g_norm_weight)
                g_hat = g_a * block.norm.weight
                g_a = rstd * (
                    g_hat
                    - g_hat.mean(-1, keepdim=True)
                    - a_hat * (g_hat * a_hat).mean(-1, keepdim=True)
                )
            g = g_a.reshape(-1, g_a.shape[-1])
            g_bias, g_weight = next(grads), next(grads)
            torch.sum(g[:batch], 0, out=g_bias)
            torch.mm(g[:batch].t(), inputs[i], out=g_weight)
            weight = block.linear.weight
        taps.reverse()
        self.taps = taps

    def _taps(self, h: torch.Tensor, g_h: torch.Tensor, batch: int) -> LayerTaps:
        taps = LayerTaps(h=h)
        if "loss_grad" in self.needs:
            taps.loss_grad = g_h[:batch] * batch
        row = batch
        if "target_grad" in self.needs:
            taps.target_grad = g_h[row : row + batch]
            row += batch
        if "logits_grad" in self.needs:
            taps.logits_grad = g_h[row:].view(-1, batch, g_h.shape[1]).abs().sum(0)
        return taps
