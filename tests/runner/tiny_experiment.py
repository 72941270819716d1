"""A throw-away experiment, registered in a few lines: a TaskLoop recipe on random data
whose tasks are fresh random labels (the whole protocol is `start_task`)."""

from dataclasses import dataclass

import torch

from plasticity_core.experiments import EXPERIMENTS, Experiment
from plasticity_core.experiments.task_loop import Task, TaskConfig, TaskLoop
from plasticity_core.fields import option
from plasticity_core.models.mlp import MLP
from plasticity_core.step import MLPStep

NAME = "tiny-labels"


@dataclass(frozen=True)
class TinyConfig(TaskConfig):
    tasks: int = option(3)
    """Tasks, each new random labels for the same inputs."""
    width: int = option(16, group="model")
    """Hidden units."""


class Tiny(TaskLoop):
    NAME = NAME

    def load_data(self) -> None:
        self.x = torch.randn(256, 8, generator=torch.Generator().manual_seed(0))

    def build_model(self) -> MLP:
        return MLP(8, (self.config.width,), 4, "relu", "none", generator=self.generator)

    def build_step(self) -> MLPStep:
        return MLPStep(self.model, self.method.needs)

    def start_task(self) -> Task:
        y = torch.randint(0, 4, (256,), generator=self.order_generator)
        return Task(
            self.x, y, examples=(self.x, y), batch_size=32, columns={"label_seed": self.task}
        )


EXPERIMENTS.add(
    NAME,
    Experiment(
        NAME,
        TinyConfig,
        Tiny,
        "random labels on random inputs",
        measured=("label_seed",),
        facets=("width", "method"),
    ),
)
