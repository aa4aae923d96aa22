"""What a driver error means, decided in one place: whether a failure is about some row's
data (``is_row_specific``), the table from SQLAlchemy / psycopg / sqlite3 errors to mlpred's
own (``mlpred_cli.errors``), and ``database_errors``, the context manager that applies it.

Row-specific or batch-level
---------------------------
A batch is written in one transaction. When it fails the writer either retries it later
(*batch-level*: the connection, the server or the schema is at fault, and every row would
fail the same way now) or splits it until each row at fault is alone and dead-letters that
row with its error (*row-specific*). Only the failures listed as batch-level below are
retried; **every other failure of the database is row-specific**, so a rejection nobody
foresaw (a trigger's own SQLSTATE, say) is dead-lettered instead of retried forever.

PostgreSQL: batch-level SQLSTATEs (``BATCH_LEVEL_SQLSTATES``; a class or one condition)

========  ========================================================================
SQLSTATE  what it means
========  ========================================================================
08        connection exception
28        invalid authorization specification (role, password)
40        transaction rollback: serialization failure, deadlock
53        insufficient resources: disk full, out of memory, too many connections
57        operator intervention: admin / crash shutdown, cannot connect now, query
          canceled (57014: a statement timeout is retried, not dead-lettered)
58        system error (I/O outside PostgreSQL)
XX        internal error
25006     read-only SQL transaction (a standby, or a primary demoted by a failover)
55P03     lock not available (lock_timeout)
3D000     invalid catalog name (the database does not exist)
3F000     invalid schema name
42P01     undefined table
42703     undefined column
42883     undefined function
========  ========================================================================

Any other SQLSTATE is row-specific: 22 (a bad value), 23 (a constraint), P0 (a trigger's
``RAISE``), 42501 (insufficient privilege, which a trigger may raise for some rows; a role
that lacks INSERT altogether therefore dead-letters every row, visibly, rather than retrying
forever), the rest of 42, 2F, 39, 54000 (an index row too large), ... -- even when psycopg
files it under ``OperationalError``. A psycopg error without a SQLSTATE is a client-side
failure: batch-level (refused, closed socket), except ``DataError`` / ``IntegrityError``
(a value psycopg cannot send, such as a NUL in text), which is row-specific.

SQLite: ``IntegrityError`` (a constraint, a CHECK, "datatype mismatch", a STRICT column,
a trigger's ``RAISE(ABORT|FAIL|ROLLBACK, ...)``) and ``DataError`` are row-specific. An
``OperationalError`` is batch-level when its result code is anything but ``SQLITE_ERROR``
("database is locked", "disk I/O error", "unable to open database file", "attempt to write
a readonly database", "database or disk is full", ...) or its message says the schema or
the transaction is at fault (``_SQLITE_DATABASE_MESSAGES``: "no such table", "no such
column", "has no column named", "no such function", ...); any other ``SQLITE_ERROR`` comes
from evaluating a row ("malformed JSON", "integer overflow" in a trigger) and is
row-specific. So is a ``ProgrammingError`` binding a parameter.

Anywhere: a connection SQLAlchemy invalidated and the pool's ``TimeoutError`` are
batch-level; ``TypeError`` / ``ValueError`` / ``OverflowError`` (a value the driver cannot
convert) are row-specific; anything else is not row-specific.

Translation
-----------

==========================================================  ========================
driver error                                                mlpred error
==========================================================  ========================
a row-specific driver error (above)                         ``RowRejected``
                                                            ("database error: ...")
SQLite's SQLITE_READONLY, PostgreSQL's 25006                ``DatabaseUnavailable``
                                                            ("database is read-only: ...")
``OperationalError`` (SQLAlchemy, psycopg, sqlite3),        ``DatabaseUnavailable``
SQLAlchemy's pool ``TimeoutError``                          ("cannot connect to ...")
a ``DBAPIError`` whose connection was invalidated           ``DatabaseUnavailable``
                                                            ("lost connection to ...")
any other ``DBAPIError`` / ``psycopg.Error`` /              ``DatabaseError``
``sqlite3.Error``                                           ("database error: ...")
==========================================================  ========================

The first matching line wins, so ``RowRejected`` means row-specific and nothing else does.
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
#: Python-level errors of converting a row's value for the driver.
_VALUE_ERRORS = (TypeError, ValueError, OverflowError)

#: PostgreSQL SQLSTATEs that fail a whole batch (retried, never dead-lettered): a class (two
#: characters) or one condition (five). Every other SQLSTATE is about a row. The module
#: docstring shows the same table.
BATCH_LEVEL_SQLSTATES: dict[str, str] = {
    "08": "connection exception",
    "28": "invalid authorization specification",
    "40": "transaction rollback: serialization failure, deadlock",
    "53": "insufficient resources: disk full, out of memory, too many connections",
    "57": "operator intervention: shutdown, cannot connect now, query canceled (timeout)",
    "58": "system error",
    "XX": "internal error",
    "25006": "read-only SQL transaction",
    "55P03": "lock not available",
    "3D000": "invalid catalog name",
    "3F000": "invalid schema name",
    "42P01": "undefined table",
    "42703": "undefined column",
    "42883": "undefined function",
}
_BATCH_LEVEL_PREFIXES = tuple(BATCH_LEVEL_SQLSTATES)

#: sqlite3's primary result code of an SQL error met while running a statement (the only
#: code under which an ``OperationalError`` can be about a row).
_SQLITE_ERROR = 1
#: Messages of a sqlite3 ``OperationalError`` about the database, its schema or the
#: transaction, not a row (lower case; also what tells errors without a result code apart).
_SQLITE_DATABASE_MESSAGES = (
    "database is locked",
    "database table is locked",
    "database schema is locked",
    "disk i/o error",
    "unable to open",
    "readonly database",
    "database or disk is full",
    "disk image is malformed",
    "file is not a database",
    "database schema has changed",
    "not authorized",
    "interrupted",
    "out of memory",
    "no such table",
    "no such column",
    "has no column named",
    "no such function",
    "unknown database",
    "within a transaction",
    "no transaction is active",
)
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


def _pg_row_at_fault(error: psycopg.Error) -> bool:
    sqlstate = error.sqlstate
    if not sqlstate:  # raised by psycopg itself, before or after talking to the server
        return isinstance(error, psycopg.DataError | psycopg.IntegrityError)
    return not sqlstate.startswith(_BATCH_LEVEL_PREFIXES)


def _sqlite_row_at_fault(error: sqlite3.Error) -> bool:
    if isinstance(error, sqlite3.IntegrityError | sqlite3.DataError):
        return True
    message = str(error).lower()
    if isinstance(error, sqlite3.OperationalError):
        code = getattr(error, "sqlite_errorcode", _SQLITE_ERROR)
        if code & 0xFF != _SQLITE_ERROR:  # busy, locked, I/O, read-only, full, ...
            return False
        return not any(fragment in message for fragment in _SQLITE_DATABASE_MESSAGES)
    return isinstance(error, sqlite3.ProgrammingError | sqlite3.InterfaceError) and (
        message.startswith("error binding parameter")
    )


def _row_at_fault(original: BaseException) -> bool:
    """The module's table for a driver's own error (or a Python error met converting a
    value)."""
    if isinstance(original, psycopg.Error):
        return _pg_row_at_fault(original)
    if isinstance(original, sqlite3.Error):
        return _sqlite_row_at_fault(original)
    return isinstance(original, _VALUE_ERRORS)


def is_row_specific(error: BaseException) -> bool:
    """True when the failure is caused by the data of some row, so isolating and
    dead-lettering the row is right; False for a batch-level failure (connection, server
    availability, a transient conflict, the schema), which is retried. The module's table
    decides: on PostgreSQL every SQLSTATE not in ``BATCH_LEVEL_SQLSTATES`` is row-specific.

    Accepts raw driver errors, SQLAlchemy's wrappers and translated errors (``RowRejected``
    is row-specific, any other ``DatabaseError`` or ``DatabaseUnavailable`` is not).
    """
    if isinstance(error, RowRejected):
        return True
    if isinstance(error, DatabaseError | DatabaseUnavailable):
        return False
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return False
    return _row_at_fault(_original(error))


#: sqlite3's primary result code SQLITE_READONLY (a read-only file or directory, ``mode=ro``,
#: ``PRAGMA query_only``) and PostgreSQL's read-only transaction (a standby,
#: ``default_transaction_read_only``).
_SQLITE_READONLY = 8
_PG_READ_ONLY_SQLSTATE = "25006"


def _read_only_database(error: BaseException) -> bool:
    original = _original(error)
    if isinstance(original, sqlite3.Error):
        code = getattr(original, "sqlite_errorcode", None)
        if code is not None:
            return int(code) & 0xFF == _SQLITE_READONLY
        return "readonly database" in str(original).lower()
    return isinstance(original, psycopg.Error) and original.sqlstate == _PG_READ_ONLY_SQLSTATE


def _refused_connection(error: BaseException) -> bool:
    return isinstance(error, _CONNECT_ERRORS)


def _lost_connection(error: BaseException) -> bool:
    return isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated


def _rejected_row(error: BaseException) -> bool:
    return isinstance(error, _DRIVER_ERRORS) and is_row_specific(error)


def _refused_statement(error: BaseException) -> bool:
    return isinstance(error, _DRIVER_ERRORS)


#: Driver error -> mlpred error and its message; the first matching line wins, so a
#: row-specific error is ``RowRejected`` whatever its driver class (psycopg files a trigger's
#: 2F or 39 SQLSTATE under ``OperationalError``), and nothing else is.
TRANSLATIONS: tuple[
    tuple[Callable[[BaseException], bool], type[DatabaseUnavailable | DatabaseError], str], ...
] = (
    (_rejected_row, RowRejected, "database error: {reason}"),
    (_read_only_database, DatabaseUnavailable, "database is read-only: {url} ({reason})"),
    (_refused_connection, DatabaseUnavailable, "cannot connect to {url}: {reason}"),
    (_lost_connection, DatabaseUnavailable, "lost connection to {url}: {reason}"),
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
            from mlpred_cli.store.database import mask_url  # database imports this module

            reason = mask_passwords(describe_error(error))
            where = "the database" if url is None else mask_url(url)
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
