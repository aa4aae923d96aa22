"""Actual outcomes from candles: fill ``actual_return_h`` and friends, set-based and cron-safe.

Reference time t and entry price (DESIGN.md "Reference time and entry price"): a row with a
positive, finite ``close_price`` was logged with market data, so t is its ``datetime`` (the
open time of the last candle the model saw) and the entry is ``close_price``. Any other row
(``close_price`` null, <= 0, NaN or infinite) was logged without market data: t is the open
time of the last candle that had closed at the logging time, ``floor(datetime to the
interval) - interval`` (``datetime`` itself when it is exactly on an interval boundary), and
the entry is that candle's close. For each horizon h, ``actual_return_h = close(t + h) /
entry - 1`` and the direction is LONG above +threshold, SHORT below -threshold, else NEUTRAL,
comparing with a tolerance of ``RETURN_TOLERANCE`` (a move of exactly the threshold is
NEUTRAL although 100.15 / 100 - 1 is 0.0015000000000000568). A horizon is due once the candle
opening at t + h has closed (t + h + interval <= now). A due row with no usable candle at
t + h (absent, <= 0 or NaN) or no entry price stays null and is counted as missing; it is
retried on later runs.

Every row is rewritten at most once per run, whatever the number of horizons: outcomes are
computed chunk by chunk into a temporary table and applied with one ``UPDATE ... FROM``. The
update touches no indexed column (``actuals_filled_at``, set once every horizon is filled,
is not indexed either), so PostgreSQL can apply it as a HOT update (migration 0002).

Windows: without ``since`` each symbol is scanned from ``BACKFILL_RETRY_WINDOW`` before its
own newest completed prediction (from its first prediction when none is complete), found by
index scans over (symbol, datetime), so a cron run stays cheap however long the table grows
and a symbol whose candles arrive late is still retried. Rows still missing an outcome before
their symbol's window are counted (``outside_window``), not retried.

``raw_market_data`` (the original bot's table) is read through a per-run keyed copy of the
closes the run needs: duplicates of (symbol, interval, datetime), e.g. one row per exchange,
resolve to the first by exchange name, and on SQLite any ISO text form of ``datetime``
('YYYY-MM-DD HH:MM:SS', a 'T' separator, a fraction, '+00:00' or 'Z') is normalised.
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

from mlpred_cli.config import (
    BACKFILL_CHUNK_ROWS,
    BACKFILL_RETRY_WINDOW,
    DEFAULT_BACKFILL_INTERVAL,
    DEFAULT_DIRECTION_THRESHOLDS,
    HORIZON_DELTAS,
    HORIZONS,
)
from mlpred_cli.errors import InputError
from mlpred_cli.outcomes.candle_files import parse_interval
from mlpred_cli.store.column_types import UTCDateTime
from mlpred_cli.store.database import SQLITE_BEGIN_OPTION, connection_errors, is_sqlite
from mlpred_cli.store.tables import predictions_table

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
    outside_window: int = 0  # rows missing an outcome before their symbol's window (not retried)
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
            "outside_window": self.outside_window,
            "rows_updated": self.rows_updated,
            "chunks": self.chunks,
            "elapsed_s": round(self.elapsed_s, 3),
            "horizons": [vars(counts) for counts in self.horizons],
        }


# ---------------------------------------------------------------- locking


@contextlib.contextmanager
def backfill_lock(engine: Engine, conn: Connection) -> Iterator[bool]:
    """Try to become the only backfill on this database; yields False when another one runs.

    PostgreSQL: a session-level advisory lock on ``conn``. SQLite: an OS lock on a file next
    to the database (``<db>.backfill.lock``), so the loser never waits on a busy timeout.
    """
    if not is_sqlite(engine):
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

#: Returns within this of a threshold count as on it (NEUTRAL): 100.15 / 100 - 1 is
#: 0.0015000000000000568 in binary floating point, which must not make a +0.15 % move LONG.
RETURN_TOLERANCE = 1e-12

_WINDOW_TABLE = "backfill_windows"
_PRICE_TABLE = "backfill_prices"
_OUTCOME_TABLE = "backfill_outcomes"


def _usable_price(expression: str, dialect: str) -> str:
    """SQL true when a price is a positive finite number (PostgreSQL has 'NaN' > 0 true)."""
    infinity = "'Infinity'::float8" if dialect == "postgresql" else "9e999"
    return f"({expression} > 0 AND {expression} < {infinity})"


def _sqlite_time(seconds_sql: str) -> str:
    """SQLite text of an epoch-seconds expression in the stored format."""
    return f"strftime('%Y-%m-%d %H:%M:%S', {seconds_sql}, 'unixepoch') || '.000000'"


def _reference_time(interval_minutes: int, dialect: str) -> str:
    """SQL for a row's reference time t (see the module docstring), in the stored format."""
    seconds = interval_minutes * 60
    if dialect == "sqlite":
        floor = f"(CAST(strftime('%s', p.datetime) AS INTEGER) / {seconds} * {seconds})"
        aligned = f"{_sqlite_time(floor)} = p.datetime"
        previous = _sqlite_time(f"{floor} - {seconds}")
    else:
        span = f"interval '{seconds} seconds'"
        floor = f"date_bin({span}, p.datetime, TIMESTAMPTZ '1970-01-01 00:00:00+00')"
        aligned = f"{floor} = p.datetime"
        previous = f"{floor} - {span}"
    return (
        f"CASE WHEN {_usable_price('p.close_price', dialect)} OR {aligned} THEN p.datetime "
        f"ELSE {previous} END"
    )


