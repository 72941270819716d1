"""Residual networks: named channel units, utilities on channels against brute force and
finite differences, and the channel reset operator."""

from __future__ import annotations

import pytest
import torch

from plasticity_core.autograd_step import AutogradStep
from plasticity_core.cbp import CBPConfig, ContinualBackprop
from plasticity_core.models.resnet import ResNet, resnet8, resnet18
from plasticity_core.optim import SGD
from plasticity_core.reset import reset_units
from plasticity_core.utility import UTILITIES, UtilityInputs


def tiny_resnet(seed: int = 0) -> ResNet:
    """A double-precision 3 -> stem 4 -> [4 (stride 1), 6 (stride 2)] -> 3-class ResNet in
    eval mode with non-trivial BatchNorm statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    model = ResNet([(4, 1, 1), (6, 1, 2)], n_classes=3, stem=4, generator=g).double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=g, dtype=torch.double))
                module.running_var.copy_(0.5 + torch.rand(n, generator=g, dtype=torch.double))
                module.weight.copy_(0.5 + torch.rand(n, generator=g, dtype=torch.double))
                module.bias.copy_(0.3 * torch.randn(n, generator=g, dtype=torch.double))
        model.head.bias.copy_(0.1 * torch.randn(3, generator=g, dtype=torch.double))
    return model.eval()


def images(n: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g, dtype=torch.double)
    return x, torch.randint(0, 3, (n,), generator=g)


def _clamped_logits(model, layer, channel, value):
    """Logits with unit `channel` of `layer` replaced by `value` [B, H, W] (a forward hook)."""

    def hook(module, inputs, output):
        output = output.clone()
        output[:, channel] = value
        return output

    return hook


def test_models_name_the_first_conv_channels_of_every_block():
    assert [u.n_units for u in resnet18().unit_layers()] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert sum(u.n_units for u in resnet18().unit_layers()) == 1920
    small = resnet8()
    assert [u.n_units for u in small.unit_layers()] == [16, 32, 64]
    assert small(torch.zeros(2, 3, 32, 32)).shape == (2, 2)
    for block, unit in zip(small.blocks, small.unit_layers(), strict=True):
        assert unit.incoming is block.conv1 and unit.outgoing is block.conv2
        assert unit.norm is block.bn1 and unit.consumer_norm is block.bn2


def _brute_force(model, x, y, layer_index, name, reference):
    """Per-example, per-channel loops over autograd gradients (one backward per example)."""
    layer = model.unit_layers()[layer_index]
    scores = torch.zeros(layer.n_units, dtype=torch.double)
    for b in range(len(y)):
        captured: list[torch.Tensor] = []
        handle = layer.tap.register_forward_hook(lambda m, i, o, seen=captured: seen.append(o))
        z = model(x[b : b + 1])
        handle.remove()
        h = captured[0][0]  # [C, H, W]
        loss = torch.nn.functional.cross_entropy(z, y[b : b + 1])
        (g_loss,) = torch.autograd.grad(loss, captured[0], retain_graph=True)
        (g_target,) = torch.autograd.grad(z[0, y[b]], captured[0])
        for c in range(layer.n_units):
            d = h[c] - reference[c]
            if name == "activation":
                value = h[c].abs().mean()
            elif name == "mc_contribution":
                value = d.abs().mean() * layer.outgoing.weight[:, c].abs().sum()
            elif name == "loss_gradient":
                value = g_loss[0, c].abs().mean()
            elif name == "gxi":
                value = (h[c] * g_target[0, c]).abs().mean()
            else:  # gxd
                value = (d * g_target[0, c]).abs().mean()
            scores[c] += value.detach() / len(y)
    return scores


@pytest.mark.parametrize("name", ["activation", "mc_contribution", "loss_gradient", "gxi", "gxd"])
@pytest.mark.parametrize("layer_index", [0, 1])
def test_channel_utilities_equal_per_example_brute_force(name, layer_index):
    model = tiny_resnet()
    x, y = images()
    utility = UTILITIES.get(name)
    step = AutogradStep(model, utility.needs)
    step(x, y)
    layer = model.unit_layers()[layer_index]
    tap = step.taps[layer_index]
    reference = tap.h.mean((0, 2, 3)) + 0.05
    engine = utility.fn(UtilityInputs(tap, reference, layer.incoming.weight, layer.outgoing.weight))
    expected = _brute_force(model, x, y, layer_index, name, reference)
    torch.testing.assert_close(engine, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layer_index", [0, 1])
def test_gxd_predicts_the_target_logit_change_of_clamping_a_channel_toward_r(layer_index):
    model = tiny_resnet()
    x, y = images()
    step = AutogradStep(model, frozenset({"target_grad"}))
    step(x, y)
    layer = model.unit_layers()[layer_index]
    tap = step.taps[layer_index]
    reference = tap.h.mean((0, 2, 3))
    channel, eps = 2, 1e-6
    with torch.no_grad():
        base = model(x).gather(1, y[:, None])[:, 0]
        nudged_h = tap.h[:, channel] + eps * (reference[channel] - tap.h[:, channel])
        handle = layer.tap.register_forward_hook(_clamped_logits(model, layer, channel, nudged_h))
        moved = model(x).gather(1, y[:, None])[:, 0]
        handle.remove()
    observed = (moved - base) / eps  # per example
    predicted = ((reference[channel] - tap.h[:, channel]) * tap.target_grad[:, channel]).sum((1, 2))
    torch.testing.assert_close(observed, predicted, rtol=1e-4, atol=1e-8)


def test_resetting_a_constant_channel_at_its_reference_keeps_interior_outputs():
    model = tiny_resnet()
    block = model.blocks[1]
    unit = model.unit_layers()[1]
    channel = 3
    with torch.no_grad():
        block.conv1.weight[channel].zero_()  # h_c = relu(bn1 of 0): constant on every input
        block.bn1.bias[channel] = 0.8
    x, _ = images()
    captured = []
    handle = unit.tap.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        model(x)
        h = captured[-1]
        before = block.bn2(block.conv2(h))
        reference = h[:, channel].mean().reshape(1)
        assert torch.allclose(h[:, channel], reference)
        reset_units(unit, torch.tensor([channel]), reference, None, torch.Generator())
        model(x)
        after = block.bn2(block.conv2(captured[-1]))
    handle.remove()
    interior = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    torch.testing.assert_close(after[interior], before[interior], rtol=0, atol=1e-12)
    assert not torch.allclose(after, before), "zero padding: the border moves"
    assert block.conv2.weight[:, channel].eq(0).all()
    assert block.bn1.weight[channel] == 1 and block.bn1.bias[channel] == 0


def test_channel_reset_touches_only_its_slices_of_optimizer_state_and_bn_statistics():
    model = tiny_resnet()
    block, unit, channel = model.blocks[0], model.unit_layers()[0], 1
    optimizer = SGD(list(model.parameters()), 0.1, momentum=0.9)
    step = AutogradStep(model)
    x, y = images()
    step(x, y)
    optimizer.step(step.grads)
    buffers = optimizer.state["momentum_buffer"]
    state = {id(p): b.clone() for p, b in zip(model.parameters(), buffers, strict=True)}
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    column = block.conv2.weight[:, channel].detach().clone()
    reset_units(unit, torch.tensor([channel]), torch.tensor([0.2], dtype=torch.double),
                optimizer, torch.Generator().manual_seed(0))  # fmt: skip
    touched = {id(block.conv1.weight): (0,), id(block.bn1.weight): (0,),
               id(block.bn1.bias): (0,), id(block.conv2.weight): (1,)}  # fmt: skip
    for param, buffer in zip(model.parameters(), optimizer.state["momentum_buffer"], strict=True):
        old = state[id(param)]
        if id(param) in touched:
            dim = touched[id(param)][0]
            assert buffer.select(dim, channel).eq(0).all()
            keep = [i for i in range(buffer.shape[dim]) if i != channel]
            torch.testing.assert_close(
                buffer.index_select(dim, torch.tensor(keep)),
                old.index_select(dim, torch.tensor(keep)),
            )
        else:
            torch.testing.assert_close(buffer, old, rtol=0, atol=0)
    for key, old in stats.items():
        new = model.state_dict()[key]
        if key in ("blocks.0.bn1.running_mean", "blocks.0.bn1.running_var"):
            assert new[channel] == (0 if key.endswith("mean") else 1)
            keep = [i for i in range(len(new)) if i != channel]
            torch.testing.assert_close(new[keep], old[keep], rtol=0, atol=0)
        elif key == "blocks.0.bn2.running_mean":  # the compensation: minus kernel sum x r
            torch.testing.assert_close(new, old - column.sum((1, 2)) * 0.2)
        else:
            torch.testing.assert_close(new, old, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["mc_adaptable", "gxd"])
def test_cbp_averages_each_layer_over_its_own_spatial_size(name):
    """The two blocks see 8x8 and 4x4 maps: CBP's reference and utility EMAs must match
    per-layer EMAs of the channel means and of the utility's own per-layer score."""
    model = tiny_resnet()
    utility = UTILITIES.get(name)
    eta = 0.9
    cbp = ContinualBackprop(model.unit_layers(), utility, None, CBPConfig(0.0, 1000, eta), None)
    step = AutogradStep(model, utility.needs)
    f = [0.0, 0.0]
    u = [0.0, 0.0]
    for t in range(1, 4):
        step(*images(seed=t))
        assert step.taps[0].h.shape[2:] != step.taps[1].h.shape[2:]
        for i, (tap, layer) in enumerate(zip(step.taps, model.unit_layers(), strict=True)):
            f[i] = eta * f[i] + (1 - eta) * tap.h.mean((0, 2, 3))
            inputs = UtilityInputs(
                tap, f[i] / (1 - eta**t), layer.incoming.weight, layer.outgoing.weight
            )
            u[i] = eta * u[i] + (1 - eta) * utility.fn(inputs)
        cbp.after_step(step.taps)
        for i, sl in enumerate(cbp.slices):
            torch.testing.assert_close(cbp.reference()[sl], f[i] / (1 - eta**t))
            torch.testing.assert_close(cbp.corrected_utility()[sl], u[i] / (1 - eta**t))
