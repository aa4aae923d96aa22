"""The SQL of the backfill of actual outcomes (``outcomes/backfill.py`` decides what to run).

A run uses one connection (``backfill_session``; READ COMMITTED on PostgreSQL) through these
steps, in this order: ``check_source`` (committed), the lock, then one transaction that reads
each symbol's times (``symbol_times``) and how far earlier runs examined it
(``examined_ids``), fills the temporary window table (``create_windows``), reads the id
``frontier``, lists the candidates into a temporary table (``list_candidates``) and, for
``raw_market_data``, copies the closes the run needs into a keyed temporary table;
``commit``; ``start_chunks`` (the temporary outcome table, committed); then one transaction
per chunk (``fill_chunk``: outcomes computed into the outcome table, counted, applied with
one ``UPDATE ... FROM``, and the symbols' examined ids advanced in ``ml_backfill_progress``);
``record_progress`` when there was no chunk; ``count_outside_windows`` (a read transaction,
after the run has raised the examined ids); ``finish`` drops the temporary tables.

Candidates are the pending rows (``actuals_filled_at`` null) of each symbol that are inside its
``datetime`` window (an index scan of (symbol, datetime) per symbol: a LATERAL subquery on
PostgreSQL, whose planner otherwise prices the join with an unknown window start as a
sequential scan of the whole table) or above its examined id (one range scan of the primary
key from the lowest examined id). No index names an outcome column.

The reference time, entry price, due-ness and direction rules are described in the docstring
of ``outcomes/backfill.py``; here they are written as SQL for each backend.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlpred_cli.config import HORIZON_DELTAS, HORIZONS
from mlpred_cli.errors import InputError
from mlpred_cli.store import rollups
from mlpred_cli.store.column_types import UTCDateTime
from mlpred_cli.store.database import SQLITE_BEGIN_OPTION, is_sqlite
from mlpred_cli.store.driver_errors import database_errors
from mlpred_cli.store.id_frontier import FRONTIER_WAIT_S, visible_frontier
from mlpred_cli.store.locks import backfill_lock
from mlpred_cli.store.rollup_deltas import RollupDelta
from mlpred_cli.store.rollup_tiers import advance_tiers
from mlpred_cli.store.rollups import (
    NEW_ROWS,
    RowSource,
    advance,
    complete_through,
    refresh_keys,
    set_watermark,
)

#: Whether the backfill updates the rollups by deltas of the rows it changed
#: (``store.rollup_deltas``) rather than recomputing every touched key from its rows; the
#: two give the same rows (``tests/test_rollups.py``), ``bench/bench_scale.py`` times both.
ROLLUP_DELTAS = True

#: Tables the backfill can read closes from (same columns: symbol, interval_minutes, datetime,
#: close).
PRICE_SOURCES: tuple[str, ...] = ("market_candles", "raw_market_data")

_WINDOW_TABLE = "backfill_windows"
_CANDIDATE_TABLE = "backfill_candidates"
_PRICE_TABLE = "backfill_prices"
_OUTCOME_TABLE = "backfill_outcomes"
_PROGRESS_TABLE = "ml_backfill_progress"


# ---------------------------------------------------------------- SQL text


def _usable_price(expression: str, dialect: str) -> str:
    """SQL true when a price is a positive finite number (PostgreSQL has 'NaN' > 0 true)."""
    infinity = "'Infinity'::float8" if dialect == "postgresql" else "9e999"
    return f"({expression} > 0 AND {expression} < {infinity})"


def _sqlite_time(seconds_sql: str) -> str:
    """SQLite text of an epoch-seconds expression in the stored format."""
    return f"strftime('%Y-%m-%d %H:%M:%S', {seconds_sql}, 'unixepoch') || '.000000'"


def _reference_time(interval_minutes: int, dialect: str) -> str:
    """SQL for a row's reference time t, in the stored format: ``datetime`` when the row
    has a usable ``close_price`` or is on an interval boundary, else the open time of the
    last candle closed at ``datetime``."""
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


def _until_filter(until: datetime | None) -> tuple[str, dict[str, Any]]:
    """The optional ``p.datetime <= :until`` condition and its parameter."""
    if until is None:
        return "", {}
    return " AND p.datetime <= :until", {"until": until}


def _candidate_select(dialect: str, lowest_examined: int | None, until: datetime | None) -> str:
    """SELECT (id, symbol) of the pending rows inside their symbol's window (windows with
    ``scan_window``) or above its examined id (windows with ``scan_ids``; ``lowest_examined``
    is the lowest of those, None when no window has ``scan_ids``)."""
    after, _ = _until_filter(until)
    pending = f"p.actuals_filled_at IS NULL{after}"
    if dialect == "postgresql":
        # OFFSET 0 keeps the subquery apart, so each symbol's window is an index scan
        in_window = (
            f"SELECT c.id, w.symbol, c.datetime FROM {_WINDOW_TABLE} w CROSS JOIN LATERAL "
            "(SELECT p.id, p.datetime FROM ml_predictions p WHERE p.symbol = w.symbol "
            f"AND p.datetime >= w.start AND {pending} OFFSET 0) c WHERE w.scan_window = 1"
        )
    else:
        # CROSS JOIN fixes SQLite's join order: windows outside, the (symbol, datetime) index
        in_window = (
            f"SELECT p.id, p.symbol, p.datetime FROM {_WINDOW_TABLE} w "
            "CROSS JOIN ml_predictions p "
            f"WHERE p.symbol = w.symbol AND p.datetime >= w.start AND w.scan_window = 1 "
            f"AND {pending}"
        )
    if lowest_examined is None:
        return in_window
    # On SQLite CROSS JOIN keeps the id range of ml_predictions outside, windows by key. Rows
    # the first part lists are left out, so the parts are disjoint (UNION ALL, no sort).
    above = (
        f"SELECT p.id, p.symbol, p.datetime FROM ml_predictions p CROSS JOIN {_WINDOW_TABLE} w "
        f"WHERE p.id > {int(lowest_examined)} AND p.symbol = w.symbol AND w.scan_ids = 1 "
        f"AND p.id > w.examined AND {pending} "
        "AND NOT (w.scan_window = 1 AND p.datetime >= w.start)"
    )
    return f"{in_window} UNION ALL {above}"


def _outcome_select(
    horizons: Sequence[str], source: str, interval_minutes: int, dialect: str
) -> str:
    """SELECT of (id, symbol, due_h, r_h, dir_h) for the chunk's candidate rows.

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
    inner = ["q.id", "q.symbol"]
    outer = ["id", "symbol"]
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
        # The id range on both tables lets PostgreSQL pick a range scan of the primary key
        # (not a scan of the whole table) or a look-up per candidate; CROSS JOIN makes SQLite
        # read the candidates and look each row up, rather than every row in the range.
        # The chunk's datetime range prunes a partitioned table to the partitions it touches.
        f"FROM {_CANDIDATE_TABLE} k CROSS JOIN ml_predictions p WHERE p.id = k.id "
        "AND p.datetime = k.datetime AND p.datetime >= :dt_lo AND p.datetime <= :dt_hi "
        "AND k.id >= :lo AND k.id <= :hi AND p.id >= :lo AND p.id <= :hi "
        "AND p.actuals_filled_at IS NULL"
    )
    return (
        f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} "
        f"FROM ({rows}) q {' '.join(joins)}) AS computed"
    )


