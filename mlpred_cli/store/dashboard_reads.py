"""What the dashboard reads: the pulse every poll (a fixed handful of index probes, whatever
the number of open pages) and, per filter, one window's rollup figures.

The pulse tells whether anything a page shows may have changed: the newest predictions
(the live feed), the outcome frontiers, the rollups' watermark, the backfill progress and
the alert state. A window's figures come from ``ml_prediction_daily`` (``rollup_reads``):
two rollup reads, the not-yet-due counts and an hourly count of the last two days.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpred_cli.config import CALIBRATION_BINS, HORIZONS
from mlpred_cli.store.liveness_reads import newest_due, newest_outcomes, oldest_since
from mlpred_cli.store.periodic_report_reads import count_not_due
from mlpred_cli.store.prediction_queries import PredictionFilter
from mlpred_cli.store.rollup_columns import SIGNAL_NAMES
from mlpred_cli.store.rollup_reads import read_rollup_rows
from mlpred_cli.store.tables import (
    alerts_table,
    backfill_progress_table,
    predictions_table,
    rollup_state_table,
    rollup_table,
)

P = predictions_table.c

HOUR_MS = 3_600_000
#: The days of rollups whose totals the pulse reads (where late outcomes land).
RECENT_ROLLUP_DAYS = timedelta(days=7)

#: The columns of a live-feed row (besides the per-horizon ones).
FEED_COLUMNS: tuple[str, ...] = (
    "id", "datetime", "symbol", "model_version", "signal_type", "signal_confidence",
)  # fmt: skip
#: Per-horizon columns of a feed row: the feed's name -> the table's column pattern.
FEED_HORIZON_COLUMNS: dict[str, str] = {
    "predicted_direction": "direction_{h}",
    "predicted_return": "predicted_return_{h}",
    "confidence": "direction_{h}_confidence",
    "actual_direction": "actual_direction_{h}",
    "actual_return": "actual_return_{h}",
    "correct": "accuracy_{h}",
}


def _feed_columns() -> list[Any]:
    columns: list[Any] = [P[name] for name in FEED_COLUMNS]
    for horizon in HORIZONS:
        columns += [
            P[pattern.format(h=horizon)].label(f"{name}_{horizon}")
            for name, pattern in FEED_HORIZON_COLUMNS.items()
        ]
    return columns


def read_feed(conn: Connection, selection: PredictionFilter, limit: int) -> list[dict[str, Any]]:
    """The selection's newest ``limit`` predictions, newest first, as column mappings."""
    query = (
        sa.select(*_feed_columns())
        .where(*selection.clauses())
        .order_by(P.datetime.desc(), P.id.desc())
        .limit(limit)
    )
    return [dict(row._mapping) for row in conn.execute(query)]


@dataclass(frozen=True)
class Pulse:
    """One poll's reading: ``feed`` the newest predictions (newest first); ``due`` /
    ``filled`` per horizon the newest prediction whose outcome is due / is filled within the
    lookback, ``oldest`` the oldest prediction of the lookback; the rollup watermark and
    its time, the newest backfill progress, and the alert state's signature."""

    feed: list[dict[str, Any]]
    due: dict[str, datetime | None]
    filled: dict[str, datetime | None]
    oldest: datetime | None
    rollup_through: int | None
    rollup_updated_at: datetime | None
    alerts: tuple[Any, ...]
    #: The table's largest id: rows logged late (an older ``datetime``) move it too.
    max_id: int | None = None
    #: The newest backfill progress and the recent days' rollup totals: an outcome filled
    #: for an older row refreshes its day's rollups in place, without a new watermark.
    backfill_updated_at: datetime | None = None
    recent_rollups: tuple[Any, ...] = ()

    @property
    def newest_prediction(self) -> datetime | None:
        """The newest prediction's ``datetime`` (None: there is none)."""
        return self.feed[0]["datetime"] if self.feed else None

    @property
    def newest_id(self) -> int | None:
        """The largest id among the newest predictions."""
        return max(int(row["id"]) for row in self.feed) if self.feed else None


