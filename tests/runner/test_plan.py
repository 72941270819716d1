"""`plasticity plan` costs each method by its own bench figure."""

from plasticity_core.experiments.permuted_mnist import PermutedMNISTConfig
from plasticity_core.experiments.registry import StepCost
from runner.plan import cpu_seconds_per_step, variant


def test_each_method_is_costed_by_its_own_bench_variant():
    names = {
        ("cbp", ""): "cbp:gxd",
        ("redo", "gxd"): "cbp:gxd",
        ("ccbp", "activation"): "cbp:activation",
        ("swr", ""): "swr:gradient",
        ("swr", "gxd_weight"): "swr:gxd_weight",
        ("upgd", ""): "upgd",
        ("bp", ""): "bp",
    }
    for (method, utility), expected in names.items():
        assert variant(PermutedMNISTConfig(method=method, utility=utility)) == expected


def test_a_method_without_a_figure_costs_what_bp_does():
    cost = StepCost(steps_per_task=1, flops_per_step=1, examples_per_task=1)
    seconds = {m: cpu_seconds_per_step(PermutedMNISTConfig(method=m, norm="layer"), cost, None)
               for m in ("bp", "upgd", "nap")}  # fmt: skip
    assert seconds["upgd"] > 3 * seconds["bp"] and seconds["nap"] == seconds["bp"]
