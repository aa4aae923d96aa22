"""Operations on a database's spool outside the logger: status and replay (the CLI's `spool`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from mlpred_cli.capture.spool import Spool, SpoolStatus, default_spool_dir, source_url
from mlpred_cli.store.database import connection_errors
from mlpred_cli.store.driver_errors import is_row_specific
from mlpred_cli.store.importance_snapshots import write_snapshot
from mlpred_cli.store.prediction_row import Row
from mlpred_cli.store.prediction_writes import write_isolating
from mlpred_cli.store.source import DatabaseSource, opened

#: Drivers the write paths speak to directly (binary COPY needs psycopg 3).
_WRITER_DRIVERS = frozenset({"psycopg", "pysqlite"})


@dataclass(frozen=True)
class ReplayResult:
    """What a replay wrote, rejected, and left behind."""

    replayed: int
    dead_lettered: int
    remaining: SpoolStatus


def writable_source(source: DatabaseSource) -> DatabaseSource:
    """``source`` as capture writes through it: an ``Engine`` on a driver the write paths
    cannot use (psycopg 2, say) is replaced by the normalized URL of its database, for which
    a new engine is made (and disposed); everything else is returned as is."""
    if isinstance(source, Engine) and source.dialect.driver not in _WRITER_DRIVERS:
        return source_url(source)
    return source


def spool_for(source: DatabaseSource = None, spool_dir: str | Path | None = None) -> Spool:
    """The spool a logger on this database uses (or the directory given)."""
    if spool_dir is not None:
        return Spool(Path(spool_dir))
    return Spool(default_spool_dir(source_url(source)))


def spool_status(source: DatabaseSource = None, spool_dir: str | Path | None = None) -> SpoolStatus:
    """Files, rows and bytes waiting in the spool, and rows dead-lettered."""
    return spool_for(source, spool_dir).status()


def replay_spool(
    source: DatabaseSource = None, spool_dir: str | Path | None = None
) -> ReplayResult:
    """Write every spooled row into the database (idempotent), deleting files once written.

    Rows the database rejects go to the dead-letter file. Raises ``DatabaseUnavailable``
    when the database cannot be reached (nothing is deleted then) and ``SchemaNotReady``
    when it is not migrated. An ``Engine`` passed in is used, not disposed.
    """
    spool = spool_for(source, spool_dir)
    rejected: list[Row] = []

    def dead_letter(row: Row, reason: str) -> None:
        spool.dead_letter(row, reason)
        rejected.append(row)

    with opened(writable_source(source)) as engine, connection_errors(engine.url):
        replayed = spool.replay(lambda rows: write_isolating(engine, rows, dead_letter))
        spool.replay_snapshots(lambda rows: write_snapshot(engine, rows), is_row_specific)
    return ReplayResult(replayed=replayed, dead_lettered=len(rejected), remaining=spool.status())
