"""`plasticity data fetch NAME...` and `plasticity data list`: the named datasets."""

from __future__ import annotations

import argparse

from plasticity_core.data.catalog import DATASETS, ENV, data_root, verify
from runner.cli.options import Parser
from runner.download import TIMEOUT, fetch


def add_parser(sub) -> None:
    data = sub.add_parser(
        "data", help="named datasets: fetch mnist | cifar100, list what is present",
        description=f"Datasets live under --root, else ${ENV}, else ~/.cache/plasticity/data; "
        "specs and runs then say data: mnist or data: cifar100.",
    )  # fmt: skip
    actions = data.add_subparsers(dest="action", required=True, parser_class=Parser)
    fetcher = actions.add_parser("fetch", help="download, verify and lay out datasets")
    fetcher.add_argument("names", nargs="+", choices=sorted(DATASETS), metavar="NAME",
                         help=f"one or more of: {', '.join(DATASETS)}")  # fmt: skip
    fetcher.add_argument(
        "--mirror",
        default=None,
        help="a base URL serving the same files (default: the public mirrors)",
    )
    fetcher.add_argument("--timeout", type=float, default=TIMEOUT,
                         help="seconds a connection or a read may take")  # fmt: skip
    lister = actions.add_parser("list", help="which datasets are present and verified")
    for parser in (fetcher, lister):
        parser.add_argument("--root", default=None, help="the data root")


def run(args: argparse.Namespace) -> None:
    root = data_root(args.root)
    if args.action == "fetch":
        for name in dict.fromkeys(args.names):
            folder = fetch(DATASETS[name], root, args.mirror, args.timeout)
            print(f"{name}: ready in {folder}")
        return
    print(f"data root: {root}")
    for name, dataset in DATASETS.items():
        state = verify(dataset, root)
        size = sum(p.stat().st_size for p, _ in dataset.needed(root) if p.is_file())
        print(f"{name:10s} {state:11s} {dataset.location(root)}  {size / 1e6:.1f} MB")
