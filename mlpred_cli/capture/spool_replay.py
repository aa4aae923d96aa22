"""Operations on a database's spool outside the logger: status and replay (the CLI's `spool`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlpred_cli.capture.spool import Spool, SpoolStatus, default_spool_dir
from mlpred_cli.config import resolve_database_url
from mlpred_cli.store.database import connection_errors, create_engine, normalize_url
from mlpred_cli.store.driver_errors import is_row_specific
from mlpred_cli.store.importance_snapshots import write_snapshot
from mlpred_cli.store.migrations import require_schema
from mlpred_cli.store.prediction_row import Row
from mlpred_cli.store.prediction_writes import write_isolating


@dataclass(frozen=True)
class ReplayResult:
    """What a replay wrote, rejected, and left behind."""

    replayed: int
    dead_lettered: int
    remaining: SpoolStatus


def spool_for(database_url: str | None = None, spool_dir: str | Path | None = None) -> Spool:
    """The spool a logger on this database uses (or the directory given)."""
    if spool_dir is not None:
        return Spool(Path(spool_dir))
    url = normalize_url(resolve_database_url(database_url))
    return Spool(default_spool_dir(url))


def spool_status(
    database_url: str | None = None, spool_dir: str | Path | None = None
) -> SpoolStatus:
    """Files, rows and bytes waiting in the spool, and rows dead-lettered."""
    return spool_for(database_url, spool_dir).status()


def replay_spool(
    database_url: str | None = None, spool_dir: str | Path | None = None
) -> ReplayResult:
    """Write every spooled row into the database (idempotent), deleting files once written.

    Rows the database rejects go to the dead-letter file. Raises ``DatabaseUnavailable``
    when the database cannot be reached; nothing is deleted then.
    """
    url = normalize_url(resolve_database_url(database_url))
    spool = spool_for(database_url, spool_dir)
    engine = create_engine(url)
    rejected: list[Row] = []

    def dead_letter(row: Row, reason: str) -> None:
        spool.dead_letter(row, reason)
        rejected.append(row)

    try:
        require_schema(engine)
        with connection_errors(url):
            replayed = spool.replay(lambda rows: write_isolating(engine, rows, dead_letter))
            spool.replay_snapshots(lambda rows: write_snapshot(engine, rows), is_row_specific)
    finally:
        engine.dispose()
    return ReplayResult(replayed=replayed, dead_lettered=len(rejected), remaining=spool.status())
