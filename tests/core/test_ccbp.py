"""Continuous continual backprop (ccbp): rate 0 is bp, one partial step is the hand-worked
lerp, alpha = 1 is CBP's reset, the target logit moves by alpha x the GXD term (plus the
incoming move's own first-order term), a run resumes bit for bit, bad values are refused,
and conv units are compensated where the consumer reads them."""

import copy
import math

import pytest
import torch

from plasticity_core.ccbp import partial_reset, reset_fraction
from plasticity_core.errors import ConfigError
from plasticity_core.experiments.continuous_cifar import ContinuousCIFAR, ContinuousCIFARConfig
from plasticity_core.experiments.permuted_mnist import PermutedMNIST as run
from plasticity_core.experiments.permuted_mnist import PermutedMNISTConfig
from plasticity_core.models import MLP
from plasticity_core.models.resnet import resnet8
from plasticity_core.models.units import UnitLayer
from plasticity_core.optim import SGD, Adam
from plasticity_core.reset import reset_units
from plasticity_core.taps import LayerTaps
from plasticity_core.utility import UTILITIES, UtilityInputs
from tests.core.helpers import batch, forward_with_hidden, restored_at_a_boundary, small_mlp

SMALL = dict(tasks=2, hidden=(32, 32), batch_size=32, probe_size=300)
MOVING = dict(ccbp_rate=0.05, ccbp_every=7, maturity=5)


def test_zero_rate_gives_bp_rows_bit_for_bit():
    config = dict(SMALL, head_reset_every=1)  # the head's draws share the generator
    bp = list(run(PermutedMNISTConfig(method="bp", **config)))
    zero = list(run(PermutedMNISTConfig(method="ccbp", ccbp_rate=0.0, ccbp_every=1, **config)))
    for key in ("accuracy", "loss", "weight_magnitude", "effective_rank", "dormant_fraction"):
        assert [r[key] for r in zero] == [r[key] for r in bp], key
    moving = list(run(PermutedMNISTConfig(method="ccbp", **MOVING, **config)))
    assert [r["loss"] for r in moving] != [r["loss"] for r in bp]


def _two_unit_net() -> MLP:
    """2 -> [2] -> 2 in double precision with hand-set weights."""
    model = MLP(2, (2,), 2).double()
    with torch.no_grad():
        model.blocks[0].linear.weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 0.5]]))
        model.blocks[0].linear.bias.copy_(torch.tensor([0.5, -0.2]))
        model.head.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))
        model.head.bias.copy_(torch.tensor([0.1, -0.3]))
    return model


def test_one_partial_step_on_a_two_unit_layer_matches_the_hand_computation():
    model = _two_unit_net()
    optimizer = SGD(list(model.parameters()), 0.1, momentum=0.9)
    for buffer in optimizer.state["momentum_buffer"]:
        buffer.fill_(1.0)
    layer = model.unit_layers()[0]
    alpha = torch.tensor([0.25, 0.5], dtype=torch.double)
    fresh = torch.tensor([[0.2, -0.4], [0.6, 0.0]], dtype=torch.double)
    reference = torch.tensor([0.8, 0.4], dtype=torch.double)
    partial_reset(layer, alpha, fresh, reference, optimizer)

    # w_in[0] = .75 [1, 2] + .25 [.2, -.4]; w_in[1] = .5 [-1, .5] + .5 [.6, 0]
    expected = {
        "blocks.0.linear.weight": [[0.8, 1.4], [-0.2, 0.25]],
        "blocks.0.linear.bias": [0.375, -0.1],  # .75 * .5, .5 * -.2
        "head.weight": [[0.75, -1.0], [0.375, 1.5]],  # columns times .75 and .5
        # b_out + .25 * w_out[:, 0] * .8 + .5 * w_out[:, 1] * .4 (the old w_out)
        "head.bias": [0.1 + 0.2 - 0.4, -0.3 + 0.1 + 0.6],
    }
    momentum = {
        "blocks.0.linear.weight": [[0.75, 0.75], [0.5, 0.5]],
        "blocks.0.linear.bias": [0.75, 0.5],
        "head.weight": [[0.75, 0.5], [0.75, 0.5]],
        "head.bias": [1.0, 1.0],  # shifted, not re-initialised: its state is left alone
    }
    buffers = dict(zip([n for n, _ in model.named_parameters()],
                       optimizer.state["momentum_buffer"], strict=True))  # fmt: skip
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), torch.tensor(expected[name], dtype=torch.double))
        torch.testing.assert_close(buffers[name], torch.tensor(momentum[name], dtype=torch.double))


