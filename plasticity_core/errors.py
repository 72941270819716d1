"""Exceptions raised where bad input enters; the CLI turns them into one line and exit 2."""


class PlasticityError(Exception):
    """Base class of the project's user-facing errors."""


class ConfigError(PlasticityError, ValueError):
    """A configuration value is unknown or out of range."""


class DataError(PlasticityError, ValueError):
    """A data source is missing or malformed."""


class TrainingDiverged(PlasticityError, RuntimeError):
    """Training produced a non-finite loss."""
