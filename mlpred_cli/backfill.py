"""Actual outcomes from candles: fill ``actual_return_h`` and friends, set-based and cron-safe.

For each horizon h (DESIGN.md "Outcomes"): with t the prediction's ``datetime`` (open time of
the last candle the model saw) and entry = ``close_price`` when positive, else the close of the
candle at t, ``actual_return_h = close(t + h) / entry - 1``. A horizon is due once the candle
opening at t + h has closed (t + h + interval <= now). A due row with no candle at t + h (or no
entry price) stays null and is counted as missing; it is retried on the next run.

Every row is rewritten at most once per run, whatever the number of horizons: outcomes are
computed chunk by chunk into a temporary table and applied with one ``UPDATE ... FROM``. The
update touches no indexed column (``actuals_filled_at``, set once every horizon is filled,
is not indexed either), so PostgreSQL can apply it as a HOT update (migration 0002).

Pending rows are found through the ``datetime`` index: without ``since`` a run starts
``BACKFILL_RETRY_WINDOW`` before the newest completed prediction (everything on the first
run), so a cron run stays cheap however long the table grows.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlpred_cli import db
from mlpred_cli.candles import parse_interval
from mlpred_cli.config import (
    BACKFILL_CHUNK_ROWS,
    BACKFILL_RETRY_WINDOW,
    DEFAULT_BACKFILL_INTERVAL,
    DEFAULT_DIRECTION_THRESHOLDS,
    HORIZON_DELTAS,
    HORIZONS,
)
from mlpred_cli.errors import InputError
from mlpred_cli.models import predictions_table
from mlpred_cli.types import UTCDateTime

#: Tables the backfill can read closes from (same columns: symbol, interval_minutes, datetime,
#: close).
SOURCES: tuple[str, ...] = ("market_candles", "raw_market_data")

#: PostgreSQL advisory-lock key: the first 8 bytes of sha256("mlpred.backfill-actuals").
ADVISORY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"mlpred.backfill-actuals").digest()[:8], "big", signed=True
)

Progress = Callable[[int, int], None]  # (predictions processed so far, total candidates)


@dataclass
class HorizonCounts:
    """Per horizon: rows filled in this run, still pending (not due), due but missing a candle."""

    horizon: str
    filled: int = 0
    pending: int = 0
    missing: int = 0


@dataclass
class BackfillReport:
    """What a backfill run did (or, with ``dry_run``, would do)."""

    status: str  # "ok", "dry-run", "locked" (another backfill is running)
    source: str
    interval: str
    dry_run: bool
    scanned_since: datetime | None = None  # earliest prediction time looked at (None: all)
    candidates: int = 0
    rows_updated: int = 0
    chunks: int = 0
    elapsed_s: float = 0.0
    horizons: list[HorizonCounts] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (the ``--format json`` shape)."""
        return {
            "status": self.status,
            "source": self.source,
            "interval": self.interval,
            "dry_run": self.dry_run,
            "scanned_since": self.scanned_since.isoformat() if self.scanned_since else None,
            "candidates": self.candidates,
            "rows_updated": self.rows_updated,
            "chunks": self.chunks,
            "elapsed_s": round(self.elapsed_s, 3),
            "horizons": [vars(counts) for counts in self.horizons],
        }


# ---------------------------------------------------------------- option parsing


def parse_horizons(text: str | None) -> list[str]:
    """``"15m,1h"`` -> ``["15m", "1h"]`` in schema order; ``None`` or empty means all."""
    if text is None or not text.strip():
        return list(HORIZONS)
    wanted = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [part for part in wanted if part not in HORIZONS]
    if unknown:
        raise InputError(f"unknown horizon '{unknown[0]}': use {','.join(HORIZONS)}")
    return [horizon for horizon in HORIZONS if horizon in wanted]


def parse_thresholds(text: str | None) -> dict[str, float]:
    """``"15m=0.0015,1h=0.003"`` over the defaults; values are fractions (0.003 = 0.3 %)."""
    thresholds = dict(DEFAULT_DIRECTION_THRESHOLDS)
    if text is None or not text.strip():
        return thresholds
    for part in text.split(","):
        if not part.strip():
            continue
        horizon, sep, value = part.partition("=")
        horizon = horizon.strip().lower()
        if not sep or horizon not in HORIZONS:
            raise InputError(
                f"bad threshold '{part.strip()}': expected HORIZON=VALUE, e.g. 1h=0.003"
            )
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"bad threshold value '{value.strip()}' for {horizon}") from None
        if not number >= 0 or number == float("inf"):
            raise InputError(f"threshold for {horizon} must be a finite number >= 0")
        thresholds[horizon] = number
    return thresholds


