"""Continuous Continual Backprop (CCBP; McCutcheon, Chatzaroulas & Fallah, "Learning
continually at peak performance with continuous continual backpropagation", ICLR 2026
submission, OpenReview UJqXhFFzKu): instead of replacing a few whole units, move every unit
of a hidden layer PART of the way toward a fresh one, by a fraction set by its utility.

The rule, every `every` optimizer steps once the run is older than `maturity` steps, per
hidden layer with utilities u_i (this project's bias-corrected utility EMA, any registered
unit utility; `UnitStatistics`, as CBP keeps it) and references r_i (the bias-corrected
activation EMA, CBP's Eq. 10):

    x_i     = u_i / mean_j u_j                      (utility normalised to a layer mean of 1)
    f(x)    = min(exp(-kappa (x - tau)), 1)         (1 for x <= tau, decaying above it)
    alpha_i = rho * f(x_i)  in [0, rho]             (largest for the lowest utility)

    w_in[i]     <- (1 - alpha_i) w_in[i] + alpha_i fresh_i     (fresh_i from the init law)
    b_in[i]     <- (1 - alpha_i) b_in[i]      norm affine (g_i, beta_i) -> lerp to (1, 0)
    b_out       <- b_out + sum_i alpha_i w_out[:, i] r_i       ('reference' compensation)
    w_out[:, i] <- (1 - alpha_i) w_out[:, i]

so the consumer reads (1 - alpha_i) h_i + alpha_i r_i in place of h_i, and alpha_i = 1 is
exactly CBP's full reset of unit i (`reset.reset_units`). With conv units the compensation
sums each kernel over its taps (as `reset.shift_consumer`: exact at interior positions only);
a conv -> BatchNorm consumer takes it in its running mean, and the unit's own BatchNorm
running statistics are lerped toward a fresh channel's (0, 1). A unit with several
post-activation features (crelu) moves all its consumer columns by its alpha_i, each
compensated with its own feature's reference.

Where it comes from. The paper's text (Eq. 6, Algorithm 1) was NOT available here; the rule
is read from the authors' public code (github.com/LucMc/continual-learning,
`continual_learning_2/optim/ccbp.py` at 92d9498, 2025-09-18, the submission's code; later
renamed "Calibrated Partial Resets", `cpr.py`) and the submission's public reviews: utilities
normalised to a layer mean of 1, mapped to a reset fraction by a transform with a sharpness
kappa and a threshold tau (the reviews' Eq. 6) times rho (apparently Algorithm 1's line 7),
incoming weights lerped toward a fresh draw, outgoing weights scaled by (1 - alpha), applied
every `update_frequency` steps. Which transform Eq. 6 prints is unverified: f above is the
code's default at submission ("exp"); the code also offers sigmoid, softplus and linear
forms (not implemented here), and its later CPR version defaults to min(2 sigmoid(-kappa
(x - tau)), 1). Defaults are the submission code's: rho 0.012, kappa 16, tau 0.95, every
1000 steps, EMA decay 0.99. Deliberate
differences from the authors' code, for this project's comparisons: the utility is any
registered one (theirs: the layer-normalised mean |gradient| of a unit's incoming weights,
normalised per step before the EMA; here the EMA is normalised when it is read); the EMAs
are not restarted after a move; the unit's bias and norm affine shrink by (1 - alpha) toward
their init (theirs leave biases alone) and the consumer bias takes the compensation (theirs:
none; 'none' here leaves it out) - both so that alpha = 1 is CBP's reset; `maturity` holds
moves off while the EMAs warm up (theirs: none).

Optimizer state: every state slice of a touched row / column (SGD momentum; Adam's moments
AND its per-element bias corrections) is scaled by (1 - alpha_i): the state forgets an
alpha_i share of its history. For Adam m/c and v/c are unchanged, so the next update's
direction is too, while the next gradient weighs more; alpha_i = 1 is `optimizer.reset`.
(The authors' code leaves the optimizer state alone; for alpha ~ 1e-2 the two differ little.)

Cost of a partial reset in GXD's terms (first order in alpha, per example, g_i = dz_y/dh_i
through the unchanged network). The outgoing side and its compensation replace h_i by
(1 - alpha_i) h_i + alpha_i r_i, changing the target logit by

    dz_y(out) = -alpha_i (h_i - r_i) g_i,      |dz_y(out)| = alpha_i x the unit's GXD term,

so a unit's mean |dz_y(out)| is alpha_i times its instantaneous GXD utility (Eq. 8): the
moved fraction scales the cost linearly, and a full reset (alpha = 1) costs the GXD term
itself. The incoming move changes h_i itself, by dh_i = alpha_i phi'(a_i) ((fresh_i - w_in[i])
. x - b_i) for a linear unit without norm (a_i its pre-activation), read through the scaled
(1 - alpha_i) w_out; to first order it adds

    dz_y(in) = alpha_i phi'(a_i) ((fresh_i - w_in[i]) . x - b_i) g_i,

also linear in alpha_i, and not part of GXD. Over zero-mean fresh draws it averages to
-alpha_i phi'(a_i) a_i g_i (for ReLU: -alpha_i h_i g_i, a gradient-times-input term), so a
partial reset costs to first order alpha_i x (GXD term + an incoming term), and ranking by
GXD prices only the first (on the tests' small tanh MLP with random fresh rows the incoming
term was ~3x the outgoing one in mean size). For a full reset the incoming part is
invisible (w_out is zeroed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from plasticity_core.cbp import CBPConfig
from plasticity_core.errors import ConfigError
from plasticity_core.models.units import UnitLayer
from plasticity_core.optim import Optimizer
from plasticity_core.reset import UnitResetMethod, per_column, shift_consumer
from plasticity_core.taps import LayerTaps
from plasticity_core.unit_statistics import UnitStatistics, bias_corrected
from plasticity_core.utility import Utility


@dataclass(frozen=True)
class CCBPConfig:
    rate: float = 0.012
    """rho: the fraction moved toward fresh weights of a unit with f = 1, per move."""
    sharpness: float = 16.0
    """kappa: how fast f falls for normalised utilities above tau (0: every unit rho)."""
    threshold: float = 0.95
    """tau: normalised utility (layer mean 1) at and below which a unit moves the full rho."""
    every: int = 1000
    """Optimizer steps between moves (1: every step)."""
    maturity: int = 100
    """Steps before the first move (the EMAs warm up)."""
    decay: float = 0.99
    """eta: decay of the utility and reference EMAs."""
    compensation: str = "reference"
    """'reference': the consumer's bias takes alpha w_out r; 'none': it is left alone."""

    def __post_init__(self) -> None:
        if not 0 <= self.rate <= 1:
            raise ConfigError(f"ccbp_rate must be in [0, 1], got {self.rate}")
        for name, value in (("ccbp_sharpness", self.sharpness),
                            ("ccbp_threshold", self.threshold)):  # fmt: skip
            if not 0 <= value < math.inf:
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        if self.every < 1:
            raise ConfigError(f"ccbp_every must be >= 1 step, got {self.every}")
        CBPConfig(0.0, self.maturity, self.decay, self.compensation)  # the shared fields' checks


