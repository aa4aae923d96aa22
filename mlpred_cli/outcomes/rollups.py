"""Rollup maintenance a user runs: ``rebuild_rollups`` recomputes ``ml_prediction_daily``
from raw rows (the backfill keeps it current by itself; see ``store.rollups``)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from mlpred_cli.errors import DatabaseError
from mlpred_cli.store.prediction_queries import parse_time
from mlpred_cli.store.rollups import rebuild
from mlpred_cli.store.source import DatabaseSource, opened

Progress = Any


@dataclass
class RollupRebuildReport:
    """What a rebuild did: ``status`` (``done`` / ``locked``), the days recomputed, the
    rollup rows written, the id through which the rollups are complete, whether every day
    was rebuilt (``full``: also when they had never been built), and seconds taken."""

    status: str
    days: int
    rows: int
    complete_through_id: int | None
    full: bool
    elapsed_s: float

    def as_dict(self) -> dict[str, Any]:
        """The report as a plain dict."""
        return asdict(self)


def _since_day(since: date | datetime | str | None) -> date | None:
    if since is None:
        return None
    if isinstance(since, datetime):
        return parse_time(since, "since").date()
    if isinstance(since, date):
        return since
    return parse_time(since, "since").date()


def rebuild_rollups(
    database: DatabaseSource = None,
    *,
    since: date | datetime | str | None = None,
    days_per_transaction: int = 7,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> RollupRebuildReport:
    """Recompute the daily rollups of every UTC day from ``since`` (a date, or the day of an
    ISO time; None: all history) from the raw rows, ``days_per_transaction`` days per
    transaction. Archived days keep their rollups. Holds the backfill's lock: returns with
    status ``locked`` when a backfill runs. Idempotent: a rebuild after any sequence of
    backfills writes the rows that were already there."""
    started = time.perf_counter()
    day = _since_day(since)
    with opened(database) as engine:
        result = rebuild(
            engine,
            since=day,
            now=now or datetime.now(UTC),
            days_per_transaction=max(1, days_per_transaction),
            progress=progress,
        )
    if result.status == "busy":
        raise DatabaseError("writers kept inserting predictions: no stable id frontier; retry")
    return RollupRebuildReport(
        result.status,
        result.days,
        result.rows,
        result.through,
        result.full or day is None,
        time.perf_counter() - started,
    )
