"""Validating a loaded YAML mapping against a dataclass: each value coerced to its field's
type, every problem recorded with its YAML path (`grid[1].lr[0]: expected a number`) so a
spec reports all of them at once. Generic: knows nothing of experiments or sweeps."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from plasticity_core.errors import brief

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""C0 and C1 control characters, DEL, and lone surrogates (YAML's "\\ud800" escape makes
one, and no file system or Parquet file can store it)."""


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
    elif kind is str and isinstance(value, str):
        bad = control_character(value)
        if bad is None:
            return value
        problems.append(f"{where}: control character {bad!r} in {brief(value)}")
        return BAD
    elif kind is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, list) and items:
            try:
                return tuple(int(v) for v in items)
            except (TypeError, ValueError):
                pass
    problems.append(f"{where}: expected {kind_name(kind)}, got {brief(value)}")
    return BAD


def control_character(text: str, allowed: str = "") -> str | None:
    """The first control character of `text` (see CONTROL) not in `allowed`, or None."""
    return next((m.group() for m in CONTROL.finditer(text) if m.group() not in allowed), None)


def text_problems(value: Any, allowed: str = "") -> list[str]:
    """Why `value` is not text free of control characters (but those in `allowed`)."""
    if not isinstance(value, str):
        return [f"expected text, got {brief(value)}"]
    bad = control_character(value, allowed)
    return [] if bad is None else [f"control character {bad!r} in {brief(value)}"]


def folder_name_problems(name: Any, max_length: int) -> list[str]:
    """Why `name` cannot be a folder's name, locally or in an object store (empty when it
    can): 1 to `max_length` characters within 255 UTF-8 bytes, no control characters, no
    path separator, not hidden."""
    if not isinstance(name, str) or not name:
        return [f"expected a folder name, got {brief(name)}"]
    problems = text_problems(name)
    if len(name) > max_length or len(name.encode("utf-8", "replace")) > 255:
        problems.append(f"{len(name):,} characters; a folder name has 1 to {max_length} "
                        "(and at most 255 bytes as UTF-8)")  # fmt: skip
    if "/" in name or "\\" in name or name.startswith("."):
        problems.append(f"a folder name has no '/' or '\\' and does not start with '.', "
                        f"got {brief(name)}")  # fmt: skip
    return problems


def kind_name(kind: type) -> str:
    return {tuple: "a list of integers", float: "a number", int: "an integer"}.get(
        kind, kind.__name__
    )


def integer(value, where, problems, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        problems.append(f"{where}: expected an integer >= {minimum}, got {brief(value)}")
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