def _target_time(horizon: str, dialect: str) -> str:
    """SQL for t + h in the stored representation of ``datetime`` on each backend."""
    seconds = int(HORIZON_DELTAS[horizon].total_seconds())
    if dialect == "sqlite":
        # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff'; whole seconds added, the fraction carried over.
        shifted = f"strftime('%Y-%m-%d %H:%M:%S', q.ref, '+{seconds} seconds')"
        return f"{shifted} || substr(q.ref, 20)"
    return f"q.ref + interval '{seconds} seconds'"


def _candidates_from(until: datetime | None) -> tuple[str, dict[str, Any]]:
    """FROM/WHERE of the pending rows inside their symbol's window (alias ``p``)."""
    sql = (
        f"FROM {_WINDOW_TABLE} w JOIN ml_predictions p "
        "ON p.symbol = w.symbol AND p.datetime >= w.start WHERE p.actuals_filled_at IS NULL"
    )
    if until is None:
        return sql, {}
    return sql + " AND p.datetime <= :until", {"until": until}


def _outcome_select(
    horizons: Sequence[str], source: str, interval_minutes: int, dialect: str, candidates: str
) -> str:
    """SELECT of (id, due_h, r_h, dir_h) for the chunk's candidate rows.

    due_h: 1 due, 0 not yet, NULL already filled. r_h: the new return, NULL unless it is filled
    now. dir_h: LONG / SHORT / NEUTRAL from r_h and the horizon's threshold.
    """
    entry = (
        f"CASE WHEN {_usable_price('q.close_price', dialect)} THEN q.close_price "
        f"WHEN {_usable_price('ce.close', dialect)} THEN ce.close END"
    )
    joins = [
        f"LEFT JOIN {source} ce ON ce.symbol = q.symbol AND ce.interval_minutes = :interval "
        "AND ce.datetime = q.ref"
    ]
    inner = ["q.id"]
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
            f"LEFT JOIN {source} {alias} ON {alias}.symbol = q.symbol "
            f"AND {alias}.interval_minutes = :interval "
            f"AND {alias}.datetime = {_target_time(horizon, dialect)}"
        )
        is_open = f"q.actual_return_{horizon} IS NULL"
        due = f"q.ref <= :due_{horizon}"
        inner.append(
            f"CASE WHEN {is_open} THEN (CASE WHEN {due} THEN 1 ELSE 0 END) END AS due_{horizon}"
        )
        inner.append(
            f"CASE WHEN {is_open} AND {due} AND {_usable_price(f'{alias}.close', dialect)} "
            f"THEN {alias}.close / ({entry}) - 1 END AS r_{horizon}"
        )
        outer += [
            f"due_{horizon}",
            f"r_{horizon}",
            f"CASE WHEN r_{horizon} > :long_{horizon} THEN 'LONG' "
            f"WHEN r_{horizon} < :short_{horizon} THEN 'SHORT' "
            f"WHEN r_{horizon} IS NOT NULL THEN 'NEUTRAL' END AS dir_{horizon}",
        ]
    pending = ", ".join(f"p.actual_return_{horizon}" for horizon in HORIZONS)
    rows = (
        f"SELECT p.id, p.symbol, p.close_price, {pending}, "
        f"{_reference_time(interval_minutes, dialect)} AS ref "
        f"{candidates} AND p.id >= :lo AND p.id <= :hi"
    )
    return (
        f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} "
        f"FROM ({rows}) q {' '.join(joins)}) AS computed"
    )


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


