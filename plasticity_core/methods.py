"""Plasticity methods behind one interface: hooks around each optimizer step.

Selection rule, utility and reset operator are separate: `cbp` ranks by any utility,
`redo`/`regrama` threshold any utility, and all reset through `reset.reset_units`.

`before_step` may change the gradients (L2); `after_step` may change the parameters after
the update (CBP resets, shrink-and-perturb) and returns how many units it reset.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from plasticity_core.baselines import L2, Backprop, L2Init, ShrinkPerturb
from plasticity_core.cbp import COMPENSATIONS, CBPConfig, ContinualBackprop
from plasticity_core.ccbp import ContinuousBackprop, ccbp_config
from plasticity_core.errors import ConfigError
from plasticity_core.fields import option
from plasticity_core.infer import InitialFeatureRegularization, check_infer
from plasticity_core.models.units import UnitLayer
from plasticity_core.nap import NormalizeAndProject, check_normalised, scale_invariant_weights
from plasticity_core.optim import Optimizer
from plasticity_core.registry import Registry
from plasticity_core.spectral import SpectralRegularization
from plasticity_core.swr import SelectiveWeightReinit
from plasticity_core.taps import LayerTaps
from plasticity_core.threshold_reset import ThresholdReset
from plasticity_core.upgd import UtilityPerturbedGD, check_upgd
from plasticity_core.utility import UTILITIES
from plasticity_core.weight_utility import WEIGHT_UTILITIES


@dataclass(frozen=True)
class MethodConfig:
    """The method's fields, declared once: every experiment config extends this class, so
    its command line, spec schema and rows carry them under these names."""

    method: str = option("cbp", group="method", choices=lambda: METHODS.names())
    """The plasticity method (see `plasticity list methods`)."""
    utility: str = option("", group="method")
    """Utility that ranks units for cbp, redo and regrama (see `plasticity list
    utilities`), or weights for swr (`plasticity list weight_utilities`); '' = the
    method's own default (see `plasticity list methods`). Other methods read none."""
    replacement_rate: float = option(1e-4, group="method")
    """cbp: fraction of a layer's mature units replaced per step (accumulated); swr: of a
    weight matrix's mature weights."""
    maturity: int = option(100, group="method")
    """cbp, swr: steps before a unit (weight) may be replaced."""
    utility_decay: float = option(0.99, group="method")
    """cbp, swr: decay of the utility (and reference) EMAs."""
    compensation: str = option("reference", group="method", choices=COMPENSATIONS)
    """cbp: 'reference' moves a replaced unit's w_out * r into the consumer's bias (the
    paper); 'none' leaves that bias untouched (what the reference CBP code amounts to)."""
    weight_decay: float = option(1e-4, group="method")
    """l2: lambda of the penalty lambda/2 * ||w||^2 (g += lambda * w)."""
    l2_init: float = option(1e-4, group="method")
    """l2_init: lambda of lambda/2 * ||w - w_0||^2 (Kumar et al. 2023)."""
    shrink: float = option(1e-4, group="method")
    """shrink_perturb: fraction of every weight removed per step."""
    noise_std: float = option(1e-3, group="method")
    """shrink_perturb: std of the Gaussian noise added to every weight per step."""
    dormant_threshold: float = option(0.025, group="method")
    """redo, regrama: tau; a unit is reset when its utility / layer mean <= tau. Also the
    tau of the dormant_fraction diagnostic."""
    reset_every: int = option(1000, group="method")
    """redo, regrama: optimizer steps between threshold checks."""
    spectral_strength: float = option(1e-4, group="method", added_later=True)
    """spectral: lambda of lambda * sum_l (sigma_max(W_l)^2 - 1)^2 (Lewandowski et al.
    2024)."""
    power_iterations: int = option(1, group="method", added_later=True)
    """spectral: power-iteration rounds per step estimating each layer's sigma_max."""
    upgd_decay: float = option(0.9999, group="method", added_later=True)
    """upgd: beta, decay of each weight's utility trace of -g * w (Elsayed & Mahmood 2024)."""
    upgd_noise: float = option(0.1, group="method", added_later=True)
    """upgd: sigma, std of the Gaussian noise added to the gradient before the gate."""
    upgd_weight_decay: float = option(0.01, group="method", added_later=True)
    """upgd: kappa; every step w <- (1 - lr * kappa) w besides the gated step (not gated)."""
    infer_strength: float = option(0.1, group="method", added_later=True)
    """infer: beta of beta * mean_(x,i) (g_i(phi(x)) - g0_i(phi_0(x)))^2 (Lyle et al. 2022)."""
    infer_heads: int = option(10, group="method", added_later=True)
    """infer: k, the auxiliary linear heads on the penultimate features."""
    infer_scale: float = option(10.0, group="method", added_later=True)
    """infer: alpha, scale of the initial heads' outputs the heads regress onto."""
    ccbp_rate: float = option(0.012, group="method", added_later=True)
    """ccbp: rho, the largest fraction of a unit moved toward fresh weights per move."""
    ccbp_sharpness: float = option(16.0, group="method", added_later=True)
    """ccbp: kappa of alpha = rho * min(exp(-kappa (u / layer mean - tau)), 1)."""
    ccbp_threshold: float = option(0.95, group="method", added_later=True)
    """ccbp: tau; units with utility / layer mean <= tau move the full rho."""
    ccbp_every: int = option(1000, group="method", added_later=True)
    """ccbp: optimizer steps between partial resets (1 = every step)."""

    def __post_init__(self) -> None:
        spec = METHODS.get(self.method)
        if spec.default_utility is None and self.utility not in ("", "none"):
            raise ConfigError(
                f"method {self.method} reads no utility, got utility {self.utility!r}; drop "
                "it, or choose a method that ranks by one: "
                f"{', '.join(n for n in METHODS if METHODS.get(n).default_utility)}"
            )
        if spec.default_utility is not None:
            spec.utilities.get(self.resolved_utility)
        self.cbp()
        for name in ("weight_decay", "l2_init", "noise_std", "dormant_threshold",
                     "spectral_strength"):  # fmt: skip
            value = getattr(self, name)
            if not 0 <= value < math.inf:
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        if not 0 <= self.shrink < 1:
            raise ConfigError(f"shrink must be in [0, 1), got {self.shrink}")
        if self.reset_every < 1:
            raise ConfigError(f"reset_every must be >= 1 step, got {self.reset_every}")
        if self.power_iterations < 1:
            raise ConfigError(f"power_iterations must be >= 1, got {self.power_iterations}")
        if self.method == "nap" and getattr(self, "norm", "layer") == "none":
            raise ConfigError("method nap needs normalised hidden layers: add --norm layer")
        check_upgd(self)
        check_infer(self.infer_strength, self.infer_heads, self.infer_scale)
        ccbp_config(self)

    @property
    def resolved_utility(self) -> str:
        """The utility the method uses: the one given, else the method's default; 'none'
        for methods that reset no units. The only place the default is resolved."""
        default = METHODS.get(self.method).default_utility
        return "none" if default is None else (self.utility or default)

    def cbp(self) -> CBPConfig:
        return CBPConfig(
            self.replacement_rate, self.maturity, self.utility_decay, self.compensation
        )


