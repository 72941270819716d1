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

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from plasticity_core.models.mlp import MLP
from plasticity_core.taps import TAPS, LayerTaps


class _Norm(NamedTuple):
    weight: torch.Tensor
    bias: torch.Tensor
    shape: list[int]
    eps: float
    grad_weight: torch.Tensor
    grad_bias: torch.Tensor


class _Layer(NamedTuple):
    weight: torch.Tensor
    weight_t: torch.Tensor
    bias: torch.Tensor
    grad_weight: torch.Tensor
    grad_bias: torch.Tensor
    norm: _Norm | None


class TrainingStep:
    """What every training step offers the experiments and methods: `params` (those of
    `model.parameters()`), gradient buffers `grads` aligned with them, `taps` per unit
    layer, and the task's loss and accuracy accumulators (on the device: no host sync)."""

    def __init__(self, model: nn.Module, needs: frozenset[str] = frozenset()) -> None:
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

    def reset_accumulators(self) -> None:
        self.loss_sum.zero_()
        self.correct.zero_()


class MLPStep(TrainingStep):
    """Callable `(x [B, n_in], y [B]) -> None` that fills `grads`, `taps` and accumulators."""

    def __init__(self, model: MLP, needs: frozenset[str] = frozenset()) -> None:
        super().__init__(model, needs)
        p0 = self.params[0]
        self._eye = torch.eye(model.head.out_features, device=p0.device, dtype=p0.dtype)
        # Parameters, their transposes and gradient buffers are looked up once: nn.Module
        # attribute access would otherwise cost more than the small matmuls. Parameters are
        # only ever updated in place, so the views stay valid.
        grad_of = {id(p): g for p, g in zip(self.params, self.grads, strict=True)}
        self._layers = []
        for block in model.blocks:
            lin, norm = block.linear, block.norm
            self._layers.append(
                _Layer(
                    lin.weight,
                    lin.weight.t(),
                    lin.bias,
                    grad_of[id(lin.weight)],
                    grad_of[id(lin.bias)],
                    None
                    if norm is None
                    else _Norm(
                        norm.weight,
                        norm.bias,
                        norm.normalized_shape,
                        norm.eps,
                        grad_of[id(norm.weight)],
                        grad_of[id(norm.bias)],
                    ),
                )
            )
        head = model.head
        self._head = _Layer(
            head.weight,
            head.weight.t(),
            head.bias,
            grad_of[id(head.weight)],
            grad_of[id(head.bias)],
            None,
        )
        self._act = model.act

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        act = self._act
        inputs, pre, post, norm_stats = [], [], [], []
        for layer in self._layers:
            inputs.append(x)
            a = torch.addmm(layer.bias, x, layer.weight_t)
            norm = layer.norm
            if norm is not None:
                a_norm, mean, rstd = torch.native_layer_norm(
                    a, norm.shape, norm.weight, norm.bias, norm.eps
                )
                norm_stats.append(((a - mean) * rstd, rstd))
                a = a_norm
            x = act.fn(a)
            pre.append(a)
            post.append(x)
        head = self._head
        z = torch.addmm(head.bias, x, head.weight_t)

        batch = y.shape[0]
        logp = F.log_softmax(z, dim=1)
        self.loss_sum -= logp.gather(1, y[:, None]).sum()
        self.correct += (z.argmax(1) == y).sum()
        g = self._seed_rows(logp, y, batch)
        g_loss = g[:batch]
        torch.sum(g_loss, 0, out=head.grad_bias)
        torch.mm(g_loss.t(), x, out=head.grad_weight)
        weight = head.weight
        taps = []
        for i in range(len(self._layers) - 1, -1, -1):
            layer = self._layers[i]
            g_h = torch.mm(g, weight)  # [rows, units]
            taps.append(self._taps(post[i], g_h, batch) if self.needs else LayerTaps(post[i]))
            g_a = act.backward(g_h.view(-1, batch, g_h.shape[1]), pre[i], post[i])
            if layer.norm is not None:
                g_a = _layer_norm_backward(layer.norm, g_a, *norm_stats.pop())
            g = g_a.view(-1, g_a.shape[-1])
            g_loss = g[:batch]
            torch.sum(g_loss, 0, out=layer.grad_bias)
            torch.mm(g_loss.t(), inputs[i], out=layer.grad_weight)
            weight = layer.weight
        taps.reverse()
        self.taps = taps

    def _seed_rows(self, logp: torch.Tensor, y: torch.Tensor, batch: int) -> torch.Tensor:
        """Rows of the seed matrix: the loss gradient dl/dz (scaled to the batch mean, which
        the weight gradients need), then the attribution rows the method asked for."""
        onehot = self._eye[y]
        g = (logp.exp() - onehot) / batch
        if not self.needs:
            return g
        seeds = [g]
        if "target_grad" in self.needs:
            seeds.append(onehot)
        if "logits_grad" in self.needs:
            seeds.append(self._eye.repeat_interleave(batch, dim=0))
        return torch.cat(seeds)

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


def _layer_norm_backward(
    norm: _Norm, g_a: torch.Tensor, a_hat: torch.Tensor, rstd: torch.Tensor
) -> torch.Tensor:
    """LayerNorm's backward for every seed row [rows, batch, units]; fills the affine
    gradients from the loss row (row 0)."""
    torch.sum(g_a[0], 0, out=norm.grad_bias)
    torch.sum(g_a[0] * a_hat, 0, out=norm.grad_weight)
    g_hat = g_a * norm.weight
    return rstd * (
        g_hat - g_hat.mean(-1, keepdim=True) - a_hat * (g_hat * a_hat).mean(-1, keepdim=True)
    )
