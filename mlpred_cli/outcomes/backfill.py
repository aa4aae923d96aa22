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

Which rows a run looks at. With ``since`` the rows from ``since`` on (to ``until``). Without
it, each symbol's pending rows (``actuals_filled_at`` null) that are

(a) inside its retry window: from ``BACKFILL_RETRY_WINDOW`` before its own newest completed
    prediction (from its first prediction when none is complete), by an index scan of
    (symbol, datetime) per symbol, so a symbol whose candles arrive late is still retried; or
(b) above its *examined id* (``ml_backfill_progress``), whatever their ``datetime``, by one
    range scan of the primary key: rows inserted late with old times (a journal replayed
    days later, rows a killed run had not reached while it had already completed newer
    ones) are always looked at, and cron runs stay cheap (no index may name an outcome
    column or ``actuals_filled_at``: outcome updates must stay HOT).

A symbol's examined id is the highest id such that every row of the symbol at or below it was
looked at by a run of every horizon while all its horizons were due: it is complete, or a
candle was missing (then it is retried in the retry window only, like any gap, and counted in
``outside_window`` once before it). It is raised only in the transaction that writes the
outcomes of the rows it passes (a killed or failed run keeps what it committed and nothing
else), never past the lowest row with a horizon not yet due (which (b) therefore finds again
when it is due, whatever its ``datetime``), and never past the id *frontier*: the highest id
with no lower id still being inserted (ids are taken in insert order, not commit order; see
``store/outcome_updates.py`` ``frontier``). Only runs without ``since``/``until``, of every
horizon, not ``dry_run`` raise it. Why ids and not a set of pending rows: the primary key
already orders every insert, so one number per symbol bounds what is new, costs one range
scan, and needs no index over outcome columns.

A symbol without an examined id is looked at from its first prediction; the first run on a
database with none at all (a new database, or the first run after migration 0003) looks at
every row once, and so also fills rows earlier versions had left outside their windows.
``outside_window`` counts, once the run is done, the rows still missing an outcome before their
symbol's window at or below its examined id: those no run without ``since`` will look at
again.

``raw_market_data`` (the original bot's table) is read through a per-run keyed copy of the
closes the run needs: duplicates of (symbol, interval, datetime), e.g. one row per exchange,
resolve to the first by exchange name, and on SQLite any ISO text form of ``datetime``
('YYYY-MM-DD HH:MM:SS', a 'T' separator, a fraction, '+00:00' or 'Z') is normalised.

This module decides what a run does and in what order; the SQL is in
``store/outcome_updates.py`` and the one-run-at-a-time lock in ``store/locks.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mlpred_cli.config import (
    BACKFILL_CHUNK_ROWS,
    BACKFILL_RETRY_WINDOW,
    DEFAULT_BACKFILL_INTERVAL,
    HORIZON_DELTAS,
    HORIZONS,
    check_horizons,
    direction_thresholds,
)
from mlpred_cli.errors import InputError
from mlpred_cli.outcomes.candle_files import parse_interval
from mlpred_cli.store.outcome_updates import (
    ProgressStep,
    SymbolTimes,
    Window,
    backfill_session,
    outcome_statements,
)
from mlpred_cli.store.partitions import keep_partitions
from mlpred_cli.store.source import DatabaseSource, opened

#: Returns within this of a threshold count as on it (NEUTRAL): 100.15 / 100 - 1 is
#: 0.0015000000000000568 in binary floating point, which must not make a +0.15 % move LONG.
RETURN_TOLERANCE = 1e-12

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
    outside_window: int = 0  # rows missing an outcome that no run without since looks at again
    rows_updated: int = 0
    chunks: int = 0
    elapsed_s: float = 0.0
    rollup_s: float = 0.0  # of elapsed_s, the time spent keeping the daily rollups current
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
            "rollup_s": round(self.rollup_s, 3),
            "horizons": [vars(counts) for counts in self.horizons],
        }


@dataclass(frozen=True)
class SymbolWindow:
    """Where a run starts for one symbol: ``start`` (aware UTC) and whether that is simply its
    first prediction because none of its predictions is complete yet."""

    start: datetime
    from_first: bool


