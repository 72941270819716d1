"""The MLP training step, written by hand: forward, loss, backward, and the utility taps.

One step computes, without an autograd graph,
- per-parameter gradients of the batch-mean loss (`losses.py`: cross-entropy, or squared
  error for regression; aligned with `model.parameters()`, written into preallocated
  buffers);
- for every hidden layer the taps a utility may need: the post-activations `h`, and, only
  when asked for, the per-example gradients dl/dh, dz_y/dh (target output) and
  sum_c |dz_c/dh| (all outputs).

The extra gradients ride along as extra rows of the same backward pass: the seed matrix
stacks [dl/dz; onehot(y); one block of one-hot rows per output], so GXD's target-logit
backward costs a wider matmul rather than a second pass. Autograd stays the independent
check (tests/core/test_step.py) and the engine for conv nets.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from plasticity_core.errors import ConfigError
from plasticity_core.losses import LOSSES
from plasticity_core.taps import TAPS, WEIGHT_TAPS, LayerTaps


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
    layer, the last `batch` (x, y) it stepped on, and the task's loss and accuracy
    accumulators (on the device: no host sync)."""

    def __init__(self, model: nn.Module, needs: frozenset[str] = frozenset()) -> None:
        unknown = set(needs) - set(TAPS) - set(WEIGHT_TAPS)
        if unknown:
            raise ValueError(f"unknown taps {sorted(unknown)}; known: {TAPS + WEIGHT_TAPS}")
        self.model = model
        self.needs = needs
        self.params = list(model.parameters())
        self.grads = [torch.zeros_like(p) for p in self.params]
        self.taps: list[LayerTaps] = []
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None
        p0 = self.params[0]
        self.loss_sum = torch.zeros((), device=p0.device, dtype=p0.dtype)
        self.correct = torch.zeros((), device=p0.device, dtype=torch.long)

    def reset_accumulators(self) -> None:
        self.loss_sum.zero_()
        self.correct.zero_()


