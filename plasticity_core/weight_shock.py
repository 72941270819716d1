"""Weight-level reset shock: what moving one weight to its reset endpoint does to the output.

A weight w_rc of a Linear layer is set to E[w_new] (the mean of its init distribution) with
every other parameter unchanged; the realized shock on probe inputs is, as for units
(`shock.py`), the mean logit L1 distance and the mean KL of the softmaxes.

Clamps are batched: setting w_rc to e adds (e - w_rc) * x_c to output r of the layer, x its
input, so a forward hook on the Linear repeats its output once per clamped weight and adds
that term to one output per copy: one forward measures a chunk of weights, exactly, for any
network whose later modules read the layer only through its output (the MLPs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plasticity_core.models.units import forward_hooks
from plasticity_core.shock import CHUNK_ELEMENTS, output_shocks


@torch.no_grad()
def weight_clamp_shocks(
    model: nn.Module, linear: nn.Linear, x: torch.Tensor, flat: torch.Tensor, endpoint: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Realized shocks of setting each weight `flat` [k] (flat indices into linear.weight
    [out, in]) alone to `endpoint`, on probe inputs x [batch, ...].

    Returns (l1 [k], kl [k]): mean over the probe of ||z - z'||_1 and KL(softmax z ||
    softmax z'), in logit units and nats.
    """
    inputs: list[torch.Tensor] = []
    with forward_hooks([(linear, lambda module, args, out: inputs.append(args[0]))]):
        z = model(x)
    logp = F.log_softmax(z, dim=1)
    n_out, n_in = linear.weight.shape
    rows, cols = flat // n_in, flat % n_in
    moves = endpoint - linear.weight.view(-1)[flat]  # [k]: e - w_rc
    batch = x.shape[0]
    chunk = max(1, min(len(flat), CHUNK_ELEMENTS // (batch * n_out)))
    l1 = torch.empty(len(flat), device=z.device, dtype=z.dtype)
    kl = torch.empty_like(l1)
    for start in range(0, len(flat), chunk):
        part = torch.arange(start, min(start + chunk, len(flat)), device=z.device)
        # [k, batch]: what the moved weight adds to its output unit for every probe input.
        added = moves[part, None] * inputs[0][:, cols[part]].T

        def hook(module, args, out, part=part, added=added):
            copies = out.unsqueeze(0).repeat(len(part), 1, 1)
            copies[torch.arange(len(part)), :, rows[part]] += added
            return copies.flatten(0, 1)

        with forward_hooks([(linear, hook)]):
            clamped = model(x).view(len(part), batch, -1)
        l1[part], kl[part] = output_shocks(clamped, z, logp)
    return l1, kl