def test_a_unit_with_two_features_moves_both_consumer_columns_by_its_alpha():
    """Consumer columns 2i and 2i + 1 belong to unit i (crelu's layout), each compensated
    with its own feature's reference; the numbers are worked by hand."""
    incoming, consumer = torch.nn.Linear(1, 2).double(), torch.nn.Linear(4, 1).double()
    with torch.no_grad():
        consumer.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
        consumer.bias.fill_(0.5)
    layer = UnitLayer("two_features", incoming, None, incoming, consumer, 1.0)
    alpha = torch.tensor([0.5, 0.25], dtype=torch.double)
    reference = torch.tensor([[0.2, 0.4], [0.6, 0.8]], dtype=torch.double)
    partial_reset(layer, alpha, incoming.weight.detach().clone(), reference)
    expected = torch.tensor([[0.5, 1.0, 2.25, 3.0]], dtype=torch.double)
    torch.testing.assert_close(consumer.weight.detach(), expected)
    # 0.5 + .5 (1 * .2 + 2 * .4) + .25 (3 * .6 + 4 * .8)
    bias = torch.tensor([0.5 + 0.5 + 1.25], dtype=torch.double)
    torch.testing.assert_close(consumer.bias.detach(), bias)


def test_alpha_follows_the_normalised_utility_through_the_exp_transform():
    u = torch.tensor([1.0, 3.0, 2.0, 2.0], dtype=torch.double)  # layer mean 2: x = u / 2
    alpha = reset_fraction(u, rate=0.1, sharpness=2.0, threshold=1.0)
    # x = .5 <= tau moves the full rate; x = 1.5 -> .1 e^-1; x = 1 = tau -> .1
    expected = torch.tensor([0.1, 0.1 * math.exp(-1.0), 0.1, 0.1], dtype=torch.double)
    torch.testing.assert_close(alpha, expected)
    torch.testing.assert_close(reset_fraction(5 * u, 0.1, 2.0, 1.0), expected)  # scale-free
    torch.testing.assert_close(reset_fraction(torch.zeros(3), 0.1, 2.0, 1.0), torch.full((3,), 0.1))
    assert reset_fraction(u, 0.1, 0.0, 1.0).eq(0.1).all()  # kappa 0: every unit moves rho


def _resnet_layer():
    model = resnet8(n_classes=2, generator=torch.Generator().manual_seed(0)).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for bn in (model.blocks[1].bn1, model.blocks[1].bn2):
            bn.running_mean.normal_(0, 0.3, generator=g)
            bn.running_var.uniform_(0.5, 2.0, generator=g)
            bn.weight.uniform_(0.5, 1.5, generator=g)
            bn.bias.normal_(0, 0.3, generator=g)
    return model, model.unit_layers()[1]


@pytest.mark.parametrize("net", ["mlp_layernorm", "resnet8"])
def test_alpha_one_does_to_a_unit_what_cbps_full_reset_does(net):
    if net == "resnet8":
        model, layer_of = _resnet_layer()[0], (lambda m: m.unit_layers()[1])
        make = lambda p: SGD(p, 0.1, momentum=0.9)  # noqa: E731
    else:
        model, layer_of = small_mlp("relu", "layer"), (lambda m: m.unit_layers()[1])
        make = lambda p: Adam(p, 0.01)  # noqa: E731
    ours, theirs = model, copy.deepcopy(model)
    opt_ours, opt_theirs = make(list(ours.parameters())), make(list(theirs.parameters()))
    g = torch.Generator().manual_seed(2)
    for a, b in zip(opt_ours.state.values(), opt_theirs.state.values(), strict=True):
        for t_a, t_b in zip(a, b, strict=True):
            t_a.uniform_(0.1, 1.0, generator=g)
            t_b.copy_(t_a)
    layer, twin = layer_of(ours), layer_of(theirs)
    n, unit = layer.n_units, 3
    reference = torch.rand(n, generator=g, dtype=torch.double)
    reset_units(twin, torch.tensor([unit]), reference[[unit]], opt_theirs,
                torch.Generator().manual_seed(5))  # fmt: skip
    fresh = layer.sample(n, torch.Generator().manual_seed(9))
    fresh[unit] = layer.sample(1, torch.Generator().manual_seed(5))[0]  # reset_units' draw
    alpha = torch.zeros(n, dtype=torch.double)
    alpha[unit] = 1.0
    partial_reset(layer, alpha, fresh, reference, opt_ours)

    for (name, mine), other in zip(ours.state_dict().items(), theirs.state_dict().values(),
                                   strict=True):  # fmt: skip
        assert torch.equal(mine, other), name
    for key in opt_ours.state:
        for mine, other in zip(opt_ours.state[key], opt_theirs.state[key], strict=True):
            assert torch.equal(mine, other), key


