"""The spec-driven commands: sweep, resume, status, demo (on Ray), plan, and the cluster's
submit and logs."""

from __future__ import annotations

import argparse

from plasticity_core.errors import ConfigError, brief
from runner.safe_yaml import load_yaml
from runner.spec import MAX_TRIALS, STAGES, load_spec


def _override(text: str) -> tuple[str, object]:
    """--set FIELD=VALUE, the value read as YAML under the spec's own bounds."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {brief(text)}")
    try:
        return key.strip(), load_yaml(value, f"--set {key.strip()}")
    except ConfigError as err:  # argparse shows only an ArgumentTypeError's own text
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_spec_options(parser: argparse.ArgumentParser, out: bool = False) -> None:
    parser.add_argument("spec", help="a YAML spec file, a preset (plasticity list presets) "
                        "or - (standard input)")  # fmt: skip
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], type=_override,
        metavar="FIELD=VALUE",
        help="replace a fixed field of the spec, e.g. --set data=/data/mnist (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--max-trials", type=_positive, default=MAX_TRIALS, metavar="N",
        help=f"refuse a spec whose stage has more than N trials (default {MAX_TRIALS:,})",
    )  # fmt: skip
    if out:
        parser.add_argument("--out", default="results", help="folder or URI (s3://...)")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def _add_ray_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", default=None,
        help="join a running Ray cluster ('auto' or HOST:6379); default: start one on "
        "this machine, listening on 127.0.0.1 only",
    )  # fmt: skip
    parser.add_argument("--num-cpus", type=int, default=None, help="embedded Ray's CPUs")
    parser.add_argument("--num-gpus", type=int, default=None, help="embedded Ray's GPUs")
    parser.add_argument(
        "--dashboard", action="store_true", help="start Ray's dashboard on 127.0.0.1:8265"
    )


def add_parsers(sub) -> None:
    sweep = sub.add_parser("sweep", help="run a spec's stages on Ray Tune: sweep, select, final")
    _add_spec_options(sweep, out=True)
    sweep.add_argument("--stage", choices=[*STAGES, "all"], default="all")
    _add_ray_options(sweep)

    resume = sub.add_parser("resume", help="continue an interrupted or failed experiment")
    resume.add_argument("folder", help="an experiment folder (OUT/NAME) or its URI")
    _add_ray_options(resume)

    status = sub.add_parser("status", help="trials done/running/failed; jobs on a cluster")
    status.add_argument("folder", nargs="?", help="an experiment folder (OUT/NAME) or its URI")
    status.add_argument("--address", help="a cluster's Jobs API, e.g. http://127.0.0.1:8265")
    status.add_argument("--job", help="one job id (with --address)")

    submit = sub.add_parser("submit", help="send a sweep to a Ray cluster (Jobs API)")
    _add_spec_options(submit)
    submit.add_argument("--address", required=True, help="Jobs API, e.g. http://127.0.0.1:8265")
    submit.add_argument(
        "--storage", required=True, help="results location every node sees: s3://bucket/prefix"
    )
    submit.add_argument("--stage", choices=[*STAGES, "all"], default="all")

    logs = sub.add_parser("logs", help="the log of a submitted job")
    logs.add_argument("job", help="the job id printed by `plasticity submit`")
    logs.add_argument("--address", required=True, help="Jobs API, e.g. http://127.0.0.1:8265")

    plan = sub.add_parser("plan", help="trials, tasks and compute of a spec, without running")
    _add_spec_options(plan)
    plan.add_argument("--cluster", help="a cluster-launcher YAML: wall time on its max workers")
    plan.add_argument("--workers", type=int, help="wall time on this many worker nodes")
    plan.add_argument("--bench", help="a `plasticity bench --json` file measured on the workers")

    demo = sub.add_parser("demo", help="a small real sweep -> select -> final on embedded MNIST")
    demo.add_argument("--out", default="results", help="folder or URI for results")
    _add_ray_options(demo)


def run(args: argparse.Namespace) -> int:
    if args.command in ("submit", "logs"):
        _cluster_command(args)
    elif args.command == "plan":
        from runner.plan import plan_lines

        spec = load_spec(args.spec, dict(args.overrides), max_trials=args.max_trials)
        print("\n".join(plan_lines(spec, args.cluster, args.workers, args.bench)))
    else:
        from runner import study  # imports Ray: only for the commands that use it

        return getattr(study, args.command)(args)
    return 0


def _cluster_command(args: argparse.Namespace) -> None:
    from runner import submit

    if args.command == "logs":
        print(submit.job_logs(args.address, args.job), end="")
        return
    spec = load_spec(args.spec, dict(args.overrides), max_trials=args.max_trials)
    job = submit.submit(spec, args.address, args.storage, args.stage, args.max_trials)
    print(f"submitted {spec.name} as job {job}; results: {args.storage.rstrip('/')}/{spec.name}")
    print(f"watch: plasticity status --address {args.address} --job {job}")
    print(f"log:   plasticity logs {job} --address {args.address}")