def _counts_sql() -> str:
    parts = []
    for horizon in HORIZONS:
        parts += [
            f"COUNT(r_{horizon})",
            f"SUM(CASE WHEN due_{horizon} = 0 THEN 1 ELSE 0 END)",
            f"SUM(CASE WHEN due_{horizon} = 1 AND r_{horizon} IS NULL THEN 1 ELSE 0 END)",
        ]
    return f"SELECT {', '.join(parts)} FROM {_OUTCOME_TABLE}"


def _first_not_due_sql() -> str:
    """Per symbol, the lowest id of the chunk above the symbol's examined id (at the start of
    the run) with a horizon not due yet."""
    not_due = " OR ".join(f"o.due_{horizon} = 0" for horizon in HORIZONS)
    return (
        f"SELECT o.symbol, MIN(o.id) FROM {_OUTCOME_TABLE} o JOIN {_WINDOW_TABLE} w "
        f"ON w.symbol = o.symbol WHERE o.id > w.examined AND ({not_due}) GROUP BY o.symbol"
    )


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
        "AND ml_predictions.datetime >= :dt_lo AND ml_predictions.datetime <= :dt_hi "
        f"AND ({any_new})"
    )


def _chunk_span_binds() -> list[sa.BindParameter[Any]]:
    """The chunk's first and last candidate ``datetime`` (``dt_lo`` / ``dt_hi``)."""
    return [sa.bindparam("dt_lo", type_=UTCDateTime), sa.bindparam("dt_hi", type_=UTCDateTime)]