class Method(Protocol):
    """The hooks a training loop calls around each optimizer update. A method that must read
    more of the step than gradients and taps (the batch, the model) may also define
    `bind(step)`, which `bind_step` calls once the step exists."""

    needs: frozenset[str]
    """Taps (see taps.TAPS) the method reads in after_step."""

    def before_step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None: ...

    def after_step(self, taps: Sequence[LayerTaps]) -> int: ...

    def reset_counts(self) -> list[int]:
        """Units reset so far per hidden layer ([] for methods that never reset)."""
        ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


MethodFactory = Callable[[MethodConfig, list[UnitLayer], Optimizer, torch.Generator], Method]


@dataclass(frozen=True)
class MethodSpec:
    build: MethodFactory
    default_utility: str | None
    """The utility used when none is given; None for methods that read no utility."""
    description: str
    reads: tuple[str, ...] = ()
    """The MethodConfig fields (hyperparameters) the method reads, for `plasticity list
    methods` and the README's table."""
    utilities: Registry = UTILITIES
    """Where its utility is chosen from: unit utilities, or weight utilities for swr."""


def _threshold(cfg: MethodConfig, layers, opt, gen) -> ThresholdReset:
    utility = UTILITIES.get(cfg.resolved_utility)
    return ThresholdReset(layers, utility, opt, cfg.dormant_threshold, cfg.reset_every, gen)


def _nap(cfg: MethodConfig, layers, opt, gen) -> NormalizeAndProject:
    check_normalised(layers)  # models without a `norm` field reach here unchecked
    return NormalizeAndProject(scale_invariant_weights(layers))