def parse_moment(text: str | None) -> datetime | None:
    """An ISO date or date-time as aware UTC; naive input is taken as UTC."""
    if text is None or not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"bad date/time '{text}': use ISO 8601, e.g. 2026-03-01T12:00") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ---------------------------------------------------------------- locking


@contextlib.contextmanager
def backfill_lock(engine: Engine, conn: Connection) -> Iterator[bool]:
    """Try to become the only backfill on this database; yields False when another one runs.

    PostgreSQL: a session-level advisory lock on ``conn``. SQLite: an OS lock on a file next
    to the database (``<db>.backfill.lock``), so the loser never waits on a busy timeout.
    """
    if not db.is_sqlite(engine):
        got = bool(
            conn.exec_driver_sql("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).scalar()
        )
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
                conn.commit()
        return
    database = Path(engine.url.database or "").expanduser().resolve()
    lock_path = database.with_name(database.name + ".backfill.lock")
    with lock_path.open("a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# ---------------------------------------------------------------- SQL


def _target_time(horizon: str, dialect: str) -> str:
    """SQL for t + h in the stored representation of ``datetime`` on each backend."""
    seconds = int(HORIZON_DELTAS[horizon].total_seconds())
    if dialect == "sqlite":
        # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff'; whole seconds added, the fraction carried over.
        shifted = f"strftime('%Y-%m-%d %H:%M:%S', p.datetime, '+{seconds} seconds')"
        return f"{shifted} || substr(p.datetime, 20)"
    return f"p.datetime + interval '{seconds} seconds'"


def _filters(
    symbol: str | None, since: datetime | None, until: datetime | None
) -> tuple[str, dict[str, Any]]:
    clauses = ["p.actuals_filled_at IS NULL"]
    params: dict[str, Any] = {}
    if symbol:
        clauses.append("p.symbol = :symbol")
        params["symbol"] = symbol
    if since:
        clauses.append("p.datetime >= :since")
        params["since"] = since
    if until:
        clauses.append("p.datetime <= :until")
        params["until"] = until
    return " AND ".join(clauses), params


def _outcome_select(horizons: Sequence[str], source: str, dialect: str, where: str) -> str:
    """SELECT of (id, due_h, r_h, dir_h) for the chunk's candidate rows.

    due_h: 1 due, 0 not yet, NULL already filled. r_h: the new return, NULL unless it is filled
    now. dir_h: LONG / SHORT / NEUTRAL from r_h and the horizon's threshold.
    """
    joins = [
        f"LEFT JOIN {source} ce ON ce.symbol = p.symbol AND ce.interval_minutes = :interval "
        "AND ce.datetime = p.datetime"
    ]
    inner = ["p.id"]
    outer = ["id"]
    for horizon in HORIZONS:
        if horizon not in horizons:
            inner += [
                f"CAST(NULL AS INTEGER) AS due_{horizon}",
                f"CAST(NULL AS DOUBLE PRECISION) AS r_{horizon}",
            ]
            outer += [
                f"due_{horizon}",
                f"r_{horizon}",
                f"CAST(NULL AS VARCHAR(10)) AS dir_{horizon}",
            ]
            continue
        alias = f"c_{horizon}"
        joins.append(
            f"LEFT JOIN {source} {alias} ON {alias}.symbol = p.symbol "
            f"AND {alias}.interval_minutes = :interval "
            f"AND {alias}.datetime = {_target_time(horizon, dialect)}"
        )
        is_open = f"p.actual_return_{horizon} IS NULL"
        due = f"p.datetime <= :due_{horizon}"
        inner.append(
            f"CASE WHEN {is_open} THEN (CASE WHEN {due} THEN 1 ELSE 0 END) END AS due_{horizon}"
        )
        inner.append(
            f"CASE WHEN {is_open} AND {due} THEN {alias}.close / "
            "(CASE WHEN p.close_price > 0 THEN p.close_price "
            "WHEN ce.close > 0 THEN ce.close END) - 1 END "
            f"AS r_{horizon}"
        )
        outer += [
            f"due_{horizon}",
            f"r_{horizon}",
            f"CASE WHEN r_{horizon} > :th_{horizon} THEN 'LONG' "
            f"WHEN r_{horizon} < -:th_{horizon} THEN 'SHORT' "
            f"WHEN r_{horizon} IS NOT NULL THEN 'NEUTRAL' END AS dir_{horizon}",
        ]
    return (
        f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} "
        f"FROM ml_predictions p {' '.join(joins)} "
        f"WHERE p.id >= :lo AND p.id <= :hi AND {where}) AS computed"
    )


_OUTCOME_TABLE = "backfill_outcomes"


def _create_outcome_table(conn: Connection) -> None:
    columns = ["id BIGINT PRIMARY KEY"]
    for horizon in HORIZONS:
        columns += [
            f"due_{horizon} INTEGER",
            f"r_{horizon} DOUBLE PRECISION",
            f"dir_{horizon} VARCHAR(10)",
        ]
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_OUTCOME_TABLE}")
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {_OUTCOME_TABLE} ({', '.join(columns)})")