def _typed_binds(params: Mapping[str, Any]) -> list[sa.BindParameter[Any]]:
    return [
        sa.bindparam(name, type_=UTCDateTime)
        for name, value in params.items()
        if isinstance(value, datetime)
    ]


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


# ---------------------------------------------------------------- a run's statements


@dataclass(frozen=True)
class SymbolTimes:
    """One symbol's newest prediction with every outcome filled (None: none yet) and its
    first prediction, both aware UTC."""

    symbol: str
    newest_completed: datetime | None
    first_logged: datetime


@dataclass(frozen=True)
class ChunkOutcome:
    """What one chunk found per horizon of ``HORIZONS``: (filled, pending, missing), and the
    rows it updated (0 when it did not write)."""

    counts: dict[str, tuple[int, int, int]]
    rows_updated: int


@dataclass(frozen=True)
class Window:
    """Which of one symbol's rows a run lists: those from ``start`` on (when ``scan_window``)
    and those above ``examined`` (when ``scan_ids``)."""

    start: datetime
    examined: int
    scan_window: bool
    scan_ids: bool


#: Called inside a chunk's transaction with the chunk's lowest id per symbol that has a
#: horizon not due yet; returns the examined id to record per symbol in that transaction.
ProgressStep = Callable[[Mapping[str, int]], Mapping[str, int]]


@dataclass(frozen=True)
class OutcomeStatements:
    """The per-chunk statements of a run and their parameters (all but ``lo`` / ``hi``)."""

    fill: sa.TextClause
    fill_params: dict[str, Any]
    counts: sa.TextClause
    update: sa.TextClause
    now: datetime


def outcome_statements(
    dialect: str,
    *,
    horizons: Sequence[str],
    prices: str,
    interval_minutes: int,
    due_by: Mapping[str, datetime],
    long_above: Mapping[str, float],
    short_below: Mapping[str, float],
    now: datetime,
) -> OutcomeStatements:
    """The statements of a run's chunks. A horizon in ``horizons`` is due when the row's
    reference time is at or before ``due_by[h]``; a return above ``long_above[h]`` is LONG,
    below ``short_below[h]`` SHORT, else NEUTRAL. Closes come from the table ``prices``;
    ``now`` stamps ``updated_at`` and ``actuals_filled_at``."""
    fill_params: dict[str, Any] = {
        "interval": interval_minutes,
        **{f"due_{h}": due_by[h] for h in horizons},
        **{f"long_{h}": long_above[h] for h in horizons},
        **{f"short_{h}": short_below[h] for h in horizons},
    }
    select = _outcome_select(horizons, prices, interval_minutes, dialect)
    return OutcomeStatements(
        fill=sa.text(f"INSERT INTO {_OUTCOME_TABLE} {select}").bindparams(
            *_typed_binds(fill_params), *_chunk_span_binds()
        ),
        fill_params=fill_params,
        counts=sa.text(_counts_sql()),
        update=sa.text(_update_sql()).bindparams(
            sa.bindparam("now", type_=UTCDateTime), *_chunk_span_binds()
        ),
        now=now,
    )


