"""Partitioned storage: ``ml_predictions`` split into one PostgreSQL partition per UTC day.

Why: with 10M predictions a day the table grows by about 6 GB a day. Daily partitions keep
each day's rows and indexes together, so queries on a period read only its days, the
backfill's updates touch only the partitions of their rows, and archiving a day drops a whole
partition instead of deleting rows. SQLite keeps one table.

``partition_database`` converts (once) and ``ensure_partitions_for`` keeps partitions ready
ahead of time; both are also what ``mlpred init-db --partitioned`` and ``mlpred partitions
ensure`` run. Loggers and backfill runs ensure partitions on their own (best effort).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mlpred_cli.config import PARTITION_DAYS_AHEAD
from mlpred_cli.errors import InputError
from mlpred_cli.store.database import is_sqlite
from mlpred_cli.store.migrations import current_revision, upgrade_to_head
from mlpred_cli.store.partitions import (
    PartitionInfo,
    PartitionReport,
    ensure_partitions,
    list_partitions,
    partition_predictions,
)
from mlpred_cli.store.source import DatabaseSource, engine_for, opened

__all__ = [
    "PARTITION_DAYS_AHEAD",
    "DatabaseSetup",
    "PartitionInfo",
    "PartitionReport",
    "ensure_partitions_for",
    "partition_database",
    "partitions_of",
    "set_up_database",
]

SQLITE_HAS_ONE_TABLE = "partitioned storage needs PostgreSQL; SQLite keeps one table"


def _moment(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def partition_database(
    source: DatabaseSource = None,
    *,
    days_ahead: int = PARTITION_DAYS_AHEAD,
    now: datetime | None = None,
) -> PartitionReport:
    """Partition ``ml_predictions`` by day (PostgreSQL), keeping every row and id; on an
    already partitioned table only ensure the partitions. Creates the partitions of the days
    the rows cover and of yesterday to ``days_ahead`` days after ``now`` (default: the
    current time; naive is UTC), plus a default partition for any other day.

    The database must be migrated. The conversion is one transaction that holds the table
    exclusively for as long as copying its rows takes: run it when no logger writes, or
    expect them to wait (they retry). Raises ``InputError`` on SQLite and for a negative
    ``days_ahead``.
    """
    with opened(source) as engine:
        if is_sqlite(engine):
            raise InputError(SQLITE_HAS_ONE_TABLE)
        return partition_predictions(engine, days_ahead=days_ahead, now=_moment(now))


def ensure_partitions_for(
    source: DatabaseSource = None,
    *,
    days_ahead: int = PARTITION_DAYS_AHEAD,
    now: datetime | None = None,
) -> PartitionReport:
    """Create the missing day partitions from yesterday to ``days_ahead`` days after ``now``
    (default: the current time; naive is UTC) and move any rows sitting in the default
    partition into their own day's partition. Costs one catalog query when all is in place;
    does nothing on SQLite or on a table that is not partitioned (the report says which).
    """
    with opened(source) as engine:
        return ensure_partitions(engine, days_ahead=days_ahead, now=_moment(now))


def partitions_of(source: DatabaseSource = None) -> list[PartitionInfo]:
    """The partitions of ``ml_predictions``, by day, the default one last, each with the
    planner's row estimate. Empty on SQLite and on a table that is not partitioned."""
    with opened(source) as engine:
        return list_partitions(engine)


@dataclass(frozen=True)
class DatabaseSetup:
    """What ``set_up_database`` did: the revision before and after, and the layout."""

    revision_before: str | None
    revision: str
    partitions: PartitionReport

    @property
    def migrated(self) -> bool:
        """True when the schema was upgraded (it was not at head before)."""
        return self.revision_before != self.revision


def set_up_database(
    source: DatabaseSource = None,
    *,
    partitioned: bool = False,
    days_ahead: int = PARTITION_DAYS_AHEAD,
    now: datetime | None = None,
) -> DatabaseSetup:
    """Migrate the database to head (safe to run again), then, with ``partitioned``, make
    ``ml_predictions`` partitioned by day (``partition_database``). A database already
    partitioned stays so either way, and gets its coming days' partitions. What ``mlpred
    init-db`` runs. Raises ``InputError`` for ``partitioned`` on SQLite, before migrating.
    """
    moment = _moment(now)
    engine = engine_for(source)
    try:
        if partitioned and is_sqlite(engine):
            raise InputError(SQLITE_HAS_ONE_TABLE)
        before = current_revision(engine)
        revision = upgrade_to_head(engine)
        if partitioned:
            report = partition_predictions(engine, days_ahead=days_ahead, now=moment)
        else:
            report = ensure_partitions(engine, days_ahead=days_ahead, now=moment)
        return DatabaseSetup(before, revision, report)
    finally:
        if engine is not source:
            engine.dispose()