def ccbp_config(cfg) -> CCBPConfig:
    """The CCBP settings of a `methods.MethodConfig`; raises ConfigError on a bad value."""
    return CCBPConfig(cfg.ccbp_rate, cfg.ccbp_sharpness, cfg.ccbp_threshold, cfg.ccbp_every,
                      cfg.maturity, cfg.utility_decay, cfg.compensation)  # fmt: skip


def reset_fraction(
    utility: torch.Tensor, rate: float, sharpness: float, threshold: float
) -> torch.Tensor:
    """alpha [units] of one layer from its utilities [units] (>= 0): rho * min(exp(-kappa
    (u / mean(u) - tau)), 1). A layer whose utilities are all 0 moves every unit by rho."""
    normalised = utility / utility.mean().clamp_min(torch.finfo(utility.dtype).tiny)
    return rate * torch.exp(-sharpness * (normalised - threshold)).clamp_max(1.0)


def _along(v: torch.Tensor, like: torch.Tensor, dim: int) -> torch.Tensor:
    """v [n] as a view broadcasting along axis `dim` of `like`."""
    shape = [1] * like.ndim
    shape[dim] = -1
    return v.view(shape)


@torch.no_grad()
def partial_reset(
    layer: UnitLayer,
    alpha: torch.Tensor,
    fresh: torch.Tensor,
    reference: torch.Tensor,
    optimizer: Optimizer | None = None,
    compensate: bool = True,
) -> None:
    """Move every unit i of `layer` an alpha_i [units] part of the way to a fresh unit whose
    incoming weights are `fresh` [units, *w_in.shape[1:]], moving alpha_i w_out[:, c] r_c
    into the consumer's bias for each consumer column c of unit i when `compensate` (module
    docstring). `reference` is [units], or [units, F] for F post-activation features per
    unit (crelu: columns i * F .. (i + 1) * F - 1 are unit i's; a [units] reference then
    serves every feature). Optimizer state of the touched rows and columns is scaled by
    (1 - alpha)."""
    keep = 1 - alpha
    w_in = layer.incoming.weight
    w_in.lerp_(fresh, _along(alpha, w_in, 0))
    touched = [(w_in, 0)]
    if layer.incoming.bias is not None:
        layer.incoming.bias.mul_(keep)
        touched.append((layer.incoming.bias, 0))
    norm = layer.norm
    if norm is not None:
        norm.weight.lerp_(torch.ones_like(norm.weight), alpha)
        norm.bias.mul_(keep)
        touched += [(norm.weight, 0), (norm.bias, 0)]
        if getattr(norm, "running_mean", None) is not None:  # BatchNorm: toward a fresh channel
            norm.running_mean.mul_(keep)
            norm.running_var.lerp_(torch.ones_like(norm.running_var), alpha)
    w_out = layer.outgoing.weight
    features = layer.features
    if compensate:
        moved = alpha.unsqueeze(1) * reference.reshape(len(alpha), -1)
        columns = torch.arange(w_out.shape[1], device=w_out.device)
        shift_consumer(layer, columns, per_column(moved, features))
    keep_columns = per_column(keep, features)
    w_out.mul_(_along(keep_columns, w_out, 1))
    if optimizer is not None:
        for param, dim in touched:
            optimizer.scale(param, keep, dim)
        optimizer.scale(w_out, keep_columns, 1)


