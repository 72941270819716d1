"""Small, independent reference computations shared by the core tests."""

from __future__ import annotations

import io

import torch
import torch.nn.functional as F

from plasticity_core.models import MLP
from plasticity_core.utility import UTILITIES, UtilityInputs


def small_mlp(activation: str = "relu", norm: str = "none", seed: int = 0) -> MLP:
    """A double-precision 12 -> [9, 7, 6] -> 4 MLP with non-trivial biases and norm affine."""
    g = torch.Generator().manual_seed(seed)
    model = MLP(12, (9, 7, 6), 4, activation, norm, generator=g).double()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def batch(n: int = 11, n_in: int = 12, n_classes: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, n_in, generator=g, dtype=torch.double), torch.randint(
        0, n_classes, (n,), generator=g
    )


def forward_with_hidden(model: MLP, x: torch.Tensor, edits: dict | None = None):
    """Autograd forward through the nn.Module blocks, returning (logits, [h per layer]).

    `edits` maps layer index -> function h -> h' applied to that layer's output, so a test
    can clamp or nudge a unit and see what the rest of the network does with it.
    """
    hidden = []
    for i, block in enumerate(model.blocks):
        x = block(x)
        if edits and i in edits:
            x = edits[i](x)
        hidden.append(x)
    return model.head(x), hidden


def autograd_taps(model: MLP, x: torch.Tensor, y: torch.Tensor):
    """Per layer: h, per-example dl/dh, dz_y/dh and sum_c |dz_c/dh|, each by autograd."""
    z, hidden = forward_with_hidden(model, x)
    per_example_loss = F.cross_entropy(z, y, reduction="sum")
    loss_grad = torch.autograd.grad(per_example_loss, hidden, retain_graph=True)
    target = z.gather(1, y[:, None]).sum()
    target_grad = torch.autograd.grad(target, hidden, retain_graph=True)
    logits_l1 = [torch.zeros_like(h) for h in hidden]
    for c in range(z.shape[1]):
        grads = torch.autograd.grad(z[:, c].sum(), hidden, retain_graph=True)
        for acc, g in zip(logits_l1, grads, strict=False):
            acc += g.abs()
    return [
        {"h": h.detach(), "loss_grad": lg, "target_grad": tg, "logits_grad": ll}
        for h, lg, tg, ll in zip(hidden, loss_grad, target_grad, logits_l1, strict=False)
    ]


def strip_timings(rows) -> list[dict]:
    """Rows without their timings (seconds, diagnostics_seconds)."""
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]


def restored_at_a_boundary(run, config, boundary: int = 2):
    """Run `config` through the experiment class `run` uninterrupted, and again stopped after
    `boundary` tasks, saved and loaded the way checkpoints are (weights_only) and continued
    in a new experiment. Returns (uninterrupted rows, stopped + continued rows, the saved
    state), timings stripped."""
    uninterrupted = strip_timings(run(config))
    experiment = run(config)
    head = [next(iter(experiment)) for _ in range(boundary)]
    buffer = io.BytesIO()
    torch.save(experiment.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    return uninterrupted, strip_timings(head) + strip_timings(run(config, state)), state


def assert_engine_scores_each_layer_as_alone(cbp, step, model, utility: str) -> None:
    """CBP's bias-corrected utility of every layer, after one step, equals the registered
    utility's score of that layer computed alone from the step's taps."""
    fn = UTILITIES.get(utility).fn
    for tap, sl, layer in zip(step.taps, cbp.slices, model.unit_layers(), strict=True):
        alone = fn(UtilityInputs(tap, cbp.reference()[sl], layer.incoming.weight,
                                 layer.outgoing.weight))  # fmt: skip
        torch.testing.assert_close(cbp.corrected_utility()[sl], alone, rtol=1e-12, atol=0)


def utility_term(name, tap, b, c, h, d, out_mag, in_mag):
    """One example's term of utility `name` for one post-activation feature c, written out
    by hand: h its value, d = h - r, out_mag / in_mag the weight magnitudes (tap: a dict of
    autograd taps)."""
    if name == "activation":
        return abs(h)
    if name == "contribution":
        return abs(h) * out_mag
    if name == "mc_contribution":
        return abs(d) * out_mag
    if name == "mc_adaptable":
        return abs(d) * out_mag / in_mag
    if name == "loss_gradient":
        return abs(tap["loss_grad"][b, c])
    if name == "gxi":
        return abs(h * tap["target_grad"][b, c])
    if name == "gxd":
        return abs(d * tap["target_grad"][b, c])
    assert name == "gxd_all"
    return abs(d) * tap["logits_grad"][b, c]