def symbol_windows(
    times: Sequence[SymbolTimes],
    symbol: str | None,
    since: datetime | None,
    retry_window: timedelta,
) -> dict[str, SymbolWindow]:
    """Per symbol (only ``symbol`` when given), the earliest prediction time a run looks at.

    ``since`` when given; else ``retry_window`` before the symbol's own newest completed
    prediction, or its first prediction when none is complete yet.
    """
    windows: dict[str, SymbolWindow] = {}
    for entry in times:
        if symbol and entry.symbol != symbol:
            continue
        if since is not None:
            windows[entry.symbol] = SymbolWindow(since, from_first=False)
        elif entry.newest_completed is not None:
            windows[entry.symbol] = SymbolWindow(
                entry.newest_completed - retry_window, from_first=False
            )
        else:
            windows[entry.symbol] = SymbolWindow(entry.first_logged, from_first=True)
    return windows


def scan_plan(
    times: Sequence[SymbolTimes],
    windows: Mapping[str, SymbolWindow],
    examined: Mapping[str, int],
    since: datetime | None,
) -> dict[str, Window]:
    """Per symbol of ``windows``, what a run lists (module docstring, "Which rows")."""
    first_logged = {entry.symbol: entry.first_logged for entry in times}
    plan: dict[str, Window] = {}
    for name, window in windows.items():
        known = examined.get(name)
        if since is not None:
            plan[name] = Window(window.start, known or 0, scan_window=True, scan_ids=False)
        elif not examined:  # nothing examined anywhere yet: one range scan of every id
            plan[name] = Window(window.start, 0, scan_window=False, scan_ids=True)
        elif known is None:  # a symbol new to the backfill: all of its rows by its index
            plan[name] = Window(first_logged[name], 0, scan_window=True, scan_ids=False)
        else:
            plan[name] = Window(window.start, known, scan_window=True, scan_ids=True)
    return plan


@dataclass
class ExaminedIds:
    """The examined ids a run may record as its chunks commit (module docstring).

    ``examined`` holds each symbol's examined id at the start of the run (0: none); every row
    of the run's symbols above it and up to ``frontier`` that is still pending is among the
    run's candidates.
    """

    examined: dict[str, int]
    frontier: int
    first_not_due: dict[str, int] = field(default_factory=dict)

    def step(self, reach: int) -> ProgressStep:
        """The progress step of a chunk after which every candidate up to ``reach`` has been
        looked at."""

        def record(first_not_due: Mapping[str, int]) -> dict[str, int]:
            for name, first in first_not_due.items():
                self.first_not_due[name] = min(first, self.first_not_due.get(name, first))
            raised: dict[str, int] = {}
            for name, current in self.examined.items():
                target = min(reach, self.frontier, self.first_not_due.get(name, reach + 1) - 1)
                if target > current:
                    raised[name] = self.examined[name] = target
            return raised

        return record


#: The largest ``limit`` a run takes (larger ones would not fit the databases' integers).
MAX_BACKFILL_LIMIT = 1_000_000_000_000