class ContinuousBackprop(UnitResetMethod):
    """CCBP over `layers`: `after_step(taps)` after every optimizer step updates the
    utility and reference EMAs and, every `config.every` steps past maturity, moves every
    unit by its alpha. Replaces no whole unit: its reset count is always 0."""

    def __init__(
        self,
        layers: Sequence[UnitLayer],
        utility: Utility,
        optimizer: Optimizer | None,
        config: CCBPConfig,
        generator: torch.Generator | None,
    ) -> None:
        super().__init__(layers, utility, optimizer, generator)
        self.config = config
        if not config.rate:  # moves nothing, so reads nothing: the step is bp's
            self.needs = frozenset()
        sizes = [layer.n_units for layer in self.layers]
        self.stats = UnitStatistics(
            [(layer.incoming.weight, layer.outgoing.weight) for layer in self.layers],
            sizes, utility, config.decay, generator,
        )  # fmt: skip
        self.slices = self.stats.slices
        self.steps = 0

    def corrected_utility(self) -> torch.Tensor:
        """u / (1 - eta^a) [units] (every unit has the run's age: the correction is common
        to a layer and cancels in the normalisation; kept for the utility's own scale)."""
        return bias_corrected(self.stats.utility_ema, self.stats.correction)

    @torch.no_grad()
    def after_step(self, taps: Sequence[LayerTaps]) -> int:
        cfg = self.config
        if not cfg.rate:
            return 0
        self.steps += 1
        reference = self.stats.update(taps)
        if self.steps > cfg.maturity and self.steps % cfg.every == 0:
            self.move(reference)
        return 0

    def move(self, reference: torch.Tensor) -> None:
        """One partial reset of every layer, from the current utilities and `reference`
        [units]; fresh weights drawn layer by layer from the generator."""
        cfg = self.config
        utility = self.corrected_utility()
        compensate = cfg.compensation == "reference"
        for layer, sl in zip(self.layers, self.slices, strict=True):
            alpha = reset_fraction(utility[sl], cfg.rate, cfg.sharpness, cfg.threshold)
            fresh = layer.sample(layer.n_units, self.generator)
            partial_reset(layer, alpha, fresh, reference[sl], self.optimizer, compensate)

    def reset_counts(self) -> list[int]:
        return []

    _TENSORS = ("correction", "activation_ema", "utility_ema")

    def state_dict(self) -> dict:
        return {
            **{name: getattr(self.stats, name).clone() for name in self._TENSORS},
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict) -> None:
        for name in self._TENSORS:
            getattr(self.stats, name).copy_(state[name])
        self.steps = int(state["steps"])
