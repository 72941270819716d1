"""Shared pieces of the tests that run real Ray Tune experiments."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

TIMING = {"seconds", "diagnostics_seconds", "code_version"}
"""Columns that legitimately differ between two runs of the same trial."""


def write_spec(folder: Path, name: str, **overrides) -> Path:
    """A tiny Permuted MNIST spec: 2 configurations x 1 seed x 5 tasks of a 784-16-10 MLP."""
    spec = {
        "name": name,
        "experiment": "permuted-mnist",
        "fixed": {
            "tasks": 5,
            "hidden": [16],
            "probe_size": 100,
            "method": "cbp",
            "utility": "gxd",
            "maturity": 5,
            "replacement_rate": 0.01,
        },
        "grid": {"lr": [0.01, 0.05]},
        "seeds": {"sweep": 1, "final": 1},
        "select": {"per": ["utility"]},
        "checkpoint_every": 2,
        "max_failures": 0,
    }
    for key, value in overrides.items():
        merge = isinstance(value, dict) and key != "grid"
        spec[key] = {**spec.get(key, {}), **value} if merge else value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def listening_addresses(root_pid: int) -> set[str]:
    """Local addresses of the TCP sockets in LISTEN state held by `root_pid`'s descendants
    (hex IPv4 / IPv6 as in /proc/net/tcp*)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    family, frontier = set(), {root_pid}
    while frontier:
        family |= frontier
        frontier = {p for p, parent in parents.items() if parent in frontier} - family
    inodes = set()
    for pid in family - {root_pid}:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                found.add(fields[1].rsplit(":", 1)[0])
    return found