def backfill_actuals(
    database: DatabaseSource = None,
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

    ``database`` is a URL, a SQLite ``Path`` or an ``Engine`` (None: the configured
    database); it must be migrated. ``source`` is the price table, ``market_candles`` or
    ``raw_market_data``. Only null outcome columns are written (idempotent; a rerun with
    nothing new writes nothing). ``since``/``until`` bound the prediction ``datetime`` (aware
    UTC; naive taken as UTC). Without ``since`` a run looks at each symbol's pending rows
    from ``retry_window`` before that symbol's newest completed prediction (all its
    predictions when none is complete yet) and at every row inserted since earlier runs
    examined the symbol, whatever its ``datetime``; rows still missing an outcome before the
    window that were already examined are counted in ``outside_window`` and retried only
    when ``since`` reaches them. ``horizons`` (default all) are filled in schema order.
    ``limit`` caps how many pending predictions this run looks at. ``dry_run`` counts
    without writing. When another backfill holds the lock, returns at once with status
    ``locked``.
    """
    started = time.perf_counter()
    chosen = list(check_horizons(horizons))
    interval_minutes = parse_interval(interval)
    if limit is not None and limit < 1:
        raise InputError("limit must be a positive number of predictions")
    if limit is not None and limit > MAX_BACKFILL_LIMIT:
        raise InputError(f"limit must be at most {MAX_BACKFILL_LIMIT} predictions")
    if chunk_rows < 1:
        raise InputError("chunk_rows must be a positive number of predictions")
    levels = direction_thresholds(thresholds)
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
    if since is not None and until is not None and since > until:
        raise InputError(
            f"since ({since.isoformat()}) is after until ({until.isoformat()}): no prediction "
            "is in between"
        )
    candle_span = timedelta(minutes=interval_minutes)
    # Only a run that looks at every pending row of its symbols, at every horizon, may say
    # which rows are examined.
    records = since is None and until is None and not dry_run and set(chosen) == set(HORIZONS)

    with opened(database) as engine, backfill_session(engine) as session:
        if not dry_run:  # partitioned storage: the coming days' partitions (best effort)
            keep_partitions(engine, now=moment)
        session.check_source(source)
        with session.lock() as acquired:
            if not acquired:
                report.status = "locked"
                report.elapsed_s = time.perf_counter() - started
                return report
            times = session.symbol_times()
            examined = session.examined_ids()
            windows = symbol_windows(times, symbol, since, retry_window)
            plan = scan_plan(times, windows, examined, since)
            report.scanned_since = _earliest(windows, plan, since)
            session.create_windows(plan)
            frontier = session.frontier() if records else None
            lowest = min((w.examined for w in plan.values() if w.scan_ids), default=None)
            ids = session.list_candidates(until, limit, lowest)
            report.candidates = len(ids)
            span = session.candidate_span() if ids and source == "raw_market_data" else None
            prices = source
            if span is not None:
                latest = max(HORIZON_DELTAS[h] for h in chosen)
                prices = session.copy_raw_prices(
                    interval_minutes, span[0] - 2 * candle_span, span[1] + latest
                )
            session.commit()
            statements = outcome_statements(
                session.dialect,
                horizons=chosen,
                prices=prices,
                interval_minutes=interval_minutes,
                due_by={h: moment - HORIZON_DELTAS[h] - candle_span for h in chosen},
                long_above={h: float(levels[h]) + RETURN_TOLERANCE for h in chosen},
                short_below={h: -float(levels[h]) - RETURN_TOLERANCE for h in chosen},
                now=moment,
            )
            tracker = None
            if frontier is not None:
                tracker = ExaminedIds({name: w.examined for name, w in plan.items()}, frontier)
            # with a limit, rows above the last candidate may not have been looked at
            complete = limit is None or len(ids) < limit
            session.start_chunks(outcome_table=bool(ids))
            for start in range(0, len(ids), chunk_rows):
                chunk = ids[start : start + chunk_rows]
                last = start + chunk_rows >= len(ids)
                step = None
                if tracker is not None:
                    step = tracker.step(tracker.frontier if last and complete else chunk[-1])
                outcome = session.fill_chunk(
                    statements, chunk[0], chunk[-1], write=not dry_run, progress=step, last=last
                )
                for entry in report.horizons:
                    filled, pending, missing = outcome.counts[entry.horizon]
                    entry.filled += filled
                    entry.pending += pending
                    entry.missing += missing
                report.rows_updated += outcome.rows_updated
                report.chunks += 1
                if progress is not None:
                    progress(start + len(chunk), len(ids))
            if tracker is not None and not ids:
                session.record_progress(tracker.step(tracker.frontier)({}), moment)
            report.outside_window = session.count_outside_windows()
            session.finish(None if dry_run else moment)  # a dry run writes nothing
            report.rollup_s = session.rollup_seconds
    report.elapsed_s = time.perf_counter() - started
    return report


def _earliest(
    windows: Mapping[str, SymbolWindow],
    plan: Mapping[str, Window],
    since: datetime | None,
) -> datetime | None:
    """The report's ``scanned_since``: ``since``, else None when some symbol is scanned from
    its first prediction (nothing complete yet, or new to the backfill), else the earliest
    window start."""
    if since is not None or not windows:
        return since
    from_first = any(window.from_first for window in windows.values())
    # a symbol new to the backfill is listed from its first prediction, and the first run of
    # all through every id
    widened = any(
        not entry.scan_window or entry.start != windows[name].start for name, entry in plan.items()
    )
    if from_first or widened:
        return None
    return min(window.start for window in windows.values())
