"""Daily range partitions of ``ml_predictions`` on PostgreSQL (SQLite keeps one table).

The partitioned layout: ``ml_predictions`` partitioned by ``RANGE (datetime)``, one partition
per UTC day named ``ml_predictions_pYYYYMMDD`` holding ``[day 00:00 UTC, next day 00:00 UTC)``,
and a ``DEFAULT`` partition ``ml_predictions_default`` that catches a row for a day without a
partition so it still lands. The partition key is part of every unique constraint: primary
key ``(id, datetime)``, unique ``(prediction_id, datetime)``.

mlpred makes the partitions itself with plain DDL (``pg_partman`` is not used, so it is not
needed). A new day's partition is created as a table, filled with the rows of that day the
default partition holds, and attached (``ATTACH PARTITION``, not ``CREATE TABLE ...
PARTITION OF``, which would lock out readers too). While partitions are created, writers to
the parent wait (readers do not), so no insert can route a row to the default partition for
a day that is being attached; with nothing to do, upkeep takes no lock at all. Maintenance
runs one at a time per database (an advisory lock) and waits at most
``PARTITION_LOCK_TIMEOUT_S`` for any lock, so it never queues behind a long query for long.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from dataclasses import dataclass

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateIndex

from mlpred_cli.config import PARTITION_DAYS_AHEAD
from mlpred_cli.errors import DatabaseUnavailable, InputError
from mlpred_cli.store.database import is_sqlite
from mlpred_cli.store.driver_errors import database_errors
from mlpred_cli.store.tables import predictions_table

log = logging.getLogger("mlpred.partitions")

TABLE = "ml_predictions"
DEFAULT_PARTITION = f"{TABLE}_default"
PARTITION_PREFIX = f"{TABLE}_p"

#: How long partition upkeep waits for a lock before it gives up (it is retried next time).
PARTITION_LOCK_TIMEOUT_S = 5
#: How long converting a table waits for the other sessions to leave it.
CONVERSION_LOCK_TIMEOUT_S = 60
#: Every table partition of ml_predictions keeps a fifth of each page free (migration 0002).
FILLFACTOR = 80

#: PostgreSQL advisory-lock key serializing partition maintenance (sha256 of its name).
PARTITION_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"mlpred.partitions").digest()[:8], "big", signed=True
)

_IS_PARTITIONED = (
    f"SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('{TABLE}'))"
)


@dataclass(frozen=True)
class DayPartition:
    """One daily range partition: rows with ``day 00:00 UTC <= datetime < next day``."""

    name: str
    day: dt.date


def partition_name(day: dt.date) -> str:
    """The name of ``day``'s partition: ``ml_predictions_pYYYYMMDD``."""
    return f"{PARTITION_PREFIX}{day:%Y%m%d}"


def is_partitioned(conn: Connection) -> bool:
    """True when ``ml_predictions`` is a partitioned table (always False on SQLite)."""
    if is_sqlite(conn):
        return False
    return bool(conn.exec_driver_sql(_IS_PARTITIONED).scalar())


def _utc_day(lower: dt.datetime | None, upper: dt.datetime | None) -> dt.date | None:
    """The UTC day a ``[lower, upper)`` range covers exactly, else None."""
    if lower is None or upper is None:
        return None
    start = lower.astimezone(dt.UTC)
    if start.time() != dt.time(0) or upper - lower != dt.timedelta(days=1):
        return None
    return start.date()


def day_partitions(conn: Connection) -> list[DayPartition]:
    """The daily range partitions of ``ml_predictions`` (not the default one), by day.

    Empty on SQLite and on an unpartitioned table. Bounds come from the catalog, so a
    partition keeps its day whatever it is named.
    """
    if is_sqlite(conn):
        return []
    return list(_read_catalog(conn).day_partitions())


_UNPARTITIONED = f"{TABLE}_unpartitioned"
_SEQUENCE = f"{TABLE}_id_seq"
_COPY_CLAUSES = "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS"

