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
    check_horizons,
    direction_thresholds,
)
from mlpred_cli.errors import InputError
from mlpred_cli.outcomes.candle_files import parse_interval
from mlpred_cli.store.outcome_updates import (
    SymbolTimes,
    backfill_session,
    outcome_statements,
)
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
    UTC; naive taken as UTC). Without ``since`` each symbol's run starts ``retry_window``
    before that symbol's newest completed prediction (all its predictions when none is
    complete yet); rows missing an outcome before that are counted in ``outside_window`` and
    retried only when ``since`` reaches them. ``horizons`` (default all) are filled in schema
    order. ``limit`` caps how many pending predictions this run looks at. ``dry_run`` counts
    without writing. When another backfill holds the lock, returns at once with status
    ``locked``.
    """
    started = time.perf_counter()
    chosen = list(check_horizons(horizons))
    interval_minutes = parse_interval(interval)
    if limit is not None and limit < 1:
        raise InputError("limit must be a positive number of predictions")
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
    candle_span = timedelta(minutes=interval_minutes)

    with opened(database) as engine, backfill_session(engine) as session:
        session.check_source(source)
        with session.lock() as acquired:
            if not acquired:
                report.status = "locked"
                report.elapsed_s = time.perf_counter() - started
                return report
            windows = symbol_windows(session.symbol_times(), symbol, since, retry_window)
            report.scanned_since = _earliest(windows, since)
            session.create_windows({name: window.start for name, window in windows.items()})
            report.outside_window = session.count_outside_windows()
            ids = session.candidate_ids(until, limit)
            report.candidates = len(ids)
            span = session.candidate_span(until) if ids and source == "raw_market_data" else None
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
                until=until,
                due_by={h: moment - HORIZON_DELTAS[h] - candle_span for h in chosen},
                long_above={h: float(levels[h]) + RETURN_TOLERANCE for h in chosen},
                short_below={h: -float(levels[h]) - RETURN_TOLERANCE for h in chosen},
                now=moment,
            )
            session.start_chunks(outcome_table=bool(ids))
            for start in range(0, len(ids), chunk_rows):
                chunk = ids[start : start + chunk_rows]
                outcome = session.fill_chunk(statements, chunk[0], chunk[-1], write=not dry_run)
                for entry in report.horizons:
                    filled, pending, missing = outcome.counts[entry.horizon]
                    entry.filled += filled
                    entry.pending += pending
                    entry.missing += missing
                report.rows_updated += outcome.rows_updated
                report.chunks += 1
                if progress is not None:
                    progress(start + len(chunk), len(ids))
            session.finish()
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
