"""The `plasticity` command line.

    plasticity run permuted-mnist --method cbp --utility gxd --activation silu --tasks 50
    plasticity assay --activation relu,silu --seeds 3 --checkpoints 0,2,5
    plasticity list utilities
    plasticity demo
    plasticity sweep pmnist-quick --out results
    plasticity resume results/pmnist-quick
    plasticity status results/pmnist-quick

Bad input prints one line naming the bad value and what is allowed, and exits with 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from plasticity_core.diagnostics import DIAGNOSTICS
from plasticity_core.errors import PlasticityError
from plasticity_core.experiments import continuous_cifar, reset_cost, resnet_assay
from plasticity_core.experiments.continuous_cifar import ContinuousCIFARConfig
from plasticity_core.experiments.permuted_mnist import NAME, PermutedMNISTConfig, run
from plasticity_core.experiments.resnet_assay import ResNetAssayConfig
from plasticity_core.methods import METHODS
from plasticity_core.models.activations import ACTIVATIONS
from plasticity_core.models.mlp import NORMS
from plasticity_core.optim import OPTIMIZERS
from plasticity_core.utility import UTILITIES
from runner.assay import format_tables, write_checkpoint
from runner.bench import BenchConfig, run_bench
from runner.results import write_rows
from runner.spec import STAGES, load_spec, presets

LISTS = {
    "utilities": lambda: [f"{n:16s}{UTILITIES.get(n).description}" for n in UTILITIES],
    "methods": lambda: [f"{n:16s}{METHODS.get(n).description}" for n in METHODS],
    "diagnostics": lambda: [f"{n:24s}{text}" for n, text in DIAGNOSTICS.items()],
    "activations": ACTIVATIONS.names,
    "norms": lambda: list(NORMS),
    "optimizers": OPTIMIZERS.names,
    "experiments": lambda: [NAME, continuous_cifar.NAME, reset_cost.NAME],
    "presets": lambda: [f"{n:22s}{load_spec(n).description}" for n in presets()],
}


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise UsageError(message)


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}; expected comma-separated integers like 0,5,10"
        ) from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _add_training_options(parser: argparse.ArgumentParser, defaults) -> None:
    """Options shared by every command that trains an MLP on Permuted MNIST."""
    parser.add_argument("--norm", default=defaults.norm, help="none | layer")
    parser.add_argument("--hidden", type=_ints, default=defaults.hidden, help="e.g. 256,256")
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--permutation-seed", type=int, default=defaults.permutation_seed)
    parser.add_argument("--data", default=defaults.data, help="embedded | a folder with MNIST/raw")
    parser.add_argument("--device", default=defaults.device, help="cpu | cuda | cuda:1 ...")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder")


def _override(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def _add_cifar_options(experiments) -> None:
    c = ContinuousCIFARConfig()
    p = experiments.add_parser(
        continuous_cifar.NAME, help="Continuous CIFAR-100: binary tasks on a ResNet"
    )
    p.add_argument("--model", default=c.model, help="resnet8 | resnet18")
    p.add_argument(
        "--data", default=c.data, help="a folder holding cifar-100-python/, or embedded-mnist"
    )
    p.add_argument("--tasks", type=int, default=c.tasks)
    p.add_argument("--epochs-per-task", type=int, default=c.epochs_per_task)
    p.add_argument("--batch-size", type=int, default=c.batch_size)
    p.add_argument("--augment", action="store_true", help="random crop + horizontal flip")
    p.add_argument("--method", default=c.method, help=f"one of {METHODS.names()}")
    p.add_argument("--utility", default=c.utility, help="default: the method's")
    p.add_argument("--optimizer", default=c.optimizer, help="sgd | adam")
    p.add_argument("--lr", type=float, default=c.lr)
    p.add_argument("--momentum", type=float, default=c.momentum)
    p.add_argument("--weight-decay", type=float, default=c.weight_decay)
    p.add_argument("--replacement-rate", type=float, default=c.replacement_rate)
    p.add_argument("--maturity", type=int, default=c.maturity)
    p.add_argument("--seed", type=int, default=c.seed)
    p.add_argument("--pair-seed", type=int, default=c.pair_seed)
    p.add_argument("--device", default=c.device, help="cpu | cuda | cuda:1 ...")
    p.add_argument("--out", type=Path, default=Path("results"), help="output folder")


def _add_spec_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        type=_override,
        metavar="FIELD=VALUE",
        help="replace a fixed field of the spec, e.g. --set data=/data/mnist (repeatable)",
    )


def _add_ray_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        default=None,
        help="join a running Ray cluster ('auto' or HOST:6379); default: start one on "
        "this machine, listening on 127.0.0.1 only",
    )
    parser.add_argument("--num-cpus", type=int, default=None, help="embedded Ray's CPUs")
    parser.add_argument("--num-gpus", type=int, default=None, help="embedded Ray's GPUs")
    parser.add_argument(
        "--dashboard", action="store_true", help="start Ray's dashboard on 127.0.0.1:8265"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="plasticity", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    lister = sub.add_parser("list", help="list registered components")
    lister.add_argument("what", choices=sorted(LISTS))

    run_parser = sub.add_parser("run", help="run one experiment without Ray, rows to Parquet")
    experiments = run_parser.add_subparsers(dest="experiment", required=True, parser_class=_Parser)
    runp = experiments.add_parser(NAME, help="Online Permuted MNIST (MLP)")
    d = PermutedMNISTConfig()
    _add_training_options(runp, d)
    runp.add_argument("--method", default=d.method, help=f"one of {METHODS.names()}")
    runp.add_argument(
        "--utility", default=d.utility, help="drives cbp/redo/regrama; default: the method's"
    )
    runp.add_argument("--activation", default=d.activation, help=f"one of {ACTIVATIONS.names()}")
    runp.add_argument("--tasks", type=int, default=d.tasks)
    runp.add_argument("--seed", type=int, default=d.seed)
    runp.add_argument("--optimizer", default=d.optimizer, help="sgd | adam")
    runp.add_argument("--momentum", type=float, default=d.momentum)
    runp.add_argument("--replacement-rate", type=float, default=d.replacement_rate)
    runp.add_argument("--maturity", type=int, default=d.maturity)
    runp.add_argument("--utility-decay", type=float, default=d.utility_decay)
    runp.add_argument("--weight-decay", type=float, default=d.weight_decay, help="l2 only")
    runp.add_argument("--shrink", type=float, default=d.shrink, help="shrink_perturb only")
    runp.add_argument("--noise-std", type=float, default=d.noise_std, help="shrink_perturb only")
    runp.add_argument("--l2-init", type=float, default=d.l2_init, help="l2_init only")
    runp.add_argument(
        "--dormant-threshold",
        type=float,
        default=d.dormant_threshold,
        help="redo/regrama tau, and the dormant_fraction diagnostic's",
    )
    runp.add_argument("--reset-every", type=int, default=d.reset_every, help="redo/regrama steps")
    runp.add_argument(
        "--head-reset-every",
        type=int,
        default=d.head_reset_every,
        help="re-initialise the output layer every k tasks (0 = never)",
    )
    runp.add_argument(
        "--probe-size",
        type=int,
        default=d.probe_size,
        help="examples for the task-end diagnostics (0 = none)",
    )

    _add_cifar_options(experiments)

    a = reset_cost.ResetCostConfig()
    assay = sub.add_parser("assay", help="reset-cost assay: utilities vs realized reset shock")
    _add_training_options(assay, a)
    assay.add_argument(
        "--activation",
        dest="activations",
        type=_names,
        default=a.activations,
        help="comma-separated, e.g. relu,silu",
    )
    assay.add_argument("--seeds", type=int, default=a.seeds)
    assay.add_argument(
        "--checkpoints",
        type=_ints,
        default=a.checkpoints,
        help="task indices, e.g. 0,5,10,20,30 (the paper's)",
    )
    assay.add_argument(
        "--calibration",
        type=int,
        default=a.calibration,
        help="calibration examples (training split)",
    )
    assay.add_argument(
        "--probe",
        type=int,
        default=a.probe,
        help="probe examples (held-out split; 1,000 at most when embedded)",
    )
    assay.add_argument("--reference", default=a.reference, help="calibration | ema")
    assay.add_argument(
        "--model", default="mlp", help="mlp (Permuted MNIST) | resnet8 | resnet18 (images)"
    )
    r = ResNetAssayConfig()
    assay.add_argument("--epochs", type=int, help=f"ResNet: training epochs ({r.epochs})")
    assay.add_argument(
        "--milestones", type=_ints, help="ResNet: epochs after which lr x0.2 (60,120,160)"
    )
    assay.add_argument("--momentum", type=float, help=f"ResNet: SGD momentum ({r.momentum})")
    assay.add_argument("--weight-decay", type=float, help=f"ResNet: ({r.weight_decay})")
    assay.add_argument(
        "--units-per-layer", type=int, help="ResNet: assay k evenly spaced channels per layer"
    )
    assay.add_argument("--no-augment", dest="augment", action="store_false", default=None)
    # Shared options whose defaults differ per model: unset here, the model's config decides.
    assay.set_defaults(lr=None, batch_size=None, data=None, seeds=None, checkpoints=None,
                       calibration=None, probe=None)  # fmt: skip

    sweep = sub.add_parser("sweep", help="run a spec's stages on Ray Tune: sweep, select, final")
    sweep.add_argument("spec", help="a YAML spec file or a preset (plasticity list presets)")
    sweep.add_argument("--stage", choices=[*STAGES, "all"], default="all")
    _add_spec_overrides(sweep)
    sweep.add_argument("--out", default="results", help="folder or URI (s3://...) for results")
    _add_ray_options(sweep)

    resume = sub.add_parser("resume", help="continue an interrupted or failed experiment")
    resume.add_argument("folder", help="an experiment folder (OUT/NAME) or its URI")
    _add_ray_options(resume)

    status = sub.add_parser("status", help="trials done/running/failed; jobs on a cluster")
    status.add_argument("folder", nargs="?", help="an experiment folder (OUT/NAME) or its URI")
    status.add_argument("--address", help="a cluster's Jobs API, e.g. http://127.0.0.1:8265")
    status.add_argument("--job", help="one job id (with --address)")

    submit = sub.add_parser("submit", help="send a sweep to a Ray cluster (Jobs API)")
    submit.add_argument("spec", help="a YAML spec file or a preset")
    submit.add_argument("--address", required=True, help="Jobs API, e.g. http://127.0.0.1:8265")
    submit.add_argument(
        "--storage", required=True, help="results location every node sees: s3://bucket/prefix"
    )
    submit.add_argument("--stage", choices=[*STAGES, "all"], default="all")
    _add_spec_overrides(submit)

    logs = sub.add_parser("logs", help="the log of a submitted job")
    logs.add_argument("job", help="the job id printed by `plasticity submit`")
    logs.add_argument("--address", required=True, help="Jobs API, e.g. http://127.0.0.1:8265")

    plan = sub.add_parser("plan", help="trials, tasks and compute of a spec, without running")
    plan.add_argument("spec", help="a YAML spec file or a preset")
    plan.add_argument("--cluster", help="a cluster-launcher YAML: wall time on its max workers")
    plan.add_argument("--workers", type=int, help="wall time on this many worker nodes")
    plan.add_argument("--bench", help="a `plasticity bench --json` file measured on the workers")
    _add_spec_overrides(plan)

    demo = sub.add_parser("demo", help="a small real sweep -> select -> final on embedded MNIST")
    demo.add_argument("--out", default="results", help="folder or URI for results")
    _add_ray_options(demo)

    dash = sub.add_parser("dashboard", help="one offline HTML page of Plotly views of results")
    dash.add_argument("folders", nargs="+", help="experiment or results folders (or URIs)")
    dash.add_argument("--out", default=None, help="HTML file (default: FOLDER/dashboard.html)")
    dash.add_argument("--serve", action="store_true", help="also serve it on 127.0.0.1")
    dash.add_argument("--port", type=int, default=8050, help="port for --serve")

    b = BenchConfig()
    bench = sub.add_parser("bench", help="training throughput: the engine vs a plain torch loop")
    bench.add_argument("--models", type=_names, default=b.models, help="WIDTHxDEPTH, e.g. 256x4")
    bench.add_argument("--batch-sizes", type=_ints, default=b.batch_sizes, help="e.g. 1,16,64")
    bench.add_argument(
        "--variants", type=_names, default=b.variants, help="plain,bp,cbp:<utility>,..."
    )
    bench.add_argument("--seconds", type=float, default=b.seconds, help="per timed window")
    bench.add_argument("--repeats", type=int, default=b.repeats, help="rounds; median kept")
    bench.add_argument("--threads", type=int, default=b.threads, help="torch threads")
    bench.add_argument("--device", default=b.device, help="cpu | cuda | cuda:1 ...")
    bench.add_argument("--json", type=Path, default=None, help="write the records here")
    return parser


def _config(cls, args: argparse.Namespace):
    """The dataclass from the options it has; unset (None) options keep its defaults."""
    fields = cls.__dataclass_fields__
    return cls(**{k: v for k, v in vars(args).items() if k in fields and v is not None})


def _assay(args: argparse.Namespace) -> None:
    if args.model == "mlp":
        config = _config(reset_cost.ResetCostConfig, args)
        total = len(config.activations) * config.seeds * len(config.checkpoints)
        results = reset_cost.run(config)
    else:
        if args.data is None:
            raise UsageError("--model resnet* needs --data: a CIFAR-100 folder or embedded-mnist")
        config = _config(ResNetAssayConfig, args)
        total = config.seeds * len(config.checkpoints)
        results = resnet_assay.run(config)
    folder = args.out / reset_cost.NAME
    print(f"{reset_cost.NAME}: {total} checkpoints -> {folder}", flush=True)
    summary = []
    for done, result in enumerate(results, start=1):
        write_checkpoint(result, args.out)
        summary += result.summary
        key = result.summary[0]
        gxd = next(r for r in result.summary if r["utility"] == "gxd")
        print(
            f"[{done:3d}/{total}] {key['activation']:10s} seed {key['seed']} "
            f"{'epoch' if 'model' in key else 'task'} {key['checkpoint']:3d}  "
            f"probe {key['probe']}  "
            f"gxd rho_L1 {gxd['spearman_l1']:.3f}  {result.seconds:.1f} s",
            flush=True,
        )
    print()
    print(format_tables(summary))


def _run(args: argparse.Namespace) -> None:
    if args.experiment == continuous_cifar.NAME:
        config = _config(ContinuousCIFARConfig, args)
        experiment = continuous_cifar.run(config)
        what = f"{config.model} on {config.data}"
    else:
        config = _config(PermutedMNISTConfig, args)
        experiment = run(config)
        what = f"{config.activation} norm={config.norm}"
    trial_id = f"{experiment.config_hash}-s{config.seed}"
    path = args.out / args.experiment / f"{trial_id}.parquet"
    print(
        f"{args.experiment}: {config.method}/{config.hyperparameters()['utility']} "
        f"{what} seed={config.seed} -> {path}"
    )
    rows = []
    for row in experiment:
        rows.append({"stage": "run", "trial_id": trial_id, **row})
        write_rows(rows, path)  # after every task: an interrupted run keeps what it did
        print(
            f"task {row['task'] + 1:4d}/{config.tasks}  acc {row['accuracy']:.3f}  "
            f"train {row['train_accuracy']:.3f}  loss {row['loss']:.3f}  "
            f"resets {row['resets']:3d}  {row['seconds']:.2f} s",
            flush=True,
        )


def _dashboard(args: argparse.Namespace) -> None:
    from runner.dashboard import serve, write_dashboard
    from runner.storage import is_uri

    first = args.folders[0]
    out = args.out or ("dashboard.html" if is_uri(first) else str(Path(first) / "dashboard.html"))
    path = write_dashboard(args.folders, out)
    size = path.stat().st_size if path.exists() else 0
    print(f"dashboard: {path} ({size / 1e6:.1f} MB, works offline)")
    if args.serve:
        serve(path, args.port)


def _cluster_command(args: argparse.Namespace, submit) -> None:
    if args.command == "logs":
        print(submit.job_logs(args.address, args.job), end="")
        return
    spec = load_spec(args.spec, dict(args.overrides))
    job = submit.submit(spec, args.address, args.storage, args.stage)
    print(f"submitted {spec.name} as job {job}; results: {args.storage.rstrip('/')}/{spec.name}")
    print(f"watch: plasticity status --address {args.address} --job {job}")
    print(f"log:   plasticity logs {job} --address {args.address}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "list":
            print("\n".join(LISTS[args.what]()))
        elif args.command == "assay":
            _assay(args)
        elif args.command == "bench":
            run_bench(_config(BenchConfig, args), args.json)
        elif args.command == "dashboard":
            _dashboard(args)
        elif args.command in ("submit", "logs"):
            from runner import submit

            _cluster_command(args, submit)
        elif args.command == "plan":
            from runner.plan import plan_lines

            spec = load_spec(args.spec, dict(args.overrides))
            print("\n".join(plan_lines(spec, args.cluster, args.workers, args.bench)))
        elif args.command in ("sweep", "resume", "demo", "status"):
            from runner import study  # imports Ray: only for the commands that use it

            return getattr(study, args.command)(args)
        else:
            _run(args)
    except (UsageError, PlasticityError) as err:
        print(f"plasticity: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("plasticity: interrupted; rows written so far are kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
