"""Slowly-changing regression (Dohare et al., Nature 2024, "bit-flipping"), as a recipe.

The field's cheapest demonstration of loss of plasticity: a learner with one hidden layer of
5 units tracks a fixed random target network whose inputs change slowly (see
`data.bit_flipping`). One example per step, squared error; a task is one flip period
(10,000 steps by default) and its row's `loss` is the mean squared error of the period's
predictions, each made before the step that learns from it (online error). With ReLU,
plain backprop's error first falls and then rises over the million steps; CBP keeps it low
(the reference's Fig. 1 c/d).

GXD's target output here is the single regression output: |dy_hat/dh * (h - r)|.

Every run draws its own target network and stream from its seed (`data_generator`);
nothing is downloaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from plasticity_core.data.bit_flipping import MODES, BitFlipping, SlowlyChangingStream
from plasticity_core.errors import ConfigError
from plasticity_core.experiments.registry import EXPERIMENTS, Experiment, StepCost
from plasticity_core.experiments.task_loop import Task, TaskConfig, TaskLoop
from plasticity_core.fields import option
from plasticity_core.models.activations import ACTIVATIONS
from plasticity_core.models.mlp import MLP, check_architecture
from plasticity_core.step import MLPStep

NAME = "slowly-changing-regression"


@dataclass(frozen=True)
class SlowlyChangingRegressionConfig(TaskConfig):
    tasks: int = option(100)
    """Flip periods (100 x 10,000 steps = the reference's 1,000,000 steps)."""
    batch_size: int = option(1, group="optimizer")
    """Examples per optimizer step (the reference: 1)."""
    flip_every: int = option(10_000)
    """T: steps per flip period (one task)."""
    flip_mode: str = option("flip", choices=MODES)
    """'flip': one slow bit flips per period (the paper's text); 'redraw': all slow bits
    are redrawn (the reference code's default data)."""
    bits: int = option(20)
    """m: input bits (plus a constant bias input)."""
    slow_bits: int = option(15)
    """f: the slowly changing bits."""
    target_hidden: int = option(100)
    """Linear-threshold units of the target network."""
    beta: float = option(0.7)
    """The target's threshold parameter: theta_i = beta (m + 1) - S_i."""
    hidden: tuple[int, ...] = option((5,), group="model")
    """The learner's hidden widths (the reference: 5)."""
    activation: str = option("relu", group="model", choices=lambda: ACTIVATIONS.names())
    """The hidden layer's nonlinearity."""
    probe_size: int = option(0)
    """Examples of each period the task-end diagnostics are computed on (0 = none)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(w) for w in self.hidden))
        super().__post_init__()
        self.problem()
        if self.probe_size < 0:
            raise ConfigError("probe_size must be >= 0")
        check_architecture(self.hidden, self.activation, "none")

    def problem(self) -> BitFlipping:
        return BitFlipping(self.bits, self.slow_bits, self.flip_every, self.target_hidden,
                           self.beta, self.flip_mode)  # fmt: skip


class SlowlyChangingRegression(TaskLoop):
    """Each task: one flip period of the run's own stream, stepped on in order."""

    NAME = NAME
    LOSS = "squared_error"
    GENERATORS = (("generator", "device"), ("order_generator", "cpu"),
                  ("data_generator", "cpu"))  # fmt: skip

    def load_data(self) -> None:
        pass  # the stream is drawn from the run's seed, once its generators exist

    def build_model(self) -> MLP:
        self.stream = SlowlyChangingStream(self.config.problem(), self.data_generator)
        cfg = self.config
        return MLP(self.stream.n_inputs, cfg.hidden, 1, cfg.activation, "none",
                   generator=self.generator)  # fmt: skip

    def build_step(self) -> MLPStep:
        return MLPStep(self.model, self.method.needs, self.LOSS)

    def start_task(self) -> Task:
        x, y = self.stream.period()
        x, y = x.to(self.device), y.to(self.device)
        probe = x[: self.config.probe_size] if self.config.probe_size else None
        return Task(None, None, examples=(x, y), batch_size=self.config.batch_size, probe=probe)

    def recipe_state(self) -> dict:
        return {"stream": self.stream.state_dict()}

    def load_recipe_state(self, state: dict) -> None:
        self.stream.load_state_dict(state["stream"])


def step_cost(config: SlowlyChangingRegressionConfig) -> StepCost:
    widths = (config.bits + 1, *config.hidden, 1)
    flops = config.batch_size * sum(a * b for a, b in zip(widths, widths[1:], strict=False))
    return StepCost(math.ceil(config.flip_every / config.batch_size), flops, config.flip_every)


EXPERIMENTS.add(NAME, Experiment(
    name=NAME,
    config=SlowlyChangingRegressionConfig,
    run=SlowlyChangingRegression,
    description="Slowly-changing regression (bit-flipping; Dohare et al. 2024)",
    facets=("activation", "optimizer"),
    cost=step_cost,
    packable=True,
    metric="loss",
    mode="min",
))  # fmt: skip

__all__ = ["NAME", "SlowlyChangingRegression", "SlowlyChangingRegressionConfig"]
