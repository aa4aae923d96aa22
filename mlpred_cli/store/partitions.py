"""Daily range partitions of ``ml_predictions`` on PostgreSQL (SQLite keeps one table).

The partitioned layout: ``ml_predictions`` partitioned by ``RANGE (datetime)``, one partition
per UTC day named ``ml_predictions_pYYYYMMDD`` holding ``[day 00:00 UTC, next day 00:00 UTC)``,
and a ``DEFAULT`` partition ``ml_predictions_default`` that catches a row for a day without a
partition so it still lands. The partition key is part of every unique constraint: primary
key ``(id, datetime)``, unique ``(prediction_id, datetime)``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from mlpred_cli.store.database import is_sqlite

TABLE = "ml_predictions"
DEFAULT_PARTITION = f"{TABLE}_default"
PARTITION_PREFIX = f"{TABLE}_p"

_IS_PARTITIONED = (
    "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table "
    f"WHERE partrelid = to_regclass('{TABLE}'))"
)

# Bounds are read back as timestamptz (the literal carries its offset, so the session's time
# zone does not matter); only partitions spanning exactly one UTC day are day partitions.
_PARTITIONS = f"""
SELECT child.relname AS name,
       (regexp_match(pg_get_expr(child.relpartbound, child.oid),
                     'FROM \\(''([^'']+)''\\)'))[1]::timestamptz AS lower_bound,
       (regexp_match(pg_get_expr(child.relpartbound, child.oid),
                     'TO \\(''([^'']+)''\\)'))[1]::timestamptz AS upper_bound,
       pg_get_expr(child.relpartbound, child.oid) = 'DEFAULT' AS is_default,
       child.reltuples AS estimated_rows
FROM pg_inherits
JOIN pg_class AS child ON child.oid = pg_inherits.inhrelid
WHERE pg_inherits.inhparent = to_regclass('{TABLE}')
"""


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
    if not is_partitioned(conn):
        return []
    partitions = []
    for row in conn.exec_driver_sql(_PARTITIONS).mappings():
        day = _utc_day(row["lower_bound"], row["upper_bound"])
        if day is not None:
            partitions.append(DayPartition(name=str(row["name"]), day=day))
    return sorted(partitions, key=lambda partition: partition.day)
