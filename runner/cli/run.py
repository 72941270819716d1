"""`plasticity run EXPERIMENT [options]`: one run without Ray; one subcommand per
registered experiment, its options generated from the experiment's config dataclass."""

from __future__ import annotations

import argparse

from plasticity_core.devices import check_device
from plasticity_core.experiments import EXPERIMENTS
from runner.cli.options import Parser, add_config_options, given_options
from runner.cli.threads import add_threads_option, set_threads
from runner.local_run import STAGE, run_locally
from runner.trial import Trial

NOT_OPTIONS = frozenset({"device"})
"""Fields set by a run option of their own rather than as part of the configuration."""


def add_parser(sub) -> None:
    run_parser = sub.add_parser("run", help="run one experiment without Ray, rows to Parquet")
    experiments = run_parser.add_subparsers(dest="experiment", required=True, parser_class=Parser)
    for name in EXPERIMENTS:
        entry = EXPERIMENTS.get(name)
        parser = experiments.add_parser(name, help=entry.description,
                                        description=entry.description)  # fmt: skip
        add_config_options(parser, entry.config, skip=NOT_OPTIONS)
        _add_run_options(parser)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run options")
    group.add_argument(
        "--out",
        default="results",
        help="output folder: rows land in OUT/EXPERIMENT/ (default: results)",
    )
    group.add_argument("--device", default="cpu", help="cpu | cuda | cuda:1 ... (default: cpu)")
    existing = group.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue an existing shorter run of this configuration and "
                          "seed from its saved state")  # fmt: skip
    existing.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run of this configuration and seed",
    )
    add_threads_option(group)


def run(args: argparse.Namespace) -> None:
    entry = EXPERIMENTS.get(args.experiment)
    check_device(args.device)
    set_threads(args.threads)
    params = {k: v for k, v in given_options(entry.config, args).items() if k not in NOT_OPTIONS}
    seed = params.pop("seed", entry.config().seed)
    trial = Trial.of(entry.name, STAGE, params, seed)
    config = trial.config(args.device)
    print(f"{entry.name}: method {config.method}, utility {config.resolved_utility}, "
          f"seed {config.seed}, {config.tasks} tasks")  # fmt: skip
    run_locally(trial, args.out, overwrite=args.overwrite, resume=args.resume,
                device=args.device)  # fmt: skip
