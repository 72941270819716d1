"""Exceptions raised where bad input enters; the CLI turns them into one line and exit 2."""

import reprlib


class PlasticityError(Exception):
    """Base class of the project's user-facing errors."""


class ConfigError(PlasticityError, ValueError):
    """A configuration value is unknown or out of range."""


class DataError(PlasticityError, ValueError):
    """A data source is missing or malformed."""


class TrainingDiverged(PlasticityError, RuntimeError):
    """A task's training loss broke a bound of `plasticity_core.divergence`."""


def _short_repr() -> reprlib.Repr:
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxtuple, short.maxdict = 3, 8, 8, 8
    return short


_SHORT = _short_repr()


def clip(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, cut with '...'."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def brief(value: object, limit: int = 80) -> str:
    """`repr(value)` in at most `limit` characters, cut with '...': a message names the bad
    value without echoing a huge one (a 1 MiB string, an expanded YAML alias) to the
    terminal. Containers are cut while being written, so a huge one costs O(limit)."""
    return clip(repr(value[:limit]) if isinstance(value, str) else _SHORT.repr(value), limit)
