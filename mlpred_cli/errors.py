"""The exceptions mlpred raises, grouped by meaning so callers catch by intent, not by driver."""

from __future__ import annotations


class MlpredError(Exception):
    """Base class of every error mlpred raises on purpose."""

    exit_code = 1


class ConfigError(MlpredError):
    """The configuration is unusable (for example a malformed database URL)."""

    exit_code = 2


class InputError(MlpredError, ValueError):
    """The caller handed in data or options mlpred cannot accept."""

    exit_code = 2


class DatabaseUnavailable(MlpredError):
    """The database could not be reached or refused the connection."""

    exit_code = 1


class SchemaNotReady(MlpredError):
    """The database exists but has not been migrated to the current schema."""

    exit_code = 1


class NotEnoughData(MlpredError):
    """Too few rows (with features and a realized outcome, say) to compute what was asked."""

    exit_code = 1
