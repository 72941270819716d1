"""How many CPU threads torch may use in a command that trains (`run`, `assay`)."""

from __future__ import annotations

import torch

from plasticity_core.errors import ConfigError


def add_threads_option(parser) -> None:
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch's CPU threads (default: torch's own, every core); on a machine other "
        "work shares, give each process its share of the cores",
    )  # fmt: skip


def set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