# ---------------------------------------------------------------- the session


class BackfillSession:
    """The one connection of a backfill run; each method is one step of the module docstring."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._frontier: int | None = None
        #: Seconds spent keeping the daily rollups current (refreshes and the advance).
        self.rollup_seconds = 0.0

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return str(self._conn.dialect.name)

    def commit(self) -> None:
        """Commit the transaction in progress."""
        self._conn.commit()

    def check_source(self, source: str) -> None:
        """Raise ``InputError`` unless ``source`` is a price table this database has; commits."""
        if source not in PRICE_SOURCES:
            raise InputError(f"unknown source '{source}': use {' or '.join(PRICE_SOURCES)}")
        if not sa.inspect(self._conn).has_table(source):
            raise InputError(f"source table {source} does not exist in this database")
        self._conn.commit()

    def lock(self) -> contextlib.AbstractContextManager[bool]:
        """``store.locks.backfill_lock`` on this connection: yields False when another
        backfill runs."""
        return backfill_lock(self._conn.engine, self._conn)

    def symbol_times(self) -> list[SymbolTimes]:
        """Every symbol with its newest completed and first prediction times (starts the
        scan transaction; PostgreSQL's JIT is off for it)."""
        statement = sa.text(_SYMBOL_TIMES).columns(
            sa.column("symbol", sa.String),
            sa.column("newest_completed", UTCDateTime),
            sa.column("first_logged", UTCDateTime),
        )
        if not is_sqlite(self._conn):
            # JIT compiling is priced for the fallback's worst case and costs more than the scans
            self._conn.exec_driver_sql("SET LOCAL jit = off")
        return [
            SymbolTimes(name, newest, first)
            for name, newest, first in self._conn.execute(statement)
        ]

    def examined_ids(self) -> dict[str, int]:
        """Per symbol, the id up to which earlier runs examined its rows (``ml_backfill_progress``;
        a symbol never examined is absent)."""
        rows = self._conn.execute(
            sa.text(f"SELECT symbol, examined_id FROM {_PROGRESS_TABLE}")
        ).all()
        return {str(symbol): int(examined) for symbol, examined in rows}

    def create_windows(self, windows: Mapping[str, Window]) -> None:
        """The temporary table of what the run lists for each symbol."""
        conn = self._conn
        start_type = "TEXT" if is_sqlite(conn) else "TIMESTAMPTZ"
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_WINDOW_TABLE}")
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {_WINDOW_TABLE} (symbol VARCHAR(20) PRIMARY KEY, "
            f"start {start_type} NOT NULL, examined BIGINT NOT NULL, "
            "scan_window INTEGER NOT NULL, scan_ids INTEGER NOT NULL)"
        )
        if windows:
            insert = sa.text(
                f"INSERT INTO {_WINDOW_TABLE} VALUES (:symbol, :start, :examined, :scan_window, "
                ":scan_ids)"
            ).bindparams(sa.bindparam("start", type_=UTCDateTime))
            conn.execute(
                insert,
                [
                    {
                        "symbol": symbol,
                        "start": window.start,
                        "examined": window.examined,
                        "scan_window": int(window.scan_window),
                        "scan_ids": int(window.scan_ids),
                    }
                    for symbol, window in windows.items()
                ],
            )
        if not is_sqlite(conn):
            conn.exec_driver_sql(f"ANALYZE {_WINDOW_TABLE}")

    def count_outside_windows(self) -> int:
        """Predictions still missing an outcome that lie before their symbol's window at or
        below its examined id: the rows no run without ``since`` will look at again. Its own
        read transaction (DEFERRED on SQLite, so writers are not held up), committed."""
        conn = self._conn
        conn.execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"})
        # The examined ids as the run left them, copied into the windows: joined to the
        # progress table instead, PostgreSQL walks each symbol's index over the whole heap.
        conn.exec_driver_sql(
            f"UPDATE {_WINDOW_TABLE} SET examined = COALESCE((SELECT g.examined_id "
            f"FROM {_PROGRESS_TABLE} g WHERE g.symbol = {_WINDOW_TABLE}.symbol), 0)"
        )
        if not is_sqlite(conn):
            conn.exec_driver_sql(f"ANALYZE {_WINDOW_TABLE}")
        count = conn.exec_driver_sql(
            f"SELECT COUNT(*) FROM {_WINDOW_TABLE} w JOIN ml_predictions p "
            "ON p.symbol = w.symbol AND p.datetime < w.start "
            "WHERE p.id <= w.examined AND p.actuals_filled_at IS NULL"
        ).scalar_one()
        conn.commit()
        return int(count)

    def frontier(self, wait_s: float = FRONTIER_WAIT_S) -> int | None:
        """``store.id_frontier.visible_frontier`` on this connection (remembered: ``finish``
        raises the rollups' watermark to it)."""
        self._frontier = visible_frontier(self._conn, wait_s)
        return self._frontier

    def list_candidates(
        self,
        until: datetime | None,
        limit: int | None,
        lowest_examined: int | None,
    ) -> list[int]:
        """Fill the temporary candidate table with the pending rows the windows select (up to
        ``until``; the ``limit`` lowest ids) and return their ids, ascending.
        ``lowest_examined`` is the lowest ``examined`` of the windows with ``scan_ids``."""
        conn = self._conn
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_CANDIDATE_TABLE}")
        time_type = "TEXT" if is_sqlite(conn) else "TIMESTAMPTZ"
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {_CANDIDATE_TABLE} "
            f"(id BIGINT PRIMARY KEY, symbol VARCHAR(20) NOT NULL, datetime {time_type} NOT NULL)"
        )
        _, params = _until_filter(until)
        select = _candidate_select(self.dialect, lowest_examined, until)
        sql = f"INSERT INTO {_CANDIDATE_TABLE} SELECT id, symbol, datetime FROM ({select}) u"
        if limit is not None:
            sql += f" ORDER BY id LIMIT {int(limit)}"
        conn.execute(sa.text(sql).bindparams(*_typed_binds(params)), params)
        if not is_sqlite(conn):
            conn.exec_driver_sql(f"ANALYZE {_CANDIDATE_TABLE}")
        ids = conn.exec_driver_sql(f"SELECT id FROM {_CANDIDATE_TABLE} ORDER BY id")
        return [int(row[0]) for row in ids]

    def candidate_span(self) -> tuple[datetime, datetime] | None:
        """The first and last ``datetime`` of the candidate rows, None when there are none."""
        statement = sa.text(
            f"SELECT MIN(k.datetime), MAX(k.datetime) FROM {_CANDIDATE_TABLE} k"
        ).columns(sa.column("first", UTCDateTime), sa.column("last", UTCDateTime))
        first, last = self._conn.execute(statement).one()
        return None if first is None else (first, last)

    def copy_raw_prices(self, interval_minutes: int, first: datetime, last: datetime) -> str:
        """Copy the ``raw_market_data`` closes between ``first`` and ``last`` into a keyed
        temporary table; returns its name, to read closes from.

        One close per (symbol, open time): duplicates (one row per exchange) resolve to the
        first by exchange name, then the lowest close. On SQLite the open time is normalised to
        the stored format, so 'YYYY-MM-DD HH:MM:SS', a 'T' separator, a fraction and a UTC
        offset or 'Z' all match (the text is read by SQLite's date functions; numbers are not
        times).
        """
        conn = self._conn
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
            return _PRICE_TABLE
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
        return _PRICE_TABLE

    def start_chunks(self, *, outcome_table: bool) -> None:
        """Create the temporary outcome table (when ``outcome_table``) and commit; from here
        on SQLite transactions begin IMMEDIATE (each chunk writes)."""
        if outcome_table:
            columns = ["id BIGINT PRIMARY KEY", "symbol VARCHAR(20) NOT NULL"]
            for horizon in HORIZONS:
                columns += [
                    f"due_{horizon} INTEGER",
                    f"r_{horizon} DOUBLE PRECISION",
                    f"dir_{horizon} VARCHAR(10)",
                ]
            self._conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_OUTCOME_TABLE}")
            self._conn.exec_driver_sql(
                f"CREATE TEMPORARY TABLE {_OUTCOME_TABLE} ({', '.join(columns)})"
            )
            self._conn.commit()
        self._conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})

    def fill_chunk(
        self,
        statements: OutcomeStatements,
        lo: int,
        hi: int,
        *,
        write: bool,
        progress: ProgressStep | None = None,
        last: bool = False,
    ) -> ChunkOutcome:
        """One transaction: the outcomes of the candidates with ids in [lo, hi] computed into
        the outcome table, counted and (when ``write``) applied to ``ml_predictions``; then
        ``progress`` (when given) says which examined ids to record in the same transaction."""
        work = self._conn
        rows_updated = 0
        with work.begin():
            span = work.execute(
                sa.text(
                    f"SELECT MIN(datetime), MAX(datetime) FROM {_CANDIDATE_TABLE} "
                    "WHERE id >= :lo AND id <= :hi"
                ).columns(sa.column("first", UTCDateTime), sa.column("last", UTCDateTime)),
                {"lo": lo, "hi": hi},
            ).one()
            bounds = {"lo": lo, "hi": hi, "dt_lo": span[0], "dt_hi": span[1]}
            work.exec_driver_sql(f"DELETE FROM {_OUTCOME_TABLE}")
            work.execute(statements.fill, {**statements.fill_params, **bounds})
            if work.dialect.name == "postgresql":
                work.exec_driver_sql(f"ANALYZE {_OUTCOME_TABLE}")
            row = work.execute(statements.counts).one()
            if write:
                chunk_times = {"dt_lo": span[0], "dt_hi": span[1]}
                delta = self._rollups_before_update(chunk_times)
                rows_updated = work.execute(
                    statements.update, {"now": statements.now, **bounds}
                ).rowcount
                if rows_updated:
                    self._refresh_rollups(last, delta, chunk_times)
                elif delta is not None:
                    delta.discard()
            if progress is not None:
                first_not_due = {
                    str(symbol): int(first)
                    for symbol, first in work.exec_driver_sql(_first_not_due_sql())
                }
                self._record(progress(first_not_due), statements.now)
        counts = {
            horizon: (
                int(row[3 * index] or 0),
                int(row[3 * index + 1] or 0),
                int(row[3 * index + 2] or 0),
            )
            for index, horizon in enumerate(HORIZONS)
        }
        return ChunkOutcome(counts, rows_updated)

    def _updated_rows(self, in_span: bool = False) -> RowSource:
        """The chunk's rows at or below the rollups' watermark (``:low``) getting an outcome;
        ``in_span``: also within the chunk's datetimes (``:dt_lo`` to ``:dt_hi``), which prunes
        a partitioned table to the chunk's partitions instead of probing every one by id."""
        any_new = " OR ".join(f"o.r_{horizon} IS NOT NULL" for horizon in HORIZONS)
        span = " AND p.datetime >= :dt_lo AND p.datetime <= :dt_hi" if in_span else ""
        return (
            f"{_OUTCOME_TABLE} o CROSS JOIN ml_predictions p",
            f"p.id = o.id AND o.id <= :low AND ({any_new}){span}",
        )

    def _rollups_before_update(self, span: dict[str, Any]) -> RollupDelta | None:
        """Before the chunk's UPDATE, when ``ROLLUP_DELTAS``: the rollup sums its rows had,
        with sign -1 (None while the rollups were never built)."""
        if not ROLLUP_DELTAS:
            return None
        started = time.perf_counter()
        through = complete_through(self._conn)
        if through is None:
            return None
        delta = RollupDelta(self._conn)
        changes = {horizon: f"o.r_{horizon} IS NOT NULL" for horizon in HORIZONS}
        delta.take_before(self._updated_rows(in_span=True), {"low": through, **span}, changes)
        self.rollup_seconds += time.perf_counter() - started
        return delta

    def _refresh_rollups(self, last: bool, delta: RollupDelta | None, span: dict[str, Any]) -> None:
        """Bring the rollups up to date with the chunk's outcomes, in its transaction (rows
        above the rollups' watermark are not in them yet). The ``last`` chunk of a run that
        read an id frontier also takes in the rows up to it and raises the watermark, so a
        day's keys are updated once per run, not twice (``finish`` does it otherwise).
        With ``delta`` (the sums before the UPDATE) the changed rows' sums are added
        (``store.rollup_deltas``); without it, or above ``REFRESH_BY_DAY_KEYS`` keys, the
        touched keys are recomputed from their rows."""
        started = time.perf_counter()
        through = complete_through(self._conn)
        if through is None:
            if delta is not None:
                delta.discard()
            return
        updated = self._updated_rows()
        frontier = self._frontier
        take_in = last and frontier is not None and frontier > through
        high = frontier if take_in and frontier is not None else through
        params = {"low": through, "high": high}
        sources = [updated, NEW_ROWS] if take_in else [updated]
        if delta is not None:
            delta.take_after(span)
            if take_in:
                delta.take_new(NEW_ROWS, params)
            if delta.keys() <= rollups.REFRESH_BY_DAY_KEYS:  # read at call time
                delta.apply(high)
            else:
                delta.discard()
                refresh_keys(self._conn, sources, params, high)
        else:
            refresh_keys(self._conn, sources, params, high)
        if take_in:
            set_watermark(self._conn, high, datetime.now(UTC))
            self._frontier = None  # taken in: nothing left for ``finish``
        self.rollup_seconds += time.perf_counter() - started

    def record_progress(self, examined: Mapping[str, int], now: datetime) -> None:
        """Record examined ids in their own transaction (a run without chunks)."""
        with self._conn.begin():
            self._record(examined, now)

    def _record(self, examined: Mapping[str, int], now: datetime) -> None:
        """Raise each symbol's examined id to the one given (never lower it)."""
        if not examined:
            return
        statement = sa.text(
            f"INSERT INTO {_PROGRESS_TABLE} (symbol, examined_id, updated_at) "
            "VALUES (:symbol, :examined, :now) ON CONFLICT (symbol) DO UPDATE "
            "SET examined_id = excluded.examined_id, updated_at = excluded.updated_at "
            f"WHERE {_PROGRESS_TABLE}.examined_id < excluded.examined_id"
        ).bindparams(sa.bindparam("now", type_=UTCDateTime))
        self._conn.execute(
            statement,
            [{"symbol": s, "examined": int(i), "now": now} for s, i in examined.items()],
        )

    def finish(self, now: datetime | None) -> None:
        """Raise the rollups' watermark to the run's id frontier (when it read one) and, with
        ``now``, the tiers' boundary (``store.rollup_tiers``); drop the run's temporary tables
        and commit."""
        if self._frontier is not None or now is not None:
            started = time.perf_counter()
            with self._conn.begin():
                if self._frontier is not None:
                    advance(self._conn, self._frontier, datetime.now(UTC))
                if now is not None:
                    advance_tiers(self._conn, now)
            self.rollup_seconds += time.perf_counter() - started
        for table in (_OUTCOME_TABLE, _CANDIDATE_TABLE, _PRICE_TABLE, _WINDOW_TABLE):
            self._conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        self._conn.commit()


@contextlib.contextmanager
def backfill_session(engine: Engine) -> Iterator[BackfillSession]:
    """A connection for one backfill run, driver errors raised as mlpred errors."""
    with database_errors(engine.url), engine.connect() as conn:
        if not is_sqlite(conn):
            # ``frontier`` relies on each statement seeing what committed before it started
            conn = conn.execution_options(isolation_level="READ COMMITTED")
        yield BackfillSession(conn)