# Bounds are read back as timestamptz (the literal carries its offset, so the session's time
# zone does not matter); only partitions spanning exactly one UTC day are day partitions.
# One round trip says whether the table is partitioned and lists its partitions; an empty
# default partition is usually known from its size alone (0 bytes: it never held a row). Only
# the default's size is asked for: each size is a file lookup, ~0.1 ms per partition. The
# bound is deparsed once per partition (OFFSET 0 keeps the planner from inlining it four
# times; pg_get_expr costs ~0.05 ms a call), and ``only`` limits it to the names asked for.
_CATALOG = f"""
SELECT parent.partitioned, part.name, part.is_default, part.estimated_rows,
       (regexp_match(part.bound, 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz AS lower_bound,
       (regexp_match(part.bound, 'TO \\(''([^'']+)''\\)'))[1]::timestamptz AS upper_bound,
       CASE WHEN part.is_default THEN pg_relation_size(part.oid) END AS bytes
FROM (SELECT EXISTS (SELECT 1 FROM pg_partitioned_table
                     WHERE partrelid = to_regclass('{TABLE}')) AS partitioned) AS parent
LEFT JOIN (
    SELECT child.oid, child.relname AS name, child.bound, child.bound = 'DEFAULT' AS is_default,
           CASE WHEN child.reltuples >= 0 THEN child.reltuples::bigint
                ELSE pg_stat_get_live_tuples(child.oid) END AS estimated_rows
    FROM (
        SELECT pg_class.oid, pg_class.relname, pg_class.reltuples,
               pg_get_expr(pg_class.relpartbound, pg_class.oid) AS bound
        FROM pg_inherits
        JOIN pg_class ON pg_class.oid = pg_inherits.inhrelid
        WHERE pg_inherits.inhparent = to_regclass('{TABLE}')
          AND (%(only)s::text[] IS NULL OR pg_class.relname = ANY(%(only)s::text[]))
        OFFSET 0
    ) AS child
) AS part ON parent.partitioned
"""


@dataclass(frozen=True)
class PartitionInfo:
    """One partition of ``ml_predictions`` as the catalog describes it."""

    name: str
    day: dt.date | None
    """The UTC day it holds; None for the default partition (and any that is not one day)."""
    is_default: bool
    estimated_rows: int
    """The planner's estimate (``reltuples``, else the statistics' live rows): not a count."""


@dataclass(frozen=True)
class PartitionReport:
    """What converting or ensuring partitions did, and the layout it left."""

    partitioned: bool
    """True when ``ml_predictions`` is partitioned by day (never on SQLite)."""
    converted: bool = False
    """True when this call turned the single table into a partitioned one."""
    rows_converted: int = 0
    """Rows copied into the partitioned table by the conversion (all the table held)."""
    created: tuple[dt.date, ...] = ()
    """Days whose partition this call created, ascending."""
    moved_rows: int = 0
    """Rows moved out of the default partition into their own day's partition."""
    partitions: tuple[DayPartition, ...] = ()
    """Every day partition afterwards, by day."""

    @property
    def layout(self) -> str:
        """``partitioned by day`` or ``single table``."""
        return "partitioned by day" if self.partitioned else "single table"


@dataclass(frozen=True)
class _Catalog:
    partitioned: bool
    partitions: tuple[PartitionInfo, ...]
    default_bytes: int | None  # None: there is no default partition

    @property
    def days(self) -> set[dt.date]:
        return {p.day for p in self.partitions if p.day is not None and not p.is_default}

    def day_partitions(self) -> tuple[DayPartition, ...]:
        found = [
            DayPartition(p.name, p.day)
            for p in self.partitions
            if p.day is not None and not p.is_default
        ]
        return tuple(sorted(found, key=lambda partition: partition.day))


def _read_catalog(conn: Connection, only: list[str] | None = None) -> _Catalog:
    """The partitions of ``ml_predictions`` (only those named ``only`` when given)."""
    rows = conn.exec_driver_sql(_CATALOG, {"only": only}).mappings().all()
    partitioned = bool(rows and rows[0]["partitioned"])
    partitions = []
    default_bytes = None
    for row in rows:
        if row["name"] is None:
            continue
        is_default = bool(row["is_default"])
        if is_default:
            default_bytes = int(row["bytes"])
        partitions.append(
            PartitionInfo(
                name=str(row["name"]),
                day=None if is_default else _utc_day(row["lower_bound"], row["upper_bound"]),
                is_default=is_default,
                estimated_rows=max(int(row["estimated_rows"]), 0),
            )
        )
    ordered = sorted(partitions, key=lambda p: (p.is_default, p.day or dt.date.max, p.name))
    return _Catalog(partitioned, tuple(ordered), default_bytes)


