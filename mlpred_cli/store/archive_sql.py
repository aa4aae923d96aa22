"""SQL of the archive (``mlpred archive``): which days hold how many rows, one day's rows
streamed in id order, removing archived rows (batched DELETE, or DETACH and DROP of a day's
partition), restoring rows idempotently, and the ``ml_archived_days`` ledger.

``ArchiveStore`` wraps one engine so that ``mlpred_cli.history`` drives the archive without
speaking SQL. Days are UTC calendar days ``[day 00:00, next day 00:00)``. Column values are
read out as Arrow record batches of ``ARROW_SCHEMA`` and taken back in as plain Python
values: ``prediction_id`` as UUID text, times as aware UTC datetimes, the JSON payloads as
their JSON text (so a payload round-trips byte for byte on SQLite and value for value on
PostgreSQL's JSONB).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from mlpred_cli.store.driver_errors import database_errors
from mlpred_cli.store.partitions import (
    DEFAULT_PARTITION,
    PARTITION_LOCK_KEY,
    PARTITION_LOCK_TIMEOUT_S,
    TABLE,
    day_partitions,
    is_partitioned,
)
from mlpred_cli.store.prediction_queries import utc_day
from mlpred_cli.store.rollups import complete_through
from mlpred_cli.store.source import DatabaseSource, opened
from mlpred_cli.store.tables import archived_days_table, predictions_table

P = predictions_table.c
A = archived_days_table.c

#: Rows per DELETE statement (each its own transaction) when archived rows are removed.
DELETE_BATCH_ROWS = 5_000

#: Rows per INSERT batch of a restore.
RESTORE_BATCH_ROWS = 5_000


def _kind(column: sa.Column[Any]) -> str:
    """The archive's value kind of a ``ml_predictions`` column."""
    if column.name in ("features_array", "model_outputs_raw", "feature_attributions"):
        return "json"
    column_type = column.type
    if isinstance(column_type, sa.Uuid):
        return "uuid"
    if isinstance(column_type, sa.types.TypeDecorator):
        return "timestamp"
    if isinstance(column_type, sa.Boolean):
        return "bool"
    if isinstance(column_type, sa.BigInteger):
        return "int64"
    if isinstance(column_type, sa.Integer):
        return "int32"
    if isinstance(column_type, sa.Double | sa.Float):
        return "float64"
    if isinstance(column_type, sa.String):
        return "string"
    raise TypeError(f"no archive kind for column {column.name} ({column_type})")


#: Every ``ml_predictions`` column in table order with its kind: int64, int32, float64,
#: bool, string, uuid (text), timestamp (aware UTC) or json (text).
ARCHIVE_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (column.name, _kind(column)) for column in predictions_table.columns
)
_NAMES = tuple(name for name, _ in ARCHIVE_COLUMNS)

_ARROW_TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "int32": pa.int32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "uuid": pa.string(),
    "json": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}

#: The Arrow schema of archived rows (and of every archive file): one nullable field per
#: column, ``prediction_id`` and the payloads as text, times ``timestamp[us, UTC]``.
ARROW_SCHEMA = pa.schema(
    [pa.field(name, _ARROW_TYPES[kind], nullable=True) for name, kind in ARCHIVE_COLUMNS]
)

#: Moves the id sequence past ``:highest`` (never back): restored rows keep their ids.
_BUMP_SEQUENCE = sa.text(
    "SELECT setval(seq, :highest) FROM (SELECT CAST(pg_get_serial_sequence("
    "'ml_predictions', 'id') AS regclass) AS seq) AS s "
    "WHERE seq IS NOT NULL AND COALESCE(pg_sequence_last_value(seq), 0) < :highest"
)


@dataclass(frozen=True)
class DayCount:
    """Rows of one UTC day in ``ml_predictions``; ``not_final`` of them may still change."""

    day: dt.date
    rows: int
    not_final: int
    max_id: int


@dataclass(frozen=True)
class ArchivedDayRecord:
    """One row of ``ml_archived_days``: a day removed from ``ml_predictions``."""

    day: dt.date
    predictions: int
    location: str
    checksum: str
    archived_at: dt.datetime