# ---------------------------------------------------------------- windows and prices


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


#: Newest predictions per symbol read first when looking for its newest completed one.
_NEWEST_PEEK = 256

# Every symbol by a skip scan of the (symbol, datetime) index (one probe per symbol, on both
# backends), with its newest completed and its first prediction time, cheap however many rows
# each symbol has. The newest completed one is first sought among the symbol's newest
# _NEWEST_PEEK rows: a plain LIMIT keeps PostgreSQL on a backward index scan even when its
# statistics still say no row is complete (right after a first full backfill it otherwise
# bitmap-scans and sorts every row of the symbol); only a symbol with more incomplete rows
# than that takes the general query.
_SYMBOL_TIMES = f"""
WITH RECURSIVE symbols(symbol) AS (
    SELECT MIN(symbol) FROM ml_predictions
    UNION ALL
    SELECT (SELECT MIN(n.symbol) FROM ml_predictions n WHERE n.symbol > s.symbol)
    FROM symbols s WHERE s.symbol IS NOT NULL
)
SELECT s.symbol,
    COALESCE(
        (SELECT MAX(r.datetime) FROM (
            SELECT c.datetime, c.actuals_filled_at FROM ml_predictions c
            WHERE c.symbol = s.symbol ORDER BY c.datetime DESC LIMIT {_NEWEST_PEEK}) r
         WHERE r.actuals_filled_at IS NOT NULL),
        (SELECT c.datetime FROM ml_predictions c
         WHERE c.symbol = s.symbol AND c.actuals_filled_at IS NOT NULL
         ORDER BY c.datetime DESC LIMIT 1)) AS newest_completed,
    (SELECT f.datetime FROM ml_predictions f WHERE f.symbol = s.symbol
     ORDER BY f.symbol, f.datetime LIMIT 1) AS first_logged
FROM symbols s WHERE s.symbol IS NOT NULL
"""


@dataclass(frozen=True)
class SymbolWindow:
    """Where a run starts for one symbol: ``start`` (aware UTC) and whether that is simply its
    first prediction because none of its predictions is complete yet."""

    start: datetime
    from_first: bool


def symbol_windows(
    conn: Connection, symbol: str | None, since: datetime | None, retry_window: timedelta
) -> dict[str, SymbolWindow]:
    """Per symbol, the earliest prediction time a run looks at.

    ``since`` when given; else ``retry_window`` before the symbol's own newest completed
    prediction, or its first prediction when none is complete yet.
    """
    statement = sa.text(_SYMBOL_TIMES).columns(
        sa.column("symbol", sa.String),
        sa.column("newest_completed", UTCDateTime),
        sa.column("first_logged", UTCDateTime),
    )
    if not is_sqlite(conn):
        # JIT compiling is priced for the fallback's worst case and costs more than the scans
        conn.exec_driver_sql("SET LOCAL jit = off")
    windows: dict[str, SymbolWindow] = {}
    for name, newest, first in conn.execute(statement):
        if symbol and name != symbol:
            continue
        if since is not None:
            windows[name] = SymbolWindow(since, from_first=False)
        elif newest is not None:
            windows[name] = SymbolWindow(newest - retry_window, from_first=False)
        else:
            windows[name] = SymbolWindow(first, from_first=True)
    return windows