def read_pulse(
    conn: Connection,
    *,
    now: datetime,
    lookback: timedelta,
    candle_interval: timedelta,
    feed_limit: int,
) -> Pulse:
    """One poll's ``Pulse`` over the whole database (no filter)."""
    everything = PredictionFilter()
    state = conn.execute(
        sa.select(rollup_state_table.c.complete_through_id, rollup_state_table.c.updated_at)
    ).first()
    alerts = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.count(alerts_table.c.resolved_at),
            sa.func.max(alerts_table.c.last_seen),
            sa.func.max(alerts_table.c.resolved_at),
        )
    ).one()
    recent = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.sum(rollup_table.c.predictions),
            sa.func.sum(rollup_table.c.with_outcome),
            sa.func.sum(rollup_table.c.scored),
            sa.func.sum(rollup_table.c.correct),
        ).where(rollup_table.c.day >= (now - RECENT_ROLLUP_DAYS).date())
    ).one()
    return Pulse(
        max_id=conn.execute(sa.select(sa.func.max(P.id))).scalar(),
        backfill_updated_at=conn.execute(
            sa.select(sa.func.max(backfill_progress_table.c.updated_at))
        ).scalar(),
        recent_rollups=tuple(recent),
        feed=read_feed(conn, everything, feed_limit),
        due=newest_due(conn, everything, lookback, now=now, candle_interval=candle_interval),
        filled=newest_outcomes(
            conn, everything, lookback, now=now, candle_interval=candle_interval
        ),
        oldest=oldest_since(conn, now - lookback, everything),
        rollup_through=None if state is None else int(state[0]),
        rollup_updated_at=None if state is None else state[1],
        alerts=tuple(alerts),
    )


@dataclass(frozen=True)
class WindowRollups:
    """A window's rollup figures: ``by_key`` per (symbol, model_version) and horizon,
    ``by_day`` per (day, model_version) and horizon (``model_version`` '' for rows without
    one), where they came from, the not-yet-due counts per horizon, and the hourly counts
    of the last ``hours`` (``hour_ms``: the hour's start in epoch milliseconds)."""

    by_key: pd.DataFrame
    by_day: pd.DataFrame
    rollup_days: int | None
    raw_days: int
    archived_days: int
    not_due: dict[str, int]
    per_hour: dict[int, int]


def read_hourly_counts(
    conn: Connection, selection: PredictionFilter, now: datetime, hours: int
) -> dict[int, int]:
    """The selection's predictions per whole hour (by ``timestamp``): the ``hours`` hours
    up to and including ``now``'s, keyed by the hour's start in epoch milliseconds."""
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    bucket = (P.timestamp // HOUR_MS).label("bucket")  # floor division: the hour number
    base = PredictionFilter(symbol=selection.symbol, model_version=selection.model_version)
    query = (
        sa.select(bucket, sa.func.count())
        .where(*base.clauses(), P.datetime >= since, P.datetime <= now)
        .group_by(bucket)
    )
    return {int(hour) * HOUR_MS: int(count) for hour, count in conn.execute(query)}


#: The rollup columns the dashboard's views sum: accuracy and hit rate, actual directions
#: (base rate), return pairs (errors, Pearson IC), calibration and its ECE bins. Reading
#: only these (not the signal and confidence-bin counts) halves a window read's cost.
DASHBOARD_COLUMNS: tuple[str, ...] = (
    "predictions", "scored", "correct", "directional", "directional_correct",
    *(f"actual_{kind}" for kind in SIGNAL_NAMES),
    "return_pairs", "predicted_sum", "actual_sum", "predicted_sq_sum", "actual_sq_sum",
    "cross_sum", "abs_error_sum", "squared_error_sum",
    "calibration_n", "calibration_correct", "calibration_confidence_sum", "brier_sum",
    *(f"ece_{k}_{part}" for k in range(CALIBRATION_BINS)
      for part in ("n", "correct", "confidence_sum")),
)  # fmt: skip


def read_choices(conn: Connection, since: datetime) -> tuple[list[str], list[str]]:
    """The symbols and (non-empty) model versions with predictions since ``since``."""
    frame = read_rollup_rows(
        conn, PredictionFilter(since=since), ("symbol", "model_version"), ("predictions",)
    ).frame
    if frame.empty:
        return [], []
    present = frame[frame["predictions"] > 0]
    symbols = sorted({str(name) for name in present["symbol"]})
    versions = sorted({str(name) for name in present["model_version"] if name})
    return symbols, versions


def read_window_rollups(
    conn: Connection,
    selection: PredictionFilter,
    *,
    now: datetime,
    candle_interval: timedelta,
    hours: int,
    by_key: Sequence[str] = ("symbol", "model_version"),
    by_day: Sequence[str] = ("day", "model_version"),
) -> WindowRollups:
    """``WindowRollups`` of the selection (its ``until`` None or ``now``)."""
    keyed = read_rollup_rows(conn, selection, by_key, DASHBOARD_COLUMNS, count_days=True)
    daily = read_rollup_rows(conn, selection, by_day, DASHBOARD_COLUMNS)
    return WindowRollups(
        by_key=keyed.frame,
        by_day=daily.frame,
        rollup_days=keyed.rollup_days,
        raw_days=keyed.raw_days,
        archived_days=len(keyed.archived_days),
        not_due=count_not_due(conn, selection, now, candle_interval),
        per_hour=read_hourly_counts(conn, selection, now, hours),
    )


def utc(moment: datetime | None) -> datetime | None:
    """``moment`` as an aware UTC time (SQLite hands back naive ones)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
