"""The torch devices a run may name (cpu, cuda, cuda:N), checked against this machine's
torch before any tensor is made: a wrong --device is one line, not torch's RuntimeError
("Expected one of cpu, cuda, ... device type") or AssertionError ("Torch not compiled with
CUDA enabled") from inside the first allocation."""

from __future__ import annotations

import re

import torch

from plasticity_core.errors import ConfigError, brief

DEVICE = re.compile(r"cpu|cuda(?::(\d{1,4}))?")


def check_device(device: str) -> str:
    """`device` itself when this machine can run on it; else ConfigError, one line."""
    match = DEVICE.fullmatch(device) if isinstance(device, str) else None
    if match is None:
        raise ConfigError(f"unknown device {brief(device)}; choose cpu, cuda or cuda:N")
    if device == "cpu":
        return device
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r}: this torch ({torch.__version__}) cannot use CUDA (a CPU "
            "build, or no driver); use --device cpu"
        )
    count = torch.cuda.device_count()
    if int(match.group(1) or 0) >= count:
        raise ConfigError(
            f"device {device!r}: this machine has {count} CUDA device(s), cuda:0 to "
            f"cuda:{count - 1}"
        )
    return device