def _create_window_table(conn: Connection, windows: Mapping[str, SymbolWindow]) -> None:
    start_type = "TEXT" if is_sqlite(conn) else "TIMESTAMPTZ"
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_WINDOW_TABLE}")
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {_WINDOW_TABLE} "
        f"(symbol VARCHAR(20) PRIMARY KEY, start {start_type} NOT NULL)"
    )
    if windows:
        insert = sa.text(f"INSERT INTO {_WINDOW_TABLE} VALUES (:symbol, :start)").bindparams(
            sa.bindparam("start", type_=UTCDateTime)
        )
        conn.execute(insert, [{"symbol": s, "start": w.start} for s, w in windows.items()])
    if not is_sqlite(conn):
        conn.exec_driver_sql(f"ANALYZE {_WINDOW_TABLE}")


def _count_outside_windows(conn: Connection) -> int:
    """Predictions still missing an outcome that lie before their symbol's window."""
    return int(
        conn.exec_driver_sql(
            f"SELECT COUNT(*) FROM {_WINDOW_TABLE} w JOIN ml_predictions p "
            "ON p.symbol = w.symbol AND p.datetime < w.start WHERE p.actuals_filled_at IS NULL"
        ).scalar_one()
    )


def _candidate_ids(
    conn: Connection, candidates: str, params: Mapping[str, Any], limit: int | None
) -> list[int]:
    sql = f"SELECT p.id {candidates} ORDER BY p.id"
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


def _create_price_table(
    conn: Connection, interval_minutes: int, first: datetime, last: datetime
) -> None:
    """Copy the ``raw_market_data`` closes between ``first`` and ``last`` into a keyed table.

    One close per (symbol, open time): duplicates (one row per exchange) resolve to the first
    by exchange name, then the lowest close. On SQLite the open time is normalised to the
    stored format, so 'YYYY-MM-DD HH:MM:SS', a 'T' separator, a fraction and a UTC offset or
    'Z' all match (the text is read by SQLite's date functions; numbers are not times).
    """
    columns = {column["name"] for column in sa.inspect(conn).get_columns("raw_market_data")}
    by_exchange = "r.exchange IS NULL, r.exchange, " if "exchange" in columns else ""
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_PRICE_TABLE}")
    params: dict[str, Any] = {"interval": interval_minutes}
    if is_sqlite(conn):
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {_PRICE_TABLE} (symbol TEXT, interval_minutes INTEGER, "
            "datetime TEXT, close REAL, PRIMARY KEY (symbol, interval_minutes, datetime))"
        )
        # Any UTC offset moves a time by less than a day: compare whole dates, a prefix that
        # sorts the same in every ISO text form.
        params["first"] = (first - timedelta(days=1)).strftime("%Y-%m-%d")
        params["last"] = (last + timedelta(days=2)).strftime("%Y-%m-%d")
        opened = "strftime('%Y-%m-%d %H:%M:%S', r.datetime) || '.000000'"
        conn.execute(
            sa.text(
                f"INSERT OR IGNORE INTO {_PRICE_TABLE} "
                f"SELECT r.symbol, r.interval_minutes, {opened} AS opened, r.close "
                "FROM raw_market_data r WHERE r.interval_minutes = :interval "
                "AND typeof(r.datetime) = 'text' "
                "AND r.datetime >= :first AND r.datetime < :last AND opened IS NOT NULL "
                f"ORDER BY r.symbol, opened, {by_exchange}r.close"
            ),
            params,
        )
        return
    params.update(first=first, last=last)
    conn.execute(
        sa.text(
            f"CREATE TEMPORARY TABLE {_PRICE_TABLE} AS "
            "SELECT DISTINCT ON (r.symbol, r.datetime) "
            "r.symbol, r.interval_minutes, r.datetime, r.close "
            "FROM raw_market_data r WHERE r.interval_minutes = :interval "
            "AND r.datetime >= :first AND r.datetime <= :last "
            f"ORDER BY r.symbol, r.datetime, {by_exchange}r.close"
        ).bindparams(
            sa.bindparam("first", type_=UTCDateTime), sa.bindparam("last", type_=UTCDateTime)
        ),
        params,
    )
    conn.exec_driver_sql(
        f"ALTER TABLE {_PRICE_TABLE} ADD PRIMARY KEY (symbol, interval_minutes, datetime)"
    )
    conn.exec_driver_sql(f"ANALYZE {_PRICE_TABLE}")


