"""What a driver error means, decided in one place: the table from SQLAlchemy / psycopg /
sqlite3 errors to mlpred's own (``mlpred_cli.errors``), and ``database_errors``, the context
manager that applies it.

==========================================================  ========================
driver error                                                mlpred error
==========================================================  ========================
``OperationalError`` (SQLAlchemy, psycopg, sqlite3),        ``DatabaseUnavailable``
SQLAlchemy's pool ``TimeoutError``                          ("cannot connect to ...")
a ``DBAPIError`` whose connection was invalidated           ``DatabaseUnavailable``
                                                            ("lost connection to ...")
``IntegrityError`` / ``DataError``, SQLSTATE class 22,      ``RowRejected``
23 or P0 (a bad value, a constraint, a trigger's RAISE)
any other ``DBAPIError`` / ``psycopg.Error`` /              ``DatabaseError``
``sqlite3.Error``
==========================================================  ========================

Messages carry the first line of the driver's message, with any password masked.
Anything else (a bug, an ``MlpredError``) passes through unchanged.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import URL

from mlpred_cli.errors import DatabaseError, DatabaseUnavailable, MlpredError, RowRejected

#: Errors raised by a driver or by SQLAlchemy on its behalf (the COPY and executemany fast
#: paths raise the drivers' own errors, unwrapped).
_DRIVER_ERRORS = (sa.exc.DBAPIError, psycopg.Error, sqlite3.Error)
_CONNECT_ERRORS = (
    sa.exc.OperationalError,
    psycopg.OperationalError,
    sqlite3.OperationalError,
    sa.exc.TimeoutError,
)
_ROW_ERRORS = (
    psycopg.IntegrityError,
    psycopg.DataError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
    TypeError,
    ValueError,
    OverflowError,
)
_ROW_SQLSTATE_CLASSES = ("22", "23", "P0")
_URL_PASSWORD = re.compile(r"(\b[\w+.-]+://[^:/@\s]*:)[^@\s]+@")
_CONNINFO_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def _original(error: BaseException) -> BaseException:
    """The driver's own error behind a SQLAlchemy wrapper (or the error itself)."""
    if isinstance(error, sa.exc.StatementError) and error.orig is not None:
        return error.orig
    return error


def describe_error(error: BaseException) -> str:
    """The first line of a (driver) error message, without SQLAlchemy's boilerplate; for an
    error already translated, its ``reason``."""
    if isinstance(error, DatabaseError | DatabaseUnavailable):
        return error.reason
    original = _original(error)
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


def _row_data_at_fault(original: BaseException | None) -> bool:
    if isinstance(original, _ROW_ERRORS):
        return True
    sqlstate = getattr(original, "sqlstate", None) or ""
    return sqlstate.startswith(_ROW_SQLSTATE_CLASSES)


def is_row_specific(error: BaseException) -> bool:
    """True when the failure is caused by the data of some row (constraint, bad value,
    a trigger's RAISE), so isolating the row helps; False for connection-level failures
    (lost connection, server restarting, database locked), which are retried.

    Accepts raw driver errors and translated ones (``RowRejected`` is row-specific, any other
    ``DatabaseError`` or ``DatabaseUnavailable`` is not).
    """
    if isinstance(error, RowRejected):
        return True
    if isinstance(error, DatabaseError | DatabaseUnavailable):
        return False
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return False
    original = error.orig if isinstance(error, sa.exc.DBAPIError) else error
    return _row_data_at_fault(original)


def _refused_connection(error: BaseException) -> bool:
    return isinstance(error, _CONNECT_ERRORS)


def _lost_connection(error: BaseException) -> bool:
    return isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated


def _rejected_row(error: BaseException) -> bool:
    return isinstance(error, _DRIVER_ERRORS) and _row_data_at_fault(_original(error))


def _refused_statement(error: BaseException) -> bool:
    return isinstance(error, _DRIVER_ERRORS)


#: Driver error -> mlpred error and its message; the first matching line wins.
TRANSLATIONS: tuple[
    tuple[Callable[[BaseException], bool], type[DatabaseUnavailable | DatabaseError], str], ...
] = (
    (_refused_connection, DatabaseUnavailable, "cannot connect to {url}: {reason}"),
    (_lost_connection, DatabaseUnavailable, "lost connection to {url}: {reason}"),
    (_rejected_row, RowRejected, "database error: {reason}"),
    (_refused_statement, DatabaseError, "database error: {reason}"),
)


def mask_passwords(text: str) -> str:
    """``text`` with the password of any URL (``scheme://user:***@host``) or conninfo
    (``password=***``) written in it masked."""
    return _CONNINFO_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def translate(error: BaseException, url: URL | None = None) -> MlpredError | None:
    """The mlpred error a driver error means (see the module's table), or None when
    ``error`` is not a driver error. ``url`` names the database in the message (masked)."""
    for matches, kind, template in TRANSLATIONS:
        if matches(error):
            reason = mask_passwords(describe_error(error))
            where = "the database" if url is None else url.render_as_string(hide_password=True)
            return kind(template.format(url=where, reason=reason), reason)
    return None


@contextmanager
def database_errors(url: URL | None = None) -> Iterator[None]:
    """Raise driver errors escaping the block as the mlpred error they mean (the table
    above), naming the masked ``url``; everything else passes through unchanged."""
    try:
        yield
    except Exception as error:
        translated = translate(error, url)
        if translated is None:
            raise
        raise translated from None
