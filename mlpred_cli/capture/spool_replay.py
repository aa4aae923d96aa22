"""Operations on a database's spool outside the logger: status and replay (the CLI's `spool`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from mlpred_cli.capture.spool import Spool, SpoolStatus, default_spool_dir
from mlpred_cli.store.driver_errors import database_errors, is_row_specific
from mlpred_cli.store.importance_snapshots import write_snapshot
from mlpred_cli.store.prediction_row import Row
from mlpred_cli.store.prediction_writes import write_isolating
from mlpred_cli.store.source import DatabaseSource, database_url, opened

#: Drivers the write paths speak to directly (binary COPY needs psycopg 3).
_WRITER_DRIVERS = frozenset({"psycopg", "pysqlite"})


@dataclass(frozen=True)
class ReplayResult:
    """What a replay wrote, rejected, and left behind."""

    replayed: int
    dead_lettered: int
    remaining: SpoolStatus


def writable_source(database: DatabaseSource) -> DatabaseSource:
    """``database`` as capture writes through it: an ``Engine`` on a driver the write paths
    cannot use (psycopg 2, say) is replaced by the normalized URL of its database, for which
    a new engine is made (and disposed); everything else is returned as is."""
    if isinstance(database, Engine) and database.dialect.driver not in _WRITER_DRIVERS:
        return database_url(database)
    return database


def spool_for(database: DatabaseSource = None, spool_dir: str | Path | None = None) -> Spool:
    """The spool a logger on this database uses (or the directory given)."""
    if spool_dir is not None:
        return Spool(Path(spool_dir))
    return Spool(default_spool_dir(database_url(database)))


def spool_status(
    database: DatabaseSource = None, spool_dir: str | Path | None = None
) -> SpoolStatus:
    """Files, rows and bytes waiting in the spool, and rows dead-lettered."""
    return spool_for(database, spool_dir).status()


def replay_spool(
    database: DatabaseSource = None, spool_dir: str | Path | None = None
) -> ReplayResult:
    """Write every spooled row into the database (idempotent), deleting files once written.

    Rows the database rejects go to the dead-letter file. Raises ``DatabaseUnavailable``
    when the database cannot be reached (nothing is deleted then) and ``SchemaNotReady``
    when it is not migrated. An ``Engine`` passed in is used, not disposed.
    """
    spool = spool_for(database, spool_dir)
    rejected: list[Row] = []

    def dead_letter(row: Row, reason: str) -> None:
        spool.dead_letter(row, reason)
        rejected.append(row)

    with opened(writable_source(database)) as engine, database_errors(engine.url):
        replayed = spool.replay(lambda rows: write_isolating(engine, rows, dead_letter))
        spool.replay_snapshots(lambda rows: write_snapshot(engine, rows), is_row_specific)
    return ReplayResult(replayed=replayed, dead_lettered=len(rejected), remaining=spool.status())