METHODS: Registry[MethodSpec] = Registry("method")
_CBP = ("replacement_rate", "maturity", "utility_decay", "compensation")
_THRESHOLD = ("dormant_threshold", "reset_every")
METHODS.add("bp", MethodSpec(lambda cfg, layers, opt, gen: Backprop(), None, "plain backprop"))
METHODS.add(
    "l2",
    MethodSpec(lambda cfg, layers, opt, gen: L2(cfg.weight_decay), None, "g += lambda w",
               ("weight_decay",)),  # fmt: skip
)
METHODS.add(
    "l2_init",
    MethodSpec(
        lambda cfg, layers, opt, gen: L2Init(opt.params, cfg.l2_init),
        None,
        "g += lambda (w - w_0) (Kumar et al. 2023)",
        ("l2_init",),
    ),
)
METHODS.add(
    "shrink_perturb",
    MethodSpec(
        lambda cfg, layers, opt, gen: ShrinkPerturb(opt.params, cfg.shrink, cfg.noise_std, gen),
        None,
        "w <- (1 - shrink) w + noise (Ash & Adams 2020)",
        ("shrink", "noise_std"),
    ),
)
METHODS.add(
    "cbp",
    MethodSpec(
        lambda cfg, layers, opt, gen: ContinualBackprop(
            layers, UTILITIES.get(cfg.resolved_utility), opt, cfg.cbp(), gen
        ),
        "gxd",
        "continual backprop: replace the lowest-utility mature units (Algorithm 1; Dohare "
        "et al. 2024)",
        _CBP,
    ),
)
METHODS.add(
    "redo",
    MethodSpec(_threshold, "activation",
               "reset units with utility/layer mean <= tau (ReDo; Sokar et al. 2023)",
               _THRESHOLD),  # fmt: skip
)
METHODS.add(
    "regrama",
    MethodSpec(_threshold, "loss_gradient", "ReDo's rule on gradient magnitude (ReGraMa)",
               _THRESHOLD),  # fmt: skip
)
METHODS.add(
    "nap",
    MethodSpec(
        _nap,
        None,
        "normalize-and-project: weights back to their initial norm after each step "
        "(Lyle et al. 2024); needs --norm layer",
    ),
)
METHODS.add(
    "spectral",
    MethodSpec(
        lambda cfg, layers, opt, gen: SpectralRegularization(
            opt.params, cfg.spectral_strength, cfg.power_iterations
        ),
        None,
        "g += lambda d/dW (sigma_max(W)^2 - 1)^2 per layer (Lewandowski et al. 2024)",
        ("spectral_strength", "power_iterations"),
    ),
)
METHODS.add(
    "swr",
    MethodSpec(
        lambda cfg, layers, opt, gen: SelectiveWeightReinit(
            WEIGHT_UTILITIES.get(cfg.resolved_utility), opt, cfg.cbp(), gen
        ),
        "gradient",
        "selective weight reinitialization: re-draw the lowest-utility mature weights "
        "(Hernandez-Garcia et al. 2025)",
        ("replacement_rate", "maturity", "utility_decay"),
        WEIGHT_UTILITIES,
    ),
)
METHODS.add(
    "upgd",
    MethodSpec(
        lambda cfg, layers, opt, gen: UtilityPerturbedGD(
            opt.params, cfg.upgd_decay, cfg.upgd_noise, cfg.upgd_weight_decay, gen
        ),
        None,
        "utility-based perturbed gradient descent: g <- 2 (g + noise) (1 - sigmoid(scaled "
        "utility of -g w)) + kappa w (Elsayed & Mahmood 2024); sgd only",
        ("upgd_decay", "upgd_noise", "upgd_weight_decay"),
    ),
)

METHODS.add(
    "infer",
    MethodSpec(
        lambda cfg, layers, opt, gen: InitialFeatureRegularization(
            cfg.infer_strength, cfg.infer_heads, cfg.infer_scale, getattr(cfg, "lr", 0.01), gen
        ),
        None,
        "initial feature regularisation: k linear heads on the penultimate features regress "
        "the initial network's outputs, g += d L_aux/d theta (InFeR; Lyle et al. 2022)",
        ("infer_strength", "infer_heads", "infer_scale"),
    ),
)
METHODS.add(
    "ccbp",
    MethodSpec(
        lambda cfg, layers, opt, gen: ContinuousBackprop(
            layers, UTILITIES.get(cfg.resolved_utility), opt, ccbp_config(cfg), gen
        ),
        "gxd",
        "continuous continual backprop: every unit moved part of the way to a fresh one, "
        "alpha = rho * min(exp(-kappa (u / mean u - tau)), 1) (McCutcheon et al. 2026)",
        (
            "ccbp_rate",
            "ccbp_sharpness",
            "ccbp_threshold",
            "ccbp_every",
            "maturity",
            "utility_decay",
            "compensation",
        ),
    ),
)


def build_method(
    config: MethodConfig,
    layers: list[UnitLayer],
    optimizer: Optimizer,
    generator: torch.Generator,
) -> Method:
    """Instantiate the method named by `config` for a model's unit layers and optimizer."""
    return METHODS.get(config.method).build(config, layers, optimizer, generator)


def bind_step(method: Method, step) -> None:
    """Give `method` the training step (a `step.TrainingStep`: its model, last batch and
    gradient buffers) if it reads more of it than the hooks pass."""
    bind = getattr(method, "bind", None)
    if bind is not None:
        bind(step)
