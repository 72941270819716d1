"""Selective weight reinitialization (SWR; Hernandez-Garcia, Dohare, Luo, Sutton 2025,
"Reinitializing weights vs units for maintaining plasticity in neural networks", CoLLAs;
arXiv 2508.00212): CBP's rule applied to single weights instead of units.

Per weight matrix W (every hidden layer's and the head's; conv kernels alike), after each
optimizer step:

    u <- eta u + (1 - eta) U(w)           the utility EMA of every weight (U: magnitude
                                          |w|, gradient |w g|, or gxd_weight)
    c <- eta c + (1 - eta)                its bias correction 1 - eta^age
    n <- n + rho * #mature                accumulated like CBP (rho = replacement_rate;
                                          mature: age > maturity steps)
    the floor(n) mature weights of lowest u / c are re-drawn from W's init distribution,
    their optimizer state zeroed, their u, c and age set to 0.

As in the authors' code the count is accumulated per weight tensor; unlike it, the utility
EMA is updated every step (there it was updated only on steps with a reinitialization),
ranked bias-corrected like CBP's, and the optimizer state of a re-drawn weight is cleared
(there the momentum buffer was kept). Biases and normalisation parameters are not
reinitialized (the authors' code also resets them to their constant init); the paper's
text was not available here to settle either point. A weight's reset is not compensated:
unlike a unit, it has no reference value to move into a bias.

The rows' `resets` column counts the weights reinitialized, not units.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import torch

from plasticity_core.baselines import Backprop
from plasticity_core.cbp import CBPConfig
from plasticity_core.errors import ConfigError
from plasticity_core.models.weight_init import WeightInit
from plasticity_core.optim import Optimizer
from plasticity_core.taps import LayerTaps
from plasticity_core.weight_utility import WeightInputs, WeightUtility


class SelectiveWeightReinit(Backprop):
    """SWR over the weight matrices of the model of the step it is bound to (`bind`)."""

    def __init__(
        self,
        utility: WeightUtility,
        optimizer: Optimizer,
        config: CBPConfig,
        generator: torch.Generator,
    ) -> None:
        self.utility = utility
        self.needs = utility.needs
        self.optimizer = optimizer
        self.config = config
        self.generator = generator
        self.inits: list[WeightInit] = []
        self.steps = 0

    def bind(self, step) -> None:
        """Track every weight matrix of `step.model` (`model.weight_inits()`), reading its
        gradient (and target gradient) from the step's buffers."""
        weight_inits = getattr(step.model, "weight_inits", None)
        if weight_inits is None:
            raise ConfigError(f"method swr needs a model that lists its weight inits; "
                              f"{type(step.model).__name__} does not")  # fmt: skip
        self.inits = weight_inits()
        index = {id(p): i for i, p in enumerate(step.params)}
        self._grads = [step.grads[index[id(init.weight)]] for init in self.inits]
        if "target_weight_grad" in self.needs:
            self._target = [step.target_weight_grads[index[id(i.weight)]] for i in self.inits]
        else:
            self._target = [None] * len(self.inits)
        weights = [init.weight for init in self.inits]
        self.utility_ema = [torch.zeros_like(w) for w in weights]
        self.correction = [torch.zeros_like(w) for w in weights]
        self.accumulated = [0.0] * len(weights)
        self.counts = [0] * len(weights)
        # Per tensor: (step, flat indices) of the weights reset within the last `maturity`
        # steps (None: all of them, born at step 0), and the same as a mask; every other
        # weight is mature. An age per weight would cost a full comparison per step, and
        # masking each recent reset's indices one op per reset (a hundred per step).
        self.young: list[deque[tuple[int, torch.Tensor | None]]] = [
            deque([(0, None)]) for _ in weights
        ]
        self.immature = [torch.zeros(w.numel(), device=w.device, dtype=torch.bool)
                         for w in weights]  # fmt: skip

    @torch.no_grad()
    def after_step(self, taps: Sequence[LayerTaps]) -> int:
        self.steps += 1
        decay = self.config.decay
        scores = [
            self.utility.fn(WeightInputs(init.weight, g, target, init.mean, self.generator))
            for init, g, target in zip(self.inits, self._grads, self._target, strict=True)
        ]
        torch._foreach_lerp_(self.utility_ema, scores, 1 - decay)
        torch._foreach_mul_(self.correction, decay)
        torch._foreach_add_(self.correction, 1 - decay)
        resets = 0
        for t, k in self._due():
            self._reinitialize(t, k)
            resets += k
        return resets

    def _eligible(self, t: int) -> int:
        young, numel = self.young[t], self.inits[t].weight.numel()
        while young and self.steps - young[0][0] > self.config.maturity:
            _, index = young.popleft()
            if index is not None:  # a weight is reset at most once while young
                self.immature[t].index_fill_(0, index, False)
        return numel - sum(numel if index is None else len(index) for _, index in young)

    def _due(self) -> list[tuple[int, int]]:
        """(tensor, how many weights to re-draw now), from ages alone (no device sync)."""
        due = []
        for t in range(len(self.inits)):
            eligible = self._eligible(t)
            self.accumulated[t] += eligible * self.config.replacement_rate
            k = min(int(self.accumulated[t]), eligible)
            if k > 0:
                self.accumulated[t] -= k
                self.counts[t] += k
                due.append((t, k))
        return due

    def _reinitialize(self, t: int, k: int) -> None:
        init = self.inits[t]
        ranked = self.utility_ema[t].view(-1) / self.correction[t].view(-1)
        ranked.masked_fill_(self.immature[t], float("inf"))
        index = torch.topk(ranked, k, largest=False).indices
        self.immature[t].index_fill_(0, index, True)
        init.weight.view(-1).index_copy_(0, index, init.sample(k, self.generator))
        self.optimizer.reset_elements(init.weight, index)
        for state in (self.utility_ema[t], self.correction[t]):
            state.view(-1).index_fill_(0, index, 0)
        self.young[t].append((self.steps, index))

    def reset_counts(self) -> list[int]:
        """No units are reset (the weights re-drawn per tensor are `weight_counts`)."""
        return []

    def weight_counts(self) -> list[int]:
        """Weights re-drawn so far, per weight matrix (`model.weight_inits()` order)."""
        return list(self.counts)

    def state_dict(self) -> dict:
        return {
            "utility_ema": [t.clone() for t in self.utility_ema],
            "correction": [t.clone() for t in self.correction],
            "steps": self.steps,
            "accumulated": list(self.accumulated),
            "counts": list(self.counts),
            "young": [list(q) for q in self.young],
            "immature": [m.clone() for m in self.immature],
        }

    def load_state_dict(self, state: dict) -> None:
        for name in ("utility_ema", "correction", "immature"):
            for t, saved in zip(getattr(self, name), state[name], strict=True):
                t.copy_(saved)
        self.steps = int(state["steps"])
        self.accumulated = [float(c) for c in state["accumulated"]]
        self.counts = [int(c) for c in state["counts"]]
        self.young = [deque((int(s), index) for s, index in q) for q in state["young"]]