def _candidate_span(
    conn: Connection, candidates: str, params: Mapping[str, Any]
) -> tuple[datetime, datetime] | None:
    statement = (
        sa.text(f"SELECT MIN(p.datetime), MAX(p.datetime) {candidates}")
        .bindparams(*_typed_binds(params))
        .columns(sa.column("first", UTCDateTime), sa.column("last", UTCDateTime))
    )
    first, last = conn.execute(statement, dict(params)).one()
    return None if first is None else (first, last)


# ---------------------------------------------------------------- the run


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
    Without ``since`` each symbol's run starts ``retry_window`` before that symbol's newest
    completed prediction (all its predictions when none is complete yet); rows missing an
    outcome before that are counted in ``outside_window`` and retried only when ``since``
    reaches them. ``limit`` caps how many pending predictions this run looks at. ``dry_run``
    counts without writing. When another backfill holds the lock, returns at once with status
    ``locked``.
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
        **{f"long_{h}": float(levels[h]) + RETURN_TOLERANCE for h in chosen},
        **{f"short_{h}": -float(levels[h]) - RETURN_TOLERANCE for h in chosen},
    }
    dialect = engine.dialect.name
    update = sa.text(_update_sql()).bindparams(sa.bindparam("now", type_=UTCDateTime))
    counts = sa.text(_counts_sql())

    with connection_errors(engine.url), engine.connect() as conn:
        _check_source(conn, source)
        conn.commit()
        with backfill_lock(engine, conn) as acquired:
            if not acquired:
                report.status = "locked"
                report.elapsed_s = time.perf_counter() - started
                return report
            windows = symbol_windows(conn, symbol, since, retry_window)
            report.scanned_since = _earliest(windows, since)
            _create_window_table(conn, windows)
            report.outside_window = _count_outside_windows(conn)
            candidates, params = _candidates_from(until)
            ids = _candidate_ids(conn, candidates, params, limit)
            report.candidates = len(ids)
            prices = source
            if ids and source == "raw_market_data":
                span = _candidate_span(conn, candidates, params)
                assert span is not None
                latest = max(HORIZON_DELTAS[h] for h in chosen)
                _create_price_table(
                    conn, interval_minutes, span[0] - 2 * candle_span, span[1] + latest
                )
                prices = _PRICE_TABLE
            conn.commit()
            step_params = {**params, **timing}
            select = _outcome_select(chosen, prices, interval_minutes, dialect, candidates)
            fill = sa.text(f"INSERT INTO {_OUTCOME_TABLE} {select}").bindparams(
                *_typed_binds(step_params)
            )
            if ids:
                _create_outcome_table(conn)
                conn.commit()
            work = conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
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
            for table in (_OUTCOME_TABLE, _PRICE_TABLE, _WINDOW_TABLE):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
            conn.commit()
    report.elapsed_s = time.perf_counter() - started
    return report


def _earliest(windows: Mapping[str, SymbolWindow], since: datetime | None) -> datetime | None:
    """The report's ``scanned_since``: ``since``, else None when some symbol is scanned from
    its first prediction (nothing complete yet), else the earliest window start."""
    if since is not None or not windows:
        return since
    if any(window.from_first for window in windows.values()):
        return None
    return min(window.start for window in windows.values())