def _target_change(model, x, y, move) -> torch.Tensor:
    """z_y after `move()` minus z_y before, per example."""
    with torch.no_grad():
        before = model(x).gather(1, y[:, None])[:, 0]
        move()
        return model(x).gather(1, y[:, None])[:, 0] - before


def _held_incoming(model: MLP, index: int):
    """Layer `index` with its units' biases zeroed, and fresh weights equal to its own: a
    partial reset then moves only the outgoing side (and the compensation)."""
    layer = model.unit_layers()[index]
    with torch.no_grad():
        layer.incoming.bias.zero_()
    return layer, layer.incoming.weight.detach().clone()


def _target_grads(model: MLP, x, y, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, dz_y/dh) of layer `index` by autograd, [batch, units] each."""
    z, hidden = forward_with_hidden(model, x)
    g = torch.autograd.grad(z.gather(1, y[:, None]).sum(), hidden[index])[0]
    return hidden[index].detach(), g


@pytest.mark.parametrize("index,tolerance", [(2, 1e-10), (0, 1e-3)])
def test_outgoing_part_moves_the_target_logit_by_alpha_times_the_gxd_terms(index, tolerance):
    """Exact through the linear head (last layer), first order deeper down."""
    model = small_mlp("tanh")
    x, y = batch(n=16)
    layer, fresh = _held_incoming(model, index)
    h, g = _target_grads(model, x, y, index)
    reference = h.mean(0) + 0.1  # off the batch mean: a non-trivial h - r
    alpha = torch.linspace(1e-4, 5e-4, h.shape[1], dtype=torch.double)
    change = _target_change(model, x, y, lambda: partial_reset(layer, alpha, fresh, reference))
    predicted = -(alpha * (h - reference) * g).sum(1)
    assert predicted.abs().max() > 1e-6
    assert (change - predicted).abs().max() <= tolerance * predicted.abs().max()


def test_one_unit_moved_alone_costs_alpha_times_its_gxd_utility():
    """mean_x |dz_y| = alpha x the registered gxd utility's instantaneous score."""
    model = small_mlp("tanh")
    x, y = batch(n=16)
    layer, fresh = _held_incoming(model, 2)
    h, g = _target_grads(model, x, y, 2)
    reference = h.mean(0) + 0.1
    weights = (layer.incoming.weight, layer.outgoing.weight)
    gxd = UTILITIES.get("gxd").fn(UtilityInputs(LayerTaps(h, target_grad=g), reference, *weights))
    alpha = torch.zeros(layer.n_units, dtype=torch.double)
    alpha[4] = 1e-3
    change = _target_change(model, x, y, lambda: partial_reset(layer, alpha, fresh, reference))
    torch.testing.assert_close(change.abs().mean(), 1e-3 * gxd[4], rtol=1e-10, atol=0)


