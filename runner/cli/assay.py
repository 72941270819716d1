"""`plasticity assay`: the reset-cost assay on the MLP (Permuted MNIST) or a CIFAR ResNet.
Options are generated from both configs' fields; an option left out keeps the chosen
model's own default."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from plasticity_core.devices import check_device
from plasticity_core.experiments import reset_cost, resnet_assay
from plasticity_core.experiments.reset_cost import ResetCostConfig
from plasticity_core.experiments.resnet_assay import ResNetAssayConfig
from plasticity_core.models.resnet import MODELS as RESNETS
from runner.assay import format_tables, paper_differences, write_checkpoint
from runner.cli.options import UsageError, add_config_options, given_options
from runner.cli.threads import add_threads_option, set_threads

MODELS = ("mlp", *RESNETS)


def add_parser(sub) -> None:
    assay = sub.add_parser(
        "assay", help="reset-cost assay: utilities vs realized reset shock",
        description="Options of both models; each reads its own (the MLP's first, then the "
        "ResNet-only ones), and an option left out keeps that model's default.",
    )  # fmt: skip
    assay.add_argument(
        "--model",
        choices=MODELS,
        default="mlp",
        help="mlp (Permuted MNIST) | resnet8 | resnet18 (images); default: mlp",
    )
    assay.add_argument(
        "--paper",
        action="store_true",
        help="the paper's setting (MLP: Table 3, 30 tasks, checkpoints 0,5,10,20,"
        "30, 3 seeds; the ResNet defaults are its recipe already); options given "
        "beside it change that setting",
    )
    add_config_options(assay, ResetCostConfig)
    mlp_fields = {f.name for f in dataclasses.fields(ResetCostConfig)}
    add_config_options(assay, ResNetAssayConfig, skip=frozenset({"model", *mlp_fields}))
    assay.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    add_threads_option(assay)


def run(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    if args.model == "mlp":
        paper = ResetCostConfig(**reset_cost.PAPER)
        config = _config(ResetCostConfig, args, **(reset_cost.PAPER if args.paper else {}))
        total = len(config.activations) * config.seeds * len(config.checkpoints)
        results = reset_cost.run(config)
    else:
        if "data" not in vars(args):
            raise UsageError("--model resnet* needs --data: a CIFAR-100 folder or embedded-mnist")
        paper = ResNetAssayConfig(model=args.model)
        config = _config(ResNetAssayConfig, args, model=args.model)
        total = config.seeds * len(config.checkpoints)
        results = resnet_assay.run(config)
    weights = getattr(config, "level", "unit") == "weight"
    folder = args.out / (f"{reset_cost.NAME}-weights" if weights else reset_cost.NAME)
    headline = "gxd_weight" if weights else "gxd"
    print(f"{reset_cost.NAME}: {total} checkpoints -> {folder}", flush=True)
    summary = []
    for done, result in enumerate(results, start=1):
        write_checkpoint(result, args.out)
        summary += result.summary
        key = result.summary[0]
        gxd = next(r for r in result.summary if r["utility"] == headline)
        print(
            f"[{done:3d}/{total}] {key['activation']:10s} seed {key['seed']} "
            f"{'epoch' if 'model' in key else 'tasks'} {key['checkpoint']:3d}  "
            f"probe {key['probe']}  {headline} rho_L1 pooled {gxd['spearman_l1_pooled']:.3f} "
            f"per layer {gxd['spearman_l1_per_layer']:.3f}  {result.seconds:.1f} s",
            flush=True,
        )
    print()
    print(format_tables(summary, paper_differences(config, paper, summary)))


def _config(cls: type, args: argparse.Namespace, model: str | None = None, **base):
    """The chosen model's config: `base` values under the options given; an option only the
    other model reads is an error."""
    mine = {k: v for k, v in given_options(cls, args).items() if k != "model"}
    theirs = given_options(ResetCostConfig, args) | given_options(ResNetAssayConfig, args)
    foreign = sorted(set(theirs) - set(mine) - {"model"})
    if foreign:
        flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
        raise UsageError(f"--model {args.model} reads no {flags}")
    config = cls(**{**base, **mine}, **({"model": model} if model else {}))
    check_device(config.device)
    return config