def day_start(day: dt.date) -> dt.datetime:
    """00:00 UTC of ``day``."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _in_day(day: dt.date) -> sa.ColumnElement[bool]:
    return (P.datetime >= day_start(day)) & (P.datetime < day_start(day) + dt.timedelta(days=1))


def _not_final(final_before: dt.datetime) -> sa.ColumnElement[bool]:
    """Rows the backfill may still change: no ``actuals_filled_at`` and recent enough to be
    looked at again."""
    return P.actuals_filled_at.is_(None) & (P.datetime >= final_before)


def _select_list(dialect: str) -> str:
    """Every column in ``ARCHIVE_COLUMNS`` order; on PostgreSQL the UUID and the JSON
    payloads as text (SQLite stores them as text already)."""
    items = []
    for name, kind in ARCHIVE_COLUMNS:
        quoted = f'"{name}"'
        if dialect == "postgresql" and kind in ("uuid", "json"):
            items.append(f"CAST({quoted} AS TEXT) AS {quoted}")
        else:
            items.append(quoted)
    return ", ".join(items)


_PG_DAY_ROWS = (
    f"SELECT {_select_list('postgresql')} FROM {predictions_table.name} "
    "WHERE datetime >= %(start)s AND datetime < %(end)s ORDER BY id"
)
_SQLITE_DAY_ROWS = (
    f"SELECT {_select_list('sqlite')} FROM {predictions_table.name} "
    "WHERE datetime >= ? AND datetime < ? ORDER BY id"
)


_STAGING = "mlpred_restore_rows"
_COLUMN_LIST = ", ".join(f'"{name}"' for name in _NAMES)

#: A staging table of restored rows: the table's columns, UUID and payloads as text.
_PG_STAGING = (
    f"CREATE TEMP TABLE {_STAGING} ON COMMIT DROP AS SELECT {_select_list('postgresql')} "
    f"FROM {predictions_table.name} WITH NO DATA"
)


def _pg_restore_insert(key: list[str]) -> str:
    """Staged rows into the table, the text columns cast back, known rows skipped."""
    casts = {"uuid": "uuid", "json": "jsonb"}
    items = [
        f'CAST("{name}" AS {casts[kind]})' if kind in casts else f'"{name}"'
        for name, kind in ARCHIVE_COLUMNS
    ]
    return (
        f"INSERT INTO {predictions_table.name} ({_COLUMN_LIST}) SELECT {', '.join(items)} "
        f"FROM {_STAGING} ON CONFLICT ({', '.join(key)}) DO NOTHING"
    )


def _copy_to_staging(conn: Connection, batch: pa.RecordBatch) -> None:
    """COPY one record batch into the staging table as CSV written by Arrow (no Python
    value per cell): text quoted, nulls unquoted empty fields, times ISO with ``Z``, floats
    in their shortest exact form."""
    sink = pa.BufferOutputStream()
    options = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
    pa_csv.write_csv(batch, sink, write_options=options)
    raw = conn.connection.driver_connection
    with (
        raw.cursor() as cursor,  # type: ignore[union-attr]
        cursor.copy(f"COPY {_STAGING} ({_COLUMN_LIST}) FROM STDIN (FORMAT csv)") as copy,
    ):
        copy.write(sink.getvalue().to_pybytes())


def _sqlite_text(moment: dt.datetime) -> str:
    """A time as SQLite stores it (naive UTC text with microseconds)."""
    naive = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return naive.isoformat(sep=" ", timespec="microseconds")


def _pg_batch(rows: Sequence[tuple[Any, ...]]) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True))
    arrays = [
        pa.array(values, type=field.type)
        for values, field in zip(columns, ARROW_SCHEMA, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=ARROW_SCHEMA)


def _hyphenated(hex_text: pa.Array) -> pa.Array:
    """32-digit UUID text as the canonical 8-4-4-4-12 form (other text left as it is)."""
    parts = [pc.utf8_slice_codeunits(hex_text, a, b) for a, b in _UUID_GROUPS]
    joined = pc.binary_join_element_wise(*parts, "-")
    return pc.if_else(pc.equal(pc.utf8_length(hex_text), 32), joined, hex_text)


_UUID_GROUPS = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))


def _sqlite_batch(rows: Sequence[tuple[Any, ...]]) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True))
    arrays = []
    for values, (_, kind), field in zip(columns, ARCHIVE_COLUMNS, ARROW_SCHEMA, strict=True):
        if kind == "timestamp":
            naive = pa.array(values, type=pa.string()).cast(pa.timestamp("us"))
            arrays.append(naive.cast(field.type))  # stored naive UTC
        elif kind == "uuid":
            arrays.append(_hyphenated(pc.utf8_lower(pa.array(values, type=pa.string()))))
        elif kind == "bool":
            arrays.append(pa.array(values, type=pa.int64()).cast(pa.bool_()))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=ARROW_SCHEMA)


class ArchiveStore:
    """The archive's statements on one engine; each method is its own transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    # ------------------------------------------------------------ what there is

    def partitioned(self) -> bool:
        """True when ``ml_predictions`` is a partitioned table (PostgreSQL only)."""
        with self.engine.connect() as conn:
            return is_partitioned(conn)

    def day_counts(self, before: dt.datetime, final_before: dt.datetime) -> list[DayCount]:
        """Rows per UTC day strictly before ``before``, oldest day first, with how many are
        not final (no ``actuals_filled_at`` and ``datetime >= final_before``)."""
        day = utc_day(P.datetime).label("day")
        statement = (
            sa.select(
                day,
                sa.func.count().label("rows"),
                sa.func.coalesce(
                    sa.func.sum(sa.case((_not_final(final_before), 1), else_=0)), 0
                ).label("not_final"),
                sa.func.max(P.id).label("max_id"),
            )
            .where(P.datetime < before)
            .group_by(day)
            .order_by(day)
        )
        with self.engine.connect() as conn:
            return [
                DayCount(
                    dt.date.fromisoformat(str(row.day)),
                    int(row.rows),
                    int(row.not_final),
                    int(row.max_id),
                )
                for row in conn.execute(statement)
            ]

    def rollups_complete_through(self) -> int | None:
        """The id through which ``ml_prediction_daily`` holds every row (None: never built)."""
        with self.engine.connect() as conn:
            return complete_through(conn)

    def count_not_final(
        self, since: dt.datetime, until: dt.datetime, final_before: dt.datetime
    ) -> int:
        """Rows in ``[since, until)`` that are not final (see ``day_counts``)."""
        statement = sa.select(sa.func.count()).where(
            P.datetime >= since, P.datetime < until, _not_final(final_before)
        )
        with self.engine.connect() as conn:
            return int(conn.execute(statement).scalar_one())

    # ------------------------------------------------------------ reading a day

    def stream_day(self, day: dt.date, chunk_rows: int) -> Iterator[pa.RecordBatch]:
        """The rows of ``day`` in id order as record batches of ``ARROW_SCHEMA``, at most
        ``chunk_rows`` rows each (a server-side cursor on PostgreSQL: memory stays bounded).

        Read through the driver's own cursor, without SQLAlchemy's per-value result
        processing, and converted column by column (binary protocol on PostgreSQL; on
        SQLite the stored text of times and UUIDs is parsed by Arrow)."""
        start = day_start(day)
        end = start + dt.timedelta(days=1)
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            if self.dialect == "postgresql":
                with raw.cursor(name="mlpred_archive_day", binary=True) as cursor:  # type: ignore[union-attr]
                    cursor.itersize = chunk_rows
                    cursor.execute(_PG_DAY_ROWS, {"start": start, "end": end})
                    while rows := cursor.fetchmany(chunk_rows):
                        yield _pg_batch(rows)
                return
            cursor = raw.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(_SQLITE_DAY_ROWS, (_sqlite_text(start), _sqlite_text(end)))
                while rows := cursor.fetchmany(chunk_rows):
                    yield _sqlite_batch(rows)
            finally:
                cursor.close()

    # ------------------------------------------------------------ removing a day

    def delete_rows(self, day: dt.date, ids: Sequence[int], batch_rows: int | None = None) -> int:
        """Delete the rows of ``day`` with these ids (sorted ascending), one id range of
        ``batch_rows`` per transaction; rows of the day with other ids stay. Returns how
        many were deleted."""
        batch_rows = batch_rows or DELETE_BATCH_ROWS
        deleted = 0
        for start in range(0, len(ids), batch_rows):
            batch = list(ids[start : start + batch_rows])
            statement = sa.delete(predictions_table).where(
                _in_day(day), P.id >= batch[0], P.id <= batch[-1], self._id_in()
            )
            with self.engine.begin() as conn:
                deleted += conn.execute(statement, {"ids": batch}).rowcount
        return deleted

    def _id_in(self) -> sa.ColumnElement[bool]:
        """``id`` is one of the bound list ``ids``: one array parameter on PostgreSQL (a
        list of thousands of parameters costs more to send than the DELETE), an expanded
        ``IN`` list on SQLite."""
        if self.dialect == "postgresql":
            array = sa.bindparam("ids", type_=postgresql.ARRAY(sa.BigInteger))
            return P.id == sa.func.any(array)
        wanted: sa.BindParameter[int] = sa.bindparam("ids", expanding=True)
        return P.id.in_(wanted)

    def drop_day_partition(self, day: dt.date, ids: Sequence[int]) -> bool:
        """DETACH and DROP ``day``'s partition when every row in it has one of ``ids``, in
        one transaction under the partition-maintenance lock, so a partition holding any
        other row stays as it was. False (nothing changed) when the table is not
        partitioned, the day has no partition, a row is not in ``ids``, or the locks are not
        granted within ``PARTITION_LOCK_TIMEOUT_S`` (the caller then deletes by id)."""
        try:
            with self.engine.begin() as conn:
                return self._drop_day_partition(conn, day, ids)
        except sa.exc.OperationalError:  # lock_timeout: readers held the table too long
            return False

    def _drop_day_partition(self, conn: Connection, day: dt.date, ids: Sequence[int]) -> bool:
        if not is_partitioned(conn):
            return False
        names = [p.name for p in day_partitions(conn) if p.day == day]
        if not names:
            return False
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(PARTITION_LOCK_TIMEOUT_S)}s'")
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK_KEY})
        name = conn.dialect.identifier_preparer.quote(names[0])
        conn.exec_driver_sql(f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE")
        total = int(conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar_one())
        known = sa.text(f"SELECT count(*) FROM {name} WHERE id = ANY(:ids)").bindparams(
            sa.bindparam("ids", type_=postgresql.ARRAY(sa.BigInteger))
        )
        if int(conn.execute(known, {"ids": list(ids)}).scalar_one()) != total:
            return False  # nothing changed yet: committing only releases the locks
        conn.exec_driver_sql(f"ALTER TABLE {TABLE} DETACH PARTITION {name}")
        conn.exec_driver_sql(f"DROP TABLE {name}")
        return True

    def rows_in_default_partition(self, day: dt.date) -> int:
        """Rows of ``day`` in the default partition (0 when the table is not partitioned)."""
        with self.engine.connect() as conn:
            if not is_partitioned(conn):
                return 0
            statement = sa.text(
                f"SELECT count(*) FROM {DEFAULT_PARTITION} "
                "WHERE datetime >= :start AND datetime < :end"
            )
            start = day_start(day)
            return int(
                conn.execute(
                    statement, {"start": start, "end": start + dt.timedelta(days=1)}
                ).scalar_one()
            )

    # ------------------------------------------------------------ restoring

    def _restore_statement(self, key: list[str]) -> sa.Insert:
        """SQLite's idempotent INSERT of restored rows (payloads bound as their JSON text)."""
        values: dict[str, Any] = {}
        for name, kind in ARCHIVE_COLUMNS:
            column_type = sa.Text() if kind == "json" else P[name].type
            values[name] = sa.bindparam(name, type_=column_type)
        return (
            sqlite.insert(predictions_table)
            .values(values)
            .on_conflict_do_nothing(index_elements=key)
        )

    def restore_day(self, day: dt.date, batches: Iterator[pa.RecordBatch]) -> int:
        """Insert ``day``'s rows (record batches of ``ARROW_SCHEMA``) keeping their ids; a
        ``prediction_id`` already stored is skipped. One transaction, which also removes
        ``day`` from ``ml_archived_days``; on PostgreSQL the rows go through COPY into a
        staging table and the id sequence is moved past the largest id. Returns how many
        rows were inserted."""
        highest = 0
        count = sa.select(sa.func.count()).where(_in_day(day))
        with self.engine.begin() as conn:
            before = int(conn.execute(count).scalar_one())
            key = ["prediction_id", "datetime"] if is_partitioned(conn) else ["prediction_id"]
            if self.dialect == "postgresql":
                conn.exec_driver_sql(_PG_STAGING)
            statement = self._restore_statement(key)
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                highest = max(highest, int(pc.max(batch.column("id")).as_py()))
                if self.dialect == "postgresql":
                    _copy_to_staging(conn, batch)
                else:
                    rows = batch.to_pylist()
                    for row in rows:
                        row["prediction_id"] = uuid.UUID(row["prediction_id"])
                    conn.execute(statement, rows)
            if self.dialect == "postgresql":
                conn.exec_driver_sql(_pg_restore_insert(key))
            conn.execute(sa.delete(archived_days_table).where(A.day == day))
            if self.dialect == "postgresql" and highest:
                conn.execute(_BUMP_SEQUENCE, {"highest": highest})
            return int(conn.execute(count).scalar_one()) - before

    # ------------------------------------------------------------ the ledger

    def record_day(self, record: ArchivedDayRecord) -> None:
        """Insert or replace ``record``'s day in ``ml_archived_days``."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(archived_days_table).where(A.day == record.day))
            conn.execute(sa.insert(archived_days_table).values(vars(record)))

    def forget_day(self, day: dt.date) -> None:
        """Remove ``day`` from ``ml_archived_days`` (nothing when it is not there)."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(archived_days_table).where(A.day == day))

    def archived_days(self) -> list[ArchivedDayRecord]:
        """Every row of ``ml_archived_days``, oldest day first."""
        statement = sa.select(archived_days_table).order_by(A.day)
        with self.engine.connect() as conn:
            return [ArchivedDayRecord(**row) for row in conn.execute(statement).mappings()]


@contextmanager
def archive_store(source: DatabaseSource) -> Iterator[ArchiveStore]:
    """An ``ArchiveStore`` on ``source`` (checked to be migrated), driver errors raised as
    mlpred errors."""
    with opened(source) as engine, database_errors(engine.url):
        yield ArchiveStore(engine)


def row_dicts(rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Tuples in ``ARCHIVE_COLUMNS`` order as dicts by column name."""
    return [dict(zip(_NAMES, row, strict=True)) for row in rows]
