"""Command-line options generated from a config dataclass, so an option cannot drift from
its field: the name (`--batch-size` for `batch_size`), the type, the help text (the
field's docstring), the default and the choices all come from the field, grouped as the
field says (experiment / model / optimizer / method)."""

from __future__ import annotations

import argparse
import math
from typing import Any

from plasticity_core.fields import GROUPS, FieldInfo, describe


class UsageError(Exception):
    """Bad command-line input: one line, exit 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and defaults shown in --help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # one line instead of usage + message
        raise UsageError(f"{self.prog}: {message}")


def ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}; expected comma-separated integers like 0,5,10"
        ) from None


def names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None


PARSERS = {int: integer, float: finite, str: str, tuple: ints}


def add_config_options(
    parser: argparse.ArgumentParser, cls: type, skip: frozenset[str] = frozenset()
) -> None:
    """One option per field of `cls` (except `skip`), in argument groups. Unset options
    stay out of the parsed namespace: the dataclass applies its own defaults."""
    infos = [i for i in describe(cls) if i.name not in skip]
    for group in GROUPS:
        members = [i for i in infos if i.group == group]
        if members:
            section = parser.add_argument_group(f"{group} options")
            for info in members:
                _add(section, info)


def _add(section, info: FieldInfo) -> None:
    flag = "--" + info.name.replace("_", "-")
    common: dict[str, Any] = {"dest": info.name, "default": argparse.SUPPRESS,
                              "help": _help(info)}  # fmt: skip
    if info.kind is bool:
        section.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        return
    if info.choices is not None:
        common["choices"] = info.choices
        common["metavar"] = "{" + ",".join(info.choices) + "}"
    parse = PARSERS[info.kind]
    if info.kind is tuple and info.default and isinstance(info.default[0], str):
        parse = names
    section.add_argument(flag, type=parse, **common)


def _help(info: FieldInfo) -> str:
    default = info.default
    if isinstance(default, tuple):
        default = ",".join(map(str, default))
    if info.name == "utility":
        shown = "the method's"
    elif default is None or default == "":
        shown = "unset" if default is None else "''"
    else:
        shown = default
    text = info.doc.replace("%", "%%")
    return f"{text} (default: {shown})" if text else f"(default: {shown})"


def given_options(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of `cls` set on the command line."""
    fields = {i.name for i in describe(cls)}
    return {k: v for k, v in vars(args).items() if k in fields}
