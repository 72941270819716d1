"""What a config dataclass tells the layers above it about each field.

A config is a frozen dataclass and is the single source of truth: the command line and the
spec schema are generated from its fields (the habit of CleanRL's `Args`). Each field's
help text is the string literal written under it (an attribute docstring); `option()`
adds the field's group (how `--help` lists it) and its allowed values:

    activation: str = option("relu", group="model", choices=ACTIVATIONS.names)
    \"\"\"The hidden layers' nonlinearity.\"\"\"

A field added after results were recorded is marked `added_later`: while it holds its
default it stays out of the configuration's hash (`later_defaults`), so those results keep
their trial ids (`<config_hash>-s<seed>`) and a longer run of them continues their curve.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from plasticity_core.errors import ConfigError

GROUPS = ("experiment", "model", "optimizer", "method")
"""Option groups, in the order `--help` lists them."""

Choices = Sequence[str] | Callable[[], Sequence[str]] | None


def option(
    default: Any, *, group: str = "experiment", choices: Choices = None, added_later: bool = False
) -> Any:
    """A dataclass field with a group and, optionally, its allowed values (a list, or a
    callable such as a registry's `names`, looked up when asked). `added_later`: the field
    came after results were recorded (see the module docstring); a subclass that gives it
    another default marks it again."""
    if group not in GROUPS:
        raise ValueError(f"unknown option group {group!r}; known: {GROUPS}")
    metadata = {"group": group, "choices": choices, "added_later": added_later}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    name: str
    kind: type
    """The Python type of the default: int, float, str, bool or tuple; for a None default
    (an optional value) the type its annotation names."""
    default: Any
    doc: str
    group: str
    choices: tuple[str, ...] | None


def describe(cls: type) -> list[FieldInfo]:
    """Every field of a config dataclass with its type, default, help, group, choices."""
    docs = field_docs(cls)
    infos = []
    for f in dataclasses.fields(cls):
        choices = f.metadata.get("choices")
        if callable(choices):
            choices = choices()
        infos.append(
            FieldInfo(
                name=f.name,
                kind=_kind(f),
                default=f.default,
                doc=docs.get(f.name, ""),
                group=f.metadata.get("group", "experiment"),
                choices=tuple(choices) if choices is not None else None,
            )
        )
    return infos


def _kind(f: dataclasses.Field) -> type:
    if f.default is not None:
        return type(f.default)
    annotation = str(f.type)
    return next((t for t in (int, float, str) if t.__name__ in annotation), str)


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Field -> the string literal under it, from the class and its dataclass bases (a
    subclass's text wins, as its default does)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, after in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


def later_defaults(config: Any) -> tuple[str, ...]:
    """The `added_later` fields of `config` that hold their class's default: a configuration
    leaving them there is the one recorded before they existed, so its hash leaves them out."""
    return tuple(
        f.name
        for f in dataclasses.fields(config)
        if f.metadata.get("added_later") and getattr(config, f.name) == f.default
    )


def check_choices(config: Any) -> None:
    """Every field with choices holds one of them; every float is finite."""
    for info in describe(type(config)):
        value = getattr(config, info.name)
        if info.choices is not None and value not in info.choices:
            raise ConfigError(
                f"unknown {info.name} {value!r}; choose from: {', '.join(info.choices)}"
            )
        if info.kind is float and not math.isfinite(value):
            raise ConfigError(f"{info.name} must be a finite number, got {value}")


__all__ = [
    "GROUPS",
    "FieldInfo",
    "check_choices",
    "describe",
    "field_docs",
    "later_defaults",
    "option",
]