def list_partitions(engine: Engine) -> list[PartitionInfo]:
    """Every partition of ``ml_predictions``: the day partitions by day, then the default.

    Empty on SQLite and on an unpartitioned table.
    """
    if is_sqlite(engine):
        return []
    with database_errors(engine.url), engine.connect() as conn:
        return list(_read_catalog(conn).partitions)


def _utc_now(now: dt.datetime) -> dt.datetime:
    return now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now.astimezone(dt.UTC)


def wanted_days(now: dt.datetime, days_ahead: int) -> list[dt.date]:
    """The days partitions are kept for: yesterday (UTC) to ``days_ahead`` days after
    today. A naive ``now`` is UTC. Raises ``InputError`` for a negative ``days_ahead``."""
    if days_ahead < 0:
        raise InputError(f"days_ahead must be zero or positive, got {days_ahead}")
    today = _utc_now(now).date()
    return [today + dt.timedelta(days=offset) for offset in range(-1, days_ahead + 1)]


def _bound(day: dt.date) -> str:
    """A day's midnight UTC as a SQL literal. DDL takes no bound parameters; the text is
    made from a ``date`` (digits and dashes only), never from caller text."""
    return f"'{day.isoformat()} 00:00:00+00'"


def _range(day: dt.date) -> str:
    return f"FROM ({_bound(day)}) TO ({_bound(day + dt.timedelta(days=1))})"


def _begin_maintenance(conn: Connection, lock_timeout_s: int) -> None:
    """Inside a transaction: wait at most ``lock_timeout_s`` for any lock, then take the
    partition-maintenance lock (one conversion or upkeep at a time per database)."""
    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(lock_timeout_s)}s'")
    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK_KEY,))


