"""The `plasticity` command line.

    plasticity run permuted-mnist --method cbp --utility gxd --activation silu --tasks 50
    plasticity run permuted-mnist --help          # every option, from the config's fields
    plasticity assay --activations relu,silu --seeds 3 --checkpoints 0,2,5
    plasticity list utilities
    plasticity data fetch mnist cifar100          # into ~/.cache/plasticity/data
    plasticity demo
    plasticity sweep pmnist-quick --out results
    plasticity resume results/pmnist-quick
    plasticity status results/pmnist-quick

Bad input prints one line naming the bad value and what is allowed, and exits with 2.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence

from plasticity_core.errors import PlasticityError
from runner.cli import assay, datasets, run, studies, summary, tools
from runner.cli.options import Parser, UsageError


def build_parser() -> Parser:
    parser = Parser(prog="plasticity", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run.add_parser(sub)
    assay.add_parser(sub)
    datasets.add_parser(sub)
    studies.add_parsers(sub)
    tools.add_parsers(sub)
    summary.add_parser(sub)
    return parser


COMMANDS = {"run": run.run, "assay": assay.run, "list": tools.run, "bench": tools.run,
            "dashboard": tools.run, "data": datasets.run, "summary": summary.run}  # fmt: skip
"""Commands by module; the rest are the spec-driven ones (runner.cli.studies)."""


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS.get(args.command, studies.run)(args) or 0
    except (UsageError, PlasticityError) as err:
        print(f"plasticity: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("plasticity: interrupted; rows written so far are kept", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `plasticity plan X | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 0
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        # Every write is a temporary file renamed over its target: what was written
        # before is whole, and the command can run again once there is space.
        where = err.filename or "the results disk"
        print(f"plasticity: error: no space left on {where}; files written before are "
              "intact: free space and run the command again", file=sys.stderr)  # fmt: skip
        return 1


if __name__ == "__main__":
    sys.exit(main())
