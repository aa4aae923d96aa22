"""What a driver error means: a row the database rejects, or a database that is away."""

from __future__ import annotations

import sqlite3

import psycopg
import sqlalchemy as sa

_ROW_ERRORS = (
    psycopg.IntegrityError,
    psycopg.DataError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
    TypeError,
    ValueError,
    OverflowError,
)


def describe_error(error: BaseException) -> str:
    """The first line of a (driver) error message."""
    original = error.orig if isinstance(error, sa.exc.DBAPIError) else error
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


def is_row_specific(error: BaseException) -> bool:
    """True when the failure is caused by the data of some row (constraint, bad value,
    a trigger's RAISE), so isolating the row helps; False for connection-level failures
    (lost connection, server restarting, database locked), which are retried.
    """
    original = error.orig if isinstance(error, sa.exc.DBAPIError) else error
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return False
    if isinstance(original, _ROW_ERRORS):
        return True
    sqlstate = getattr(original, "sqlstate", None) or ""
    return sqlstate.startswith(("22", "23", "P0"))