def _attach_day(conn: Connection, day: dt.date) -> int:
    """Create ``day``'s partition as a table, move the default partition's rows of that day
    into it, and attach it (ATTACH builds its indexes); returns the rows moved."""
    name = partition_name(day)
    lower, upper = _bound(day), _bound(day + dt.timedelta(days=1))
    conn.exec_driver_sql(
        f"CREATE TABLE {name} (LIKE {TABLE} {_COPY_CLAUSES}) WITH (fillfactor = {FILLFACTOR})"
    )
    moved = conn.exec_driver_sql(
        f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} "
        f"WHERE datetime >= {lower} AND datetime < {upper} RETURNING *) "
        f"INSERT INTO {name} SELECT * FROM moved"
    ).rowcount
    # A constraint proving the bound spares ATTACH its scan of the new table.
    conn.exec_driver_sql(
        f"ALTER TABLE {name} ADD CONSTRAINT {name}_bound "
        f"CHECK (datetime >= {lower} AND datetime < {upper})"
    )
    conn.exec_driver_sql(f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES {_range(day)}")
    conn.exec_driver_sql(f"ALTER TABLE {name} DROP CONSTRAINT {name}_bound")
    if moved > 0:
        conn.exec_driver_sql(f"ANALYZE {name}")
    return max(moved, 0)


def _create_default(conn: Connection) -> None:
    conn.exec_driver_sql(
        f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF {TABLE} DEFAULT "
        f"WITH (fillfactor = {FILLFACTOR})"
    )


def _default_is_empty(conn: Connection, catalog: _Catalog) -> bool:
    """True when the default partition holds no row (known from its size when it never
    held one). There must be a default partition."""
    if not catalog.default_bytes:
        return True
    return not conn.exec_driver_sql(f"SELECT EXISTS (SELECT 1 FROM {DEFAULT_PARTITION})").scalar()


def _upkeep(conn: Connection, days: list[dt.date]) -> tuple[list[dt.date], int]:
    """Inside the maintenance transaction: a default partition, a partition for each of
    ``days`` and for each day with rows in the default; returns (days created, rows moved)."""
    catalog = _read_catalog(conn)
    if catalog.default_bytes is None:
        _create_default(conn)
        catalog = _read_catalog(conn)
    existing = catalog.days
    if set(days) <= existing and _default_is_empty(conn, catalog):
        return [], 0
    # Writers wait (readers do not) until the new partitions are attached: a statement that
    # had already routed a row of a moved day to the default partition would fail.
    conn.exec_driver_sql(f"LOCK TABLE ONLY {TABLE} IN EXCLUSIVE MODE")
    stranded = conn.exec_driver_sql(
        f"SELECT DISTINCT (datetime AT TIME ZONE 'UTC')::date FROM {DEFAULT_PARTITION}"
    ).scalars()
    todo = sorted({*days, *stranded} - existing)
    moved = sum(_attach_day(conn, day) for day in todo)
    return todo, moved


def _maintain(engine: Engine, days: list[dt.date]) -> tuple[list[dt.date], int] | None:
    """Upkeep of a partitioned table for ``days``: (days created, rows moved), or None when
    ``ml_predictions`` is not partitioned. With nothing to do: one catalog query that looks
    at the partitions of ``days`` and the default only, whatever the number of partitions."""
    with database_errors(engine.url), engine.connect() as conn:
        quick = _read_catalog(conn, [*map(partition_name, days), DEFAULT_PARTITION])
        if not quick.partitioned:
            conn.rollback()
            return None
        ready = quick.default_bytes is not None and set(days) <= quick.days
        if ready and _default_is_empty(conn, quick):
            conn.rollback()
            return [], 0
        conn.rollback()
        with conn.begin():
            _begin_maintenance(conn, PARTITION_LOCK_TIMEOUT_S)
            if not is_partitioned(conn):  # no longer partitioned: nothing to keep
                return None
            return _upkeep(conn, days)


def ensure_partitions(engine: Engine, *, days_ahead: int, now: dt.datetime) -> PartitionReport:
    """Keep a partitioned ``ml_predictions`` ready: a partition for every UTC day from
    yesterday to ``days_ahead`` days after ``now`` (naive: UTC), and an empty default
    partition (rows that landed there move to their own day's new partition, created as a
    table, filled, and attached, all in one transaction). The report lists every day
    partition afterwards.

    A no-op on SQLite and on a single table. Waits at most ``PARTITION_LOCK_TIMEOUT_S`` for
    locks, else raises ``DatabaseError`` having changed nothing.
    """
    days = wanted_days(now, days_ahead)
    if is_sqlite(engine):
        return PartitionReport(partitioned=False)
    done = _maintain(engine, days)
    if done is None:
        return PartitionReport(partitioned=False)
    created, moved = done
    with database_errors(engine.url), engine.connect() as conn:
        after = _read_catalog(conn).day_partitions()
    return PartitionReport(
        partitioned=True, created=tuple(created), moved_rows=moved, partitions=after
    )


def _create_indexes(conn: Connection) -> None:
    """The model's indexes (store/tables.py), built on every partition."""
    for index in sorted(predictions_table.indexes, key=lambda index: str(index.name)):
        conn.execute(CreateIndex(index))


def _convert(conn: Connection, days: list[dt.date]) -> tuple[int, list[dt.date]]:
    """Inside the maintenance transaction, with the table locked: rebuild ``ml_predictions``
    partitioned by day, keeping every row, id and the id sequence. Returns (rows, days)."""
    conn.exec_driver_sql(f"ALTER TABLE {TABLE} RENAME TO {_UNPARTITIONED}")
    # The id sequence belongs to the old table's column: detach it so the DROP keeps it.
    conn.exec_driver_sql(f"ALTER SEQUENCE {_SEQUENCE} OWNED BY NONE")
    conn.exec_driver_sql(
        f"CREATE TABLE {TABLE} (LIKE {_UNPARTITIONED} {_COPY_CLAUSES}) "
        "PARTITION BY RANGE (datetime)"
    )
    present = conn.exec_driver_sql(
        f"SELECT DISTINCT (datetime AT TIME ZONE 'UTC')::date FROM {_UNPARTITIONED}"
    ).scalars()
    all_days = sorted({*days, *present})
    for day in all_days:
        conn.exec_driver_sql(
            f"CREATE TABLE {partition_name(day)} PARTITION OF {TABLE} "
            f"FOR VALUES {_range(day)} WITH (fillfactor = {FILLFACTOR})"
        )
    _create_default(conn)
    copied = conn.exec_driver_sql(f"INSERT INTO {TABLE} SELECT * FROM {_UNPARTITIONED}").rowcount
    conn.exec_driver_sql(f"ALTER SEQUENCE {_SEQUENCE} OWNED BY {TABLE}.id")
    conn.exec_driver_sql(
        f"SELECT setval('{_SEQUENCE}', max(id)) FROM {TABLE} "
        f"HAVING max(id) > (SELECT last_value FROM {_SEQUENCE})"
    )
    conn.exec_driver_sql(f"DROP TABLE {_UNPARTITIONED}")
    # The partition key is part of every unique constraint (PostgreSQL requires it).
    conn.exec_driver_sql(
        f"ALTER TABLE {TABLE} ADD CONSTRAINT pk_{TABLE} PRIMARY KEY (id, datetime)"
    )
    conn.exec_driver_sql(
        f"ALTER TABLE {TABLE} ADD CONSTRAINT uq_{TABLE}_prediction_id "
        "UNIQUE (prediction_id, datetime)"
    )
    _create_indexes(conn)
    conn.exec_driver_sql(f"ANALYZE {TABLE}")
    return max(copied, 0), all_days


def partition_predictions(engine: Engine, *, days_ahead: int, now: dt.datetime) -> PartitionReport:
    """Make ``ml_predictions`` a table partitioned by ``RANGE (datetime)``, one partition per
    UTC day plus the default partition, and ensure the partitions from yesterday to
    ``days_ahead`` days after ``now`` (naive: UTC).

    A table holding rows keeps every row, its ids and its id sequence, in one transaction
    that holds the table exclusively (writers and readers wait; it waits at most
    ``CONVERSION_LOCK_TIMEOUT_S`` for them to leave it). On a partitioned table this only
    ensures partitions. PostgreSQL only: raises ``InputError`` on SQLite.
    """
    days = wanted_days(now, days_ahead)
    if is_sqlite(engine):
        raise InputError("partitioned storage needs PostgreSQL; SQLite keeps one table")
    with database_errors(engine.url), engine.connect() as conn:
        partitioned = is_partitioned(conn)
        conn.rollback()
        if not partitioned:
            with conn.begin():
                _begin_maintenance(conn, CONVERSION_LOCK_TIMEOUT_S)
                conn.exec_driver_sql(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
                if not is_partitioned(conn):
                    rows, created = _convert(conn, days)
                    after = _read_catalog(conn).day_partitions()
                    return PartitionReport(
                        partitioned=True,
                        converted=True,
                        rows_converted=rows,
                        created=tuple(created),
                        partitions=after,
                    )
    return ensure_partitions(engine, days_ahead=days_ahead, now=now)


def keep_partitions(
    engine: Engine,
    *,
    days_ahead: int = PARTITION_DAYS_AHEAD,
    now: dt.datetime | None = None,
) -> bool:
    """``ensure_partitions`` as best effort, for loggers and backfill runs: never raises;
    True when the partitions are in place (or there is nothing to partition).

    Costs one catalog query when there is nothing to do, whatever the number of partitions.
    A failure is logged (a warning; only at INFO when the database cannot be reached, which
    the caller reports itself) and returns False: a row for a day without a partition still
    lands in the default partition, and the next run moves it.
    """
    if is_sqlite(engine):
        return True
    try:
        _maintain(engine, wanted_days(now or dt.datetime.now(dt.UTC), days_ahead))
        return True
    except DatabaseUnavailable as error:
        log.info("partitions not ensured, the database is unavailable: %s", error)
    except Exception as error:  # best effort: upkeep must never fail logging or a backfill
        log.warning("could not ensure the partitions of %s: %s", TABLE, error)
    return False


def start_partition_upkeep(engine: Engine) -> threading.Thread | None:
    """Run ``keep_partitions`` on a daemon thread (so it never delays a write); None on
    SQLite, where there is nothing to keep."""
    if is_sqlite(engine):
        return None
    thread = threading.Thread(
        target=keep_partitions, args=(engine,), name="mlpred-partitions", daemon=True
    )
    thread.start()
    return thread
