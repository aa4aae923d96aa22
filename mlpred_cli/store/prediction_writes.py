"""Writing built rows to the database: COPY on PostgreSQL, one executemany on SQLite.

Both paths are idempotent on ``prediction_id``: a replayed batch never duplicates rows. On a
table partitioned by day (``store/partitions.py``) the unique key is ``(prediction_id,
datetime)``; a replayed row has the same ``datetime``, so that key is the idempotency key.
``write_isolating`` writes a batch that may hold rows the database rejects: it splits the
batch until each such row is alone, dead-letters it, and writes the rest.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from mlpred_cli.errors import DatabaseUnavailable
from mlpred_cli.store.driver_errors import database_errors, describe_error, is_row_specific
from mlpred_cli.store.partitions import is_partitioned
from mlpred_cli.store.pg_copy_payload import copy_payload
from mlpred_cli.store.prediction_columns import WRITE_TYPES, PredictionColumns
from mlpred_cli.store.prediction_row import DATETIME_COLUMNS, JSON_COLUMNS, WRITE_COLUMNS, Row
from mlpred_cli.store.sqlite_parameters import sqlite_parameters

_COLUMN_LIST = ", ".join(f'"{name}"' for name in WRITE_COLUMNS)
_STAGING = "mlpred_staging_predictions"

_PG_COPY_TYPES = list(WRITE_TYPES)
_JSON_POSITIONS = [i for i, name in enumerate(WRITE_COLUMNS) if name in JSON_COLUMNS]
_DATETIME_POSITIONS = [i for i, name in enumerate(WRITE_COLUMNS) if name in DATETIME_COLUMNS]
_UUID_POSITION = WRITE_COLUMNS.index("prediction_id")
_BOOL_POSITION = WRITE_COLUMNS.index("is_duplicate")

#: ON CONFLICT target of each layout: a partitioned table's unique keys include ``datetime``.
_CONFLICT_TARGETS = {False: "(prediction_id)", True: "(prediction_id, datetime)"}
#: Each engine's layout (partitioned or not), looked up the first time a replay needs it.
_LAYOUTS: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


def write_rows(engine: Engine, rows: Sequence[Row]) -> int:
    """Insert rows in one transaction, skipping ``prediction_id``s already stored.

    ``rows`` is a ``PredictionColumns`` batch (encoded column-wise: the writer's path) or any
    sequence of row tuples (legacy spool files, dead letters).

    Returns the number of rows handed to the database. When the transaction fails nothing
    of the batch is committed and the driver's error is raised as the mlpred error it means:
    ``RowRejected`` (some row's data), ``DatabaseUnavailable`` (connection), ``DatabaseError``.
    """
    if not rows:
        return 0
    with database_errors(engine.url):
        if engine.dialect.name == "postgresql":
            return _write_postgresql(engine, rows)
        return _write_sqlite(engine, rows)


def _driver_connection(conn: Connection) -> Any:
    """The driver's own connection behind ``conn`` (for COPY and executemany)."""
    raw = conn.connection.driver_connection
    if raw is None:  # only for a connection already invalidated
        where = conn.engine.url.render_as_string(hide_password=True)
        raise DatabaseUnavailable(f"lost connection to {where}: connection invalidated")
    return raw


def _pg_values(rows: Sequence[Row]) -> Sequence[Row]:
    if isinstance(rows, PredictionColumns):
        return rows
    if not _JSON_POSITIONS or all(row[i] is None for row in rows for i in _JSON_POSITIONS):
        return list(rows)
    wrapped = []
    for row in rows:
        values = list(row)
        for position in _JSON_POSITIONS:
            if values[position] is not None:
                values[position] = Jsonb(values[position])
        wrapped.append(tuple(values))
    return wrapped


def _copy(conn: Connection, table: str, rows: Sequence[Row]) -> None:
    raw = _driver_connection(conn)
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {table} ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        if isinstance(rows, PredictionColumns):
            copy.write(copy_payload(rows))
            return
        copy.set_types(_PG_COPY_TYPES)
        for row in rows:
            copy.write_row(row)


def _write_postgresql(engine: Engine, rows: Sequence[Row]) -> int:
    values = _pg_values(rows)
    try:
        with engine.begin() as conn:
            _copy(conn, "ml_predictions", values)
        return len(values)
    except pg_errors.UniqueViolation:
        pass
    # Some rows are already stored (a replayed batch): go through a staging table.
    for refresh in (False, True):
        try:
            _insert_new_rows(engine, values, refresh=refresh)
            return len(values)
        except sa_exc.ProgrammingError as error:
            # The cached layout is stale (the table was partitioned since): look it up again.
            if refresh or not isinstance(error.orig, pg_errors.InvalidColumnReference):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _conflict_target(engine: Engine, conn: Connection, *, refresh: bool) -> str:
    partitioned = None if refresh else _LAYOUTS.get(engine)
    if partitioned is None:
        partitioned = _LAYOUTS[engine] = is_partitioned(conn)
    return _CONFLICT_TARGETS[partitioned]


def _insert_new_rows(engine: Engine, values: Sequence[Row], *, refresh: bool) -> None:
    """Insert the rows whose unique key is not stored yet, through a staging table."""
    with engine.begin() as conn:
        target = _conflict_target(engine, conn, refresh=refresh)
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} "
            "(LIKE ml_predictions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        _copy(conn, _STAGING, values)
        conn.exec_driver_sql(
            f"INSERT INTO ml_predictions ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM {_STAGING} "
            f"ON CONFLICT {target} DO NOTHING"
        )


def _sqlite_datetime(value: datetime | None) -> str | None:
    """The text SQLAlchemy's SQLite DateTime stores: naive UTC with microseconds."""
    if value is None:
        return None
    naive = value.astimezone(UTC).replace(tzinfo=None)
    return naive.isoformat(sep=" ", timespec="microseconds")  # zero-padded, unlike strftime


def _sqlite_values(rows: Sequence[Row]) -> Sequence[Sequence[Any]]:
    if isinstance(rows, PredictionColumns):
        return sqlite_parameters(rows)
    converted = []
    texts: dict[datetime, str | None] = {}  # created_at/updated_at repeat across a batch
    for row in rows:
        values = list(row)
        values[_UUID_POSITION] = values[_UUID_POSITION].hex
        values[_BOOL_POSITION] = int(values[_BOOL_POSITION])
        for position in _DATETIME_POSITIONS:
            moment = values[position]
            if moment is not None:
                text = texts.get(moment)
                if text is None:
                    text = texts[moment] = _sqlite_datetime(moment)
                values[position] = text
        for position in _JSON_POSITIONS:
            if values[position] is not None:
                values[position] = json.dumps(values[position])
        converted.append(values)
    return converted


_SQLITE_INSERT = (
    f"INSERT INTO ml_predictions ({_COLUMN_LIST}) "
    f"VALUES ({', '.join('?' for _ in WRITE_COLUMNS)}) "
    "ON CONFLICT (prediction_id) DO NOTHING"
)


def _write_sqlite(engine: Engine, rows: Sequence[Row]) -> int:
    values = _sqlite_values(rows)
    with engine.begin() as conn:
        cursor = _driver_connection(conn).cursor()
        try:
            cursor.executemany(_SQLITE_INSERT, values)
        finally:
            cursor.close()
    return len(values)


@dataclass(frozen=True)
class UndeliveredRow:
    """A row the database rejected whose ``dead_letter`` call raised: the caller still holds
    the only copy."""

    row: Row
    reason: str
    error: Exception


@dataclass(frozen=True)
class IsolatedWrite:
    """What ``write_isolating`` did with a batch: every row is in exactly one of ``written``,
    ``dead_lettered`` or ``undelivered``."""

    written: int
    """Rows committed (or already stored under their ``prediction_id``)."""
    dead_lettered: int
    """Rows the database rejected that ``dead_letter`` took."""
    undelivered: tuple[UndeliveredRow, ...] = ()
    """Rows the database rejected that ``dead_letter`` failed to take, in batch order."""

    @property
    def rejected(self) -> int:
        """Rows the database rejected, dead-lettered or not."""
        return self.dead_lettered + len(self.undelivered)


@dataclass
class _Tally:
    written: int = 0
    dead_lettered: int = 0
    undelivered: list[UndeliveredRow] = field(default_factory=list)


def write_isolating(
    engine: Engine, rows: Sequence[Row], dead_letter: Callable[[Row, str], None]
) -> IsolatedWrite:
    """Write rows; when the database rejects some (``is_row_specific``), split the batch until
    each culprit is alone and hand it to ``dead_letter`` with the reason (the first line of
    the database's message). Every other row is written, each half in its own transaction.

    ``dead_letter`` must not raise. If it does anyway (an ``OSError``: the disk is full, say)
    the row is reported in ``IsolatedWrite.undelivered`` with the error, and the remaining
    rows are still written and isolated: a failure to dead-letter never fails the batch, so
    it never makes the caller retry rows already written.

    A batch-level failure (``DatabaseUnavailable``, a ``DatabaseError`` not about a row:
    a lost connection, a statement timeout, a missing table) is raised for the caller to
    retry the batch. Halves written and rows dead-lettered before it stay so; retrying the
    whole batch is safe (the write is idempotent), though a row rejected again is handed to
    ``dead_letter`` again.
    """
    tally = _Tally()
    _write_or_split(engine, rows, dead_letter, tally)
    return IsolatedWrite(tally.written, tally.dead_lettered, tuple(tally.undelivered))


def _write_or_split(
    engine: Engine, rows: Sequence[Row], dead_letter: Callable[[Row, str], None], tally: _Tally
) -> None:
    if not rows:
        return
    try:
        tally.written += write_rows(engine, rows)
        return
    except Exception as error:
        if not is_row_specific(error):
            raise
        reason = describe_error(error)
    if len(rows) == 1:
        try:
            dead_letter(rows[0], reason)
        except Exception as failure:  # the callback's bug or I/O must not cost other rows
            tally.undelivered.append(UndeliveredRow(rows[0], reason, failure))
        else:
            tally.dead_lettered += 1
        return
    middle = len(rows) // 2
    _write_or_split(engine, rows[:middle], dead_letter, tally)
    _write_or_split(engine, rows[middle:], dead_letter, tally)