class MLPStep(TrainingStep):
    """Callable `(x [B, n_in], y [B]) -> None` that fills `grads`, `taps` and accumulators.

    The same step advances a pack of R runs (`packed.PackedMLP`): every tensor then has a
    leading run axis (x [R, B, n_in], weights [R, out, in], taps [R, B, units], loss and
    correct counts [R]) and the matmuls are their batched forms, which give each run the
    bits its own `mm` gives (checked in tests/core/test_packed.py)."""

    def __init__(
        self, model: nn.Module, needs: frozenset[str] = frozenset(), loss: str = "cross_entropy"
    ) -> None:
        super().__init__(model, needs)
        p0 = self.params[0]
        self.packed = model.head.weight.ndim == 3
        runs = (p0.shape[0],) if self.packed else ()
        self.loss_sum = torch.zeros(runs, device=p0.device, dtype=p0.dtype)
        self.correct = torch.zeros(runs, device=p0.device, dtype=torch.long)
        self.loss = LOSSES.get(loss)(model.head.out_features, p0.device, p0.dtype)
        self._mm = torch.bmm if self.packed else torch.mm
        self._affine = torch.baddbmm if self.packed else torch.addmm
        # Parameters, their transposes and gradient buffers are looked up once: nn.Module
        # attribute access would otherwise cost more than the small matmuls. Parameters are
        # only ever updated in place, so the views stay valid.
        grad_of = {id(p): g for p, g in zip(self.params, self.grads, strict=True)}

        def layer(lin: nn.Module, norm: nn.Module | None) -> _Layer:
            return _Layer(
                lin.weight,
                lin.weight.mT,
                lin.bias.unsqueeze(1) if self.packed else lin.bias,
                grad_of[id(lin.weight)],
                grad_of[id(lin.bias)],
                None
                if norm is None
                else _Norm(
                    norm.weight,
                    norm.bias,
                    list(norm.normalized_shape),
                    norm.eps,
                    grad_of[id(norm.weight)],
                    grad_of[id(norm.bias)],
                ),
            )

        self._layers = [layer(block.linear, block.norm) for block in model.blocks]
        self._head = layer(model.head, None)
        self._act = model.act
        self._target_rows = bool(needs & {"target_grad", "target_weight_grad"})
        self.target_weight_grads: list[torch.Tensor | None] = []
        """With 'target_weight_grad': aligned with `params`, mean over the batch of
        |dz_y/dW| for each weight matrix (hidden layers and head), None for the others."""
        if "target_weight_grad" in needs:
            if self.packed:
                raise ConfigError("the target_weight_grad tap is not computed for packed runs")
            # Hidden layers in order, the head last (index -1), as the backward pass reads them.
            weights = [w.weight for w in (*self._layers, self._head)]
            self._target_weight = [torch.zeros_like(w) for w in weights]
            by_weight = dict(zip(map(id, weights), self._target_weight, strict=True))
            self.target_weight_grads = [by_weight.get(id(p)) for p in self.params]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.batch = (x, y)
        act, mm, packed = self._act, self._mm, self.packed
        inputs, pre, post, norm_stats = [], [], [], []
        for layer in self._layers:
            inputs.append(x)
            a = self._affine(layer.bias, x, layer.weight_t)
            if layer.norm is not None:
                a, a_hat, rstd = _layer_norm(layer.norm, a, packed)
                norm_stats.append((a_hat, rstd))
            x = act.fn(a)
            pre.append(a)
            post.append(x)
        head = self._head
        z = self._affine(head.bias, x, head.weight_t)

        batch = y.shape[-1]
        # A weight gradient over one example is an outer product: a broadcast multiply gives
        # its exact bits far faster than a (batched) matmul with one term (130 -> 19 us for
        # a pack of 150 regression learners).
        outer = torch.mul if batch == 1 else mm
        loss, g, target_rows = self.loss.loss_and_seed(z, y, batch)
        self.loss_sum += loss
        if self.loss.classification:
            self.correct += self.loss.correct(z, y)
        g = self._seed_rows(g, target_rows, batch)
        g_loss = g[..., :batch, :]
        torch.sum(g_loss, -2, out=head.grad_bias)
        outer(g_loss.mT, x, out=head.grad_weight)
        if self.target_weight_grads:
            self._mean_abs_target_grad(g, x, batch, -1)
        weight = head.weight
        taps = []
        lead = (g.shape[0], -1) if packed else (-1,)
        for i in range(len(self._layers) - 1, -1, -1):
            layer = self._layers[i]
            g_h = mm(g, weight)  # [(runs,) rows, units]
            taps.append(self._taps(post[i], g_h, batch) if self.needs else LayerTaps(post[i]))
            a, h = (pre[i].unsqueeze(1), post[i].unsqueeze(1)) if packed else (pre[i], post[i])
            g_a = act.backward(g_h.view(*lead, batch, g_h.shape[-1]), a, h)
            if layer.norm is not None:
                g_a = _layer_norm_backward(layer.norm, g_a, *norm_stats.pop(), packed)
            g = g_a.view(*lead, g_a.shape[-1])
            g_loss = g[..., :batch, :]
            torch.sum(g_loss, -2, out=layer.grad_bias)
            outer(g_loss.mT, inputs[i], out=layer.grad_weight)
            if self.target_weight_grads:
                self._mean_abs_target_grad(g, inputs[i], batch, i)
            weight = layer.weight
        taps.reverse()
        self.taps = taps

    def _mean_abs_target_grad(self, g: torch.Tensor, x: torch.Tensor, batch: int, i: int):
        """mean over examples of |dz_y/dW| = |d_y|^T |x| / B for layer i's weight (-1: the
        head), d_y the target rows of g (dz_y per example w.r.t. the layer's outputs): one
        example's weight gradient is an outer product, so its absolute value factorises."""
        target = g[batch : 2 * batch].abs()
        out = self._target_weight[i]
        torch.mm(target.T, x.abs(), out=out)
        out.div_(batch)

    def _seed_rows(self, g: torch.Tensor, target_rows: torch.Tensor, batch: int) -> torch.Tensor:
        """Rows of the seed matrix: the loss gradient dl/dz (scaled to the batch mean, which
        the weight gradients need), then the attribution rows the method asked for."""
        if not self.needs:
            return g
        seeds = [g]
        if self._target_rows:
            seeds.append(target_rows)
        if "logits_grad" in self.needs:
            every = self.loss.eye.repeat_interleave(batch, dim=0)
            seeds.append(every.expand(g.shape[0], *every.shape) if self.packed else every)
        return torch.cat(seeds, dim=-2)

    def _taps(self, h: torch.Tensor, g_h: torch.Tensor, batch: int) -> LayerTaps:
        taps = LayerTaps(h=h)
        if "loss_grad" in self.needs:
            taps.loss_grad = g_h[..., :batch, :] * batch
        row = batch
        if "target_grad" in self.needs:
            taps.target_grad = g_h[..., row : row + batch, :]
        if self._target_rows:
            row += batch
        if "logits_grad" in self.needs:
            rest = g_h[..., row:, :]
            lead = (rest.shape[0], -1) if self.packed else (-1,)
            taps.logits_grad = rest.reshape(*lead, batch, g_h.shape[-1]).abs().sum(-3)
        return taps


def _layer_norm(
    norm: _Norm, a: torch.Tensor, packed: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(LayerNorm of a, the normalised a before the affine, 1/std). A pack's affine
    parameters [runs, units] are applied after the kernel, which takes one shared affine."""
    if not packed:
        a_norm, mean, rstd = torch.native_layer_norm(a, norm.shape, norm.weight, norm.bias,
                                                     norm.eps)  # fmt: skip
        return a_norm, (a - mean) * rstd, rstd
    normalised, mean, rstd = torch.native_layer_norm(a, norm.shape, None, None, norm.eps)
    # The kernel's own normalised values times the weight plus the bias: the rounding steps
    # of its fused affine, so a packed run keeps its bits.
    a_norm = torch.addcmul(norm.bias.unsqueeze(1), normalised, norm.weight.unsqueeze(1))
    return a_norm, (a - mean) * rstd, rstd


def _layer_norm_backward(
    norm: _Norm, g_a: torch.Tensor, a_hat: torch.Tensor, rstd: torch.Tensor, packed: bool
) -> torch.Tensor:
    """LayerNorm's backward for every seed row [(runs,) rows, batch, units]; fills the
    affine gradients from the loss rows (row 0)."""
    loss_rows = g_a[:, 0] if packed else g_a[0]
    torch.sum(loss_rows, -2, out=norm.grad_bias)
    torch.sum(loss_rows * a_hat, -2, out=norm.grad_weight)
    weight = norm.weight
    if packed:
        weight, a_hat, rstd = weight[:, None, None], a_hat.unsqueeze(1), rstd.unsqueeze(1)
    g_hat = g_a * weight
    return rstd * (
        g_hat - g_hat.mean(-1, keepdim=True) - a_hat * (g_hat * a_hat).mean(-1, keepdim=True)
    )