def test_incoming_move_adds_its_own_first_order_term():
    """Full partial reset of layer 1 (random fresh, non-zero bias): dz_y = alpha g [-(h - r)
    + phi'(a) ((fresh - w) . x_in - b)] to first order."""
    model = small_mlp("tanh")
    x, y = batch(n=16)
    index = 1
    layer = model.unit_layers()[index]
    h, g = _target_grads(model, x, y, index)
    x_in = forward_with_hidden(model, x)[1][index - 1].detach()
    reference = h.mean(0) - 0.05
    fresh = layer.sample(layer.n_units, torch.Generator().manual_seed(4))
    alpha = torch.full((layer.n_units,), 1e-4, dtype=torch.double)
    w, b = layer.incoming.weight.detach().clone(), layer.incoming.bias.detach().clone()
    change = _target_change(model, x, y, lambda: partial_reset(layer, alpha, fresh, reference))

    outgoing = -(h - reference)
    incoming = (1 - h**2) * (x_in @ (fresh - w).T - b)  # tanh' = 1 - tanh^2
    predicted = (alpha * g * (outgoing + incoming)).sum(1)
    without_incoming = (alpha * g * outgoing).sum(1)
    error = (change - predicted).abs().max()
    assert error <= 1e-3 * predicted.abs().max()
    assert (change - without_incoming).abs().max() > 100 * error  # the incoming term is real


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.01), ("adam", 1e-3)])
def test_restore_at_a_task_boundary_continues_bit_identically(optimizer, lr):
    config = PermutedMNISTConfig(method="ccbp", optimizer=optimizer, lr=lr,
                                 head_reset_every=1, **MOVING, **{**SMALL, "tasks": 3})  # fmt: skip
    uninterrupted, continued, state = restored_at_a_boundary(run, config)
    assert state["method"]["steps"] == 2 * math.ceil(4000 / 32)
    assert continued == uninterrupted


@pytest.mark.parametrize(
    "field,value",
    [("ccbp_rate", -0.1), ("ccbp_rate", 1.5), ("ccbp_rate", math.nan),
     ("ccbp_sharpness", -1.0), ("ccbp_sharpness", math.inf), ("ccbp_threshold", math.nan),
     ("ccbp_threshold", -0.5), ("ccbp_every", 0)],
)  # fmt: skip
def test_bad_values_are_a_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        PermutedMNISTConfig(method="ccbp", **{field: value})


def test_resnet_conv_units_move_and_the_consumer_sees_the_mixed_unit_inside():
    """Eval mode, one channel moved with its incoming side held (fresh = its own kernel, its
    BatchNorm already fresh): the block's output at interior positions is the output with
    that channel's h replaced by (1 - alpha) h + alpha r."""
    model, layer = _resnet_layer()
    model.eval()
    c, a = 5, 0.3
    with torch.no_grad():
        bn = layer.norm
        bn.weight[c], bn.bias[c], bn.running_mean[c], bn.running_var[c] = 1.0, 0.0, 0.0, 1.0
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.double)
    block = model.blocks[1]
    with torch.no_grad():
        features = model.blocks[0](torch.relu(model.stem_bn(model.stem(x))))
    reference = torch.rand(layer.n_units, dtype=torch.double)

    def mix(module, inputs, h):
        h = h.clone()
        h[:, c] = (1 - a) * h[:, c] + a * reference[c]
        return h

    with torch.no_grad():
        handle = layer.tap.register_forward_hook(mix)
        expected = block(features)
        handle.remove()
        alpha = torch.zeros(layer.n_units, dtype=torch.double)
        alpha[c] = a
        partial_reset(layer, alpha, layer.incoming.weight.clone(), reference)
        moved = block(features)
    inside = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    torch.testing.assert_close(moved[inside], expected[inside], rtol=0, atol=1e-12)
    assert (moved - expected).abs().max() > 1e-6  # the border reads fewer taps


def test_a_resnet_run_through_continuous_cifar_moves_its_units():
    config = ContinuousCIFARConfig(tasks=1, epochs_per_task=1, batch_size=50, method="ccbp",
                                   ccbp_every=3, maturity=0, ccbp_rate=0.05)  # fmt: skip
    experiment = ContinuousCIFAR(config)
    method, moves = experiment.method, []
    move = method.move
    method.move = lambda reference: (moves.append(method.steps), move(reference))
    (row,) = list(experiment)
    assert moves and all(step % 3 == 0 for step in moves)
    assert math.isfinite(row["loss"]) and row["accuracy"] > 0.5 and row["resets"] == 0
    assert all(layer.incoming.weight.ndim == 4 for layer in method.layers)  # conv units