def _counts_sql() -> str:
    parts = []
    for horizon in HORIZONS:
        parts += [
            f"COUNT(r_{horizon})",
            f"SUM(CASE WHEN due_{horizon} = 0 THEN 1 ELSE 0 END)",
            f"SUM(CASE WHEN due_{horizon} = 1 AND r_{horizon} IS NULL THEN 1 ELSE 0 END)",
        ]
    return f"SELECT {', '.join(parts)} FROM {_OUTCOME_TABLE}"


def _update_sql() -> str:
    sets = []
    for horizon in HORIZONS:
        new = f"o.r_{horizon}"
        sets += [
            f"actual_return_{horizon} = COALESCE({new}, actual_return_{horizon})",
            f"actual_direction_{horizon} = COALESCE(o.dir_{horizon}, actual_direction_{horizon})",
            f"accuracy_{horizon} = CASE WHEN {new} IS NULL THEN accuracy_{horizon} "
            f"ELSE direction_{horizon} = o.dir_{horizon} END",
            f"return_error_{horizon} = CASE WHEN {new} IS NULL THEN return_error_{horizon} "
            f"ELSE predicted_return_{horizon} - {new} END",
        ]
    complete = " AND ".join(
        f"COALESCE(o.r_{horizon}, actual_return_{horizon}) IS NOT NULL" for horizon in HORIZONS
    )
    sets.append(f"actuals_filled_at = CASE WHEN {complete} THEN :now ELSE actuals_filled_at END")
    sets.append("updated_at = :now")
    any_new = " OR ".join(f"o.r_{horizon} IS NOT NULL" for horizon in HORIZONS)
    return (
        f"UPDATE ml_predictions SET {', '.join(sets)} FROM {_OUTCOME_TABLE} o "
        f"WHERE ml_predictions.id = o.id AND ml_predictions.id BETWEEN :lo AND :hi "
        f"AND ({any_new})"
    )


# ---------------------------------------------------------------- the run


def _check_source(conn: Connection, source: str) -> None:
    if source not in SOURCES:
        raise InputError(f"unknown source '{source}': use {' or '.join(SOURCES)}")
    if not sa.inspect(conn).has_table(source):
        raise InputError(f"source table {source} does not exist in this database")


def newest_completed(conn: Connection, symbol: str | None) -> datetime | None:
    """``datetime`` of the newest prediction with every outcome filled (aware UTC), if any."""
    column = predictions_table.c.datetime
    query = sa.select(column).where(predictions_table.c.actuals_filled_at.is_not(None))
    if symbol:
        query = query.where(predictions_table.c.symbol == symbol)
    newest: datetime | None = conn.execute(query.order_by(column.desc()).limit(1)).scalar()
    return newest


def _candidate_ids(
    conn: Connection, where: str, params: Mapping[str, Any], limit: int | None
) -> list[int]:
    sql = f"SELECT p.id FROM ml_predictions p WHERE {where} ORDER BY p.id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    statement = sa.text(sql).bindparams(*_typed_binds(params))
    return [int(row[0]) for row in conn.execute(statement, dict(params))]


def _typed_binds(params: Mapping[str, Any]) -> list[sa.BindParameter[Any]]:
    return [
        sa.bindparam(name, type_=UTCDateTime)
        for name, value in params.items()
        if isinstance(value, datetime)
    ]


