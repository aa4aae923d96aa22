"""The exceptions mlpred raises, grouped by meaning so callers catch by intent, not by driver.

Every exception the library raises on purpose is one of these::

    MlpredError                  base; ``exit_code`` is what the CLI exits with
     ├── ConfigError             unusable configuration (a malformed database URL, say)
     ├── InputError              data or options mlpred cannot accept (also a ValueError)
     ├── LoggerClosed            a prediction or snapshot handed to a closed logger
     ├── NotEnoughData           too few rows to compute what was asked
     ├── SchemaNotReady          the database is not migrated to the current schema
     ├── DatabaseUnavailable     the database cannot be reached, or the connection was lost
     └── DatabaseError           the database refused a statement
          └── RowRejected        ... because of the data of a row (constraint, bad value,
                                 a trigger's RAISE): retrying the same row will not help

Driver errors (SQLAlchemy, psycopg, sqlite3) become ``DatabaseUnavailable`` or
``DatabaseError`` in one place, ``mlpred_cli.store.driver_errors``.
"""

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


class LoggerClosed(MlpredError):
    """A prediction or snapshot was handed to a logger that has been closed."""

    exit_code = 1


class NotEnoughData(MlpredError):
    """Too few rows (with features and a realized outcome, say) to compute what was asked."""

    exit_code = 1


class SchemaNotReady(MlpredError):
    """The database exists but has not been migrated to the current schema."""

    exit_code = 1


class DatabaseUnavailable(MlpredError):
    """The database could not be reached, refused the connection, or the connection was lost.

    ``reason`` is the first line of the driver's message (password masked).
    """

    exit_code = 1

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = message if reason is None else reason


class DatabaseError(MlpredError):
    """The database refused a statement (not a connection problem).

    ``reason`` is the first line of the driver's message (password masked).
    """

    exit_code = 1

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = message if reason is None else reason


class RowRejected(DatabaseError):
    """The database refused the data of some row: a constraint, a bad value, a trigger.

    Isolating the row helps; retrying it unchanged does not.
    """
