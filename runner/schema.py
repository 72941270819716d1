"""Validating a loaded YAML mapping against a dataclass: each value coerced to its field's
type, every problem recorded with its YAML path (`grid[1].lr[0]: expected a number`) so a
spec reports all of them at once. Generic: knows nothing of experiments or sweeps."""

from __future__ import annotations

import dataclasses
import math
from typing import Any


def field_types(config_class: type) -> dict[str, type]:
    """Field -> the Python type of its default (int, float, str, bool or tuple)."""
    return {
        f.name: type(f.default)
        for f in dataclasses.fields(config_class)
        if f.default is not dataclasses.MISSING
    }


BAD = object()
"""What `_coerce` returns for a value it could not convert (the problem is recorded)."""


def coerce(value: Any, kind: type, where: str, problems: list[str]) -> Any:
    """YAML value -> the field's type; YAML 1.1 reads '1e-4' as text, so floats parse text."""
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
            else:
                if math.isfinite(number):
                    return number
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, list) and items:
            try:
                return tuple(int(v) for v in items)
            except (TypeError, ValueError):
                pass
    problems.append(f"{where}: expected {kind_name(kind)}, got {value!r}")
    return BAD


def kind_name(kind: type) -> str:
    return {tuple: "a list of integers", float: "a number", int: "an integer"}.get(
        kind, kind.__name__
    )


def integer(value, where, problems, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        problems.append(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def parse_section(raw, path, cls, problems):
    if not isinstance(raw, dict):
        problems.append(f"{path}: expected a mapping")
        return None
    types = field_types(cls)
    values, ok = {}, True
    for key, value in raw.items():
        if key not in types:
            problems.append(f"{path}.{key}: unknown key; allowed: {', '.join(types)}")
            ok = False
        elif key == "per":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append(f"{path}.per: expected a list of config field names")
                ok = False
            else:
                values[key] = tuple(value)
        else:
            before = len(problems)
            values[key] = coerce(value, types[key], f"{path}.{key}", problems)
            ok &= len(problems) == before
    return cls(**values) if ok else None
