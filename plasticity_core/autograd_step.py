"""The training step of any model that names its units (`unit_layers()`), by autograd.

Same interface as the hand-written MLP step (`step.MLPStep`): calling it with (x, y) fills
`grads` (aligned with `model.parameters()`), `taps` (one `LayerTaps` per unit layer, h of
shape [B, C, H, W] for conv units) and the loss/accuracy accumulators. The taps are read by
forward hooks on each unit layer's `tap` module; the extra gradients a utility asks for
cost one more backward each (dz_y/dh), or one per class (sum_c |dz_c/dh|).

With BatchNorm in training mode an example's logits depend on the other examples of the
batch through the batch statistics, so the taps are gradients of the batch's summed target
logits / losses: each example's own gradient plus cross terms of order 1/B.
"""

from __future__ import annotations

from contextlib import ExitStack

import torch
import torch.nn.functional as F
from torch import nn

from plasticity_core.errors import ConfigError
from plasticity_core.models.units import forward_hooks
from plasticity_core.step import TrainingStep
from plasticity_core.taps import LayerTaps


class AutogradStep(TrainingStep):
    """Callable `(x [B, ...], y [B]) -> None` for models with `unit_layers()`."""

    def __init__(
        self, model: nn.Module, needs: frozenset[str] = frozenset(), train: bool = True
    ) -> None:
        """`train=False` computes only the taps (e.g. an assay): no parameter gradients."""
        if "target_weight_grad" in needs:
            raise ConfigError(
                "the per-weight target gradient (utility gxd_weight) is computed by the MLP's "
                "hand-written step only; on conv nets use swr's magnitude, gradient or random"
            )
        super().__init__(model, needs)
        self.parameter_grads = train
        self._seen: list[torch.Tensor] | None = None  # a list only while a step runs
        # The hooks outlive any one `with` block: they stay until `close`.
        self._hooks = ExitStack()
        self._hooks.enter_context(
            forward_hooks((layer.tap, self._record) for layer in model.unit_layers())
        )

    def _record(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        if self._seen is not None:
            self._seen.append(output)

    def close(self) -> None:
        """Removes the hooks from the model."""
        self._hooks.close()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.batch = (x, y)
        self._seen = []
        try:
            z = self.model(x)
            hs = self._seen
        finally:
            self._seen = None
        losses = F.cross_entropy(z, y, reduction="none")
        batch = len(y)
        extra = "target_grad" in self.needs or "logits_grad" in self.needs
        params = self.params if self.parameter_grads else []
        wanted = params + (hs if "loss_grad" in self.needs else [])
        grads = torch.autograd.grad(losses.mean(), wanted, retain_graph=extra) if wanted else ()
        if params:
            for buffer, g in zip(self.grads, grads[: len(params)], strict=True):
                buffer.copy_(g)
        fields: dict[str, list[torch.Tensor]] = {}
        if "loss_grad" in self.needs:  # of each example's own loss: B x d(mean)/dh
            fields["loss_grad"] = [g * batch for g in grads[len(params) :]]
        if "target_grad" in self.needs:
            target = z.gather(1, y[:, None]).sum()
            fields["target_grad"] = list(
                torch.autograd.grad(target, hs, retain_graph="logits_grad" in self.needs)
            )
        if "logits_grad" in self.needs:
            total = [torch.zeros_like(h) for h in hs]
            for c in range(z.shape[1]):
                per_class = torch.autograd.grad(z[:, c].sum(), hs, retain_graph=c < z.shape[1] - 1)
                for acc, g in zip(total, per_class, strict=True):
                    acc.add_(g.abs())
            fields["logits_grad"] = total
        self.taps = [
            LayerTaps(h.detach(), **{k: v[i] for k, v in fields.items()}) for i, h in enumerate(hs)
        ]
        with torch.no_grad():
            self.loss_sum += losses.sum()
            self.correct += (z.argmax(1) == y).sum()