def backfill_actuals(
    engine: Engine,
    *,
    source: str = "market_candles",
    interval: str = DEFAULT_BACKFILL_INTERVAL,
    symbol: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    horizons: Sequence[str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    dry_run: bool = False,
    limit: int | None = None,
    chunk_rows: int = BACKFILL_CHUNK_ROWS,
    retry_window: timedelta = BACKFILL_RETRY_WINDOW,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> BackfillReport:
    """Fill the actual outcomes of predictions whose horizons have passed.

    Only null outcome columns are written (idempotent; a rerun with nothing new writes nothing).
    ``since``/``until`` bound the prediction ``datetime`` (aware UTC; naive taken as UTC).
    Without ``since`` the run starts ``retry_window`` before the newest completed prediction
    (everything when none is complete yet); older gaps are retried only when ``since`` reaches
    them. ``limit`` caps how many pending predictions this run looks at. ``dry_run`` counts without
    writing. When another backfill holds the lock, returns at once with status ``locked``.
    """
    started = time.perf_counter()
    chosen = list(horizons) if horizons is not None else list(HORIZONS)
    unknown = [horizon for horizon in chosen if horizon not in HORIZONS]
    if unknown:
        raise InputError(f"unknown horizon '{unknown[0]}': use {','.join(HORIZONS)}")
    interval_minutes = parse_interval(interval)
    if limit is not None and limit < 1:
        raise InputError("--limit must be a positive number of predictions")
    levels = dict(DEFAULT_DIRECTION_THRESHOLDS)
    levels.update(thresholds or {})
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    report = BackfillReport(
        status="dry-run" if dry_run else "ok",
        source=source,
        interval=interval,
        dry_run=dry_run,
        horizons=[HorizonCounts(horizon) for horizon in chosen],
    )
    since = since.astimezone(UTC) if since else None
    until = until.astimezone(UTC) if until else None
    candle_span = timedelta(minutes=interval_minutes)
    timing: dict[str, Any] = {
        "interval": interval_minutes,
        **{f"due_{h}": moment - HORIZON_DELTAS[h] - candle_span for h in chosen},
        **{f"th_{h}": float(levels[h]) for h in chosen},
    }
    dialect = engine.dialect.name
    update = sa.text(_update_sql()).bindparams(sa.bindparam("now", type_=UTCDateTime))
    counts = sa.text(_counts_sql())

    with db.connection_errors(engine.url), engine.connect() as conn:
        _check_source(conn, source)
        conn.commit()
        with backfill_lock(engine, conn) as acquired:
            if not acquired:
                report.status = "locked"
                report.elapsed_s = time.perf_counter() - started
                return report
            if since is None:
                newest = newest_completed(conn, symbol)
                since = newest - retry_window if newest is not None else None
            report.scanned_since = since
            where, params = _filters(symbol, since, until)
            step_params = {**params, **timing}
            fill = sa.text(
                f"INSERT INTO {_OUTCOME_TABLE} {_outcome_select(chosen, source, dialect, where)}"
            ).bindparams(*_typed_binds(step_params))
            ids = _candidate_ids(conn, where, params, limit)
            conn.commit()
            report.candidates = len(ids)
            if ids:
                _create_outcome_table(conn)
                conn.commit()
            work = conn.execution_options(**{db.SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            for start in range(0, len(ids), chunk_rows):
                chunk = ids[start : start + chunk_rows]
                with work.begin():
                    work.exec_driver_sql(f"DELETE FROM {_OUTCOME_TABLE}")
                    work.execute(fill, {**step_params, "lo": chunk[0], "hi": chunk[-1]})
                    if dialect == "postgresql":
                        work.exec_driver_sql(f"ANALYZE {_OUTCOME_TABLE}")
                    row = work.execute(counts).one()
                    for index, horizon in enumerate(HORIZONS):
                        if horizon not in chosen:
                            continue
                        entry = report.horizons[chosen.index(horizon)]
                        entry.filled += int(row[3 * index] or 0)
                        entry.pending += int(row[3 * index + 1] or 0)
                        entry.missing += int(row[3 * index + 2] or 0)
                    if not dry_run:
                        report.rows_updated += work.execute(
                            update, {"now": moment, "lo": chunk[0], "hi": chunk[-1]}
                        ).rowcount
                report.chunks += 1
                if progress is not None:
                    progress(start + len(chunk), len(ids))
            if ids:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_OUTCOME_TABLE}")
                conn.commit()
    report.elapsed_s = time.perf_counter() - started
    return report
