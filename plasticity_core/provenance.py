"""What produced a row: a hash of the configuration and the code version."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from pathlib import Path

import plasticity_core


def config_hash(params: dict) -> str:
    """12 hex digits of SHA-256 over the parameters as sorted JSON."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@functools.cache
def code_version() -> str:
    """Package version, plus the git commit (and '-dirty') when run from a checkout."""
    version = plasticity_core.__version__
    root = Path(plasticity_core.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=10"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+{commit}" if commit else version
