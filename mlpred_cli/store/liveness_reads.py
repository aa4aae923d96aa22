"""The reads behind ``mlpred check``'s freshness and quality checks: when each symbol and
model version last logged, how far the outcomes have been filled per horizon, and the
data-quality figures of a window.

Every query goes through an index ((symbol, datetime), (model_version, datetime) or
(datetime)) and is bounded in time: no index names an outcome column, so the newest filled
outcome is found by scanning back from the newest due prediction, never over the table.
Times are timezone-aware UTC; ``since`` is inclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from mlpred_cli.config import CANDLE_INTERVALS, DEFAULT_BACKFILL_INTERVAL, HORIZON_DELTAS, HORIZONS
from mlpred_cli.store.prediction_queries import PredictionFilter
from mlpred_cli.store.prediction_reads import reading
from mlpred_cli.store.source import DatabaseSource
from mlpred_cli.store.tables import predictions_table

P = predictions_table.c

#: Columns ``last_seen`` groups by.
SeenColumn = Literal["symbol", "model_version"]

#: At most this many inference times are read on SQLite (an even sample by id beyond);
#: PostgreSQL computes the percentiles itself over every row.
QUALITY_MAX_SAMPLE_ROWS = 200_000

#: The percentiles of ``inference_time_ms`` the quality figures hold.
INFERENCE_PERCENTILES: tuple[int, ...] = (50, 95, 99)

DEFAULT_CANDLE_INTERVAL = timedelta(minutes=CANDLE_INTERVALS[DEFAULT_BACKFILL_INTERVAL])


# ---------------------------------------------------------------- last prediction per key


def _next_value(conn: Connection, column: sa.Column[Any], after: str | None) -> str | None:
    # One index descent per distinct value (a loose index scan): the smallest value above
    # ``after``. No time filter here: on PostgreSQL < 18 a second-column range would make
    # the scan walk a symbol's whole history before ``since``.
    query = sa.select(sa.func.min(column))
    if after is not None:
        query = query.where(column > after)
    value = conn.execute(query).scalar_one()
    return None if value is None else str(value)


def _newest_since(
    conn: Connection, key: ColumnElement[bool], since: datetime, selection: PredictionFilter
) -> datetime | None:
    # A backward scan of the (key, datetime) index, stopped at ``since``.
    query = (
        sa.select(P.datetime)
        .where(key, P.datetime >= since, *selection.clauses())
        .order_by(P.datetime.desc())
        .limit(1)
    )
    value: datetime | None = conn.execute(query).scalar_one_or_none()
    return value


def last_seen(
    conn: Connection, column: SeenColumn, since: datetime, selection: PredictionFilter
) -> dict[str | None, datetime]:
    """The newest prediction ``datetime`` (aware UTC) of each ``symbol`` (or
    ``model_version``) of the selection that logged at or after ``since``; keys that did not
    are absent. Model versions include None for rows logged without one."""
    target = P[column]
    pinned = selection.symbol if column == "symbol" else selection.model_version
    values: list[str | None]
    if pinned is not None:
        values = [pinned]
    else:
        values = []
        value = _next_value(conn, target, None)
        while value is not None:
            values.append(value)
            value = _next_value(conn, target, value)
        if column == "model_version":
            values.append(None)
    seen: dict[str | None, datetime] = {}
    for value in values:
        key = target.is_(None) if value is None else target == value
        newest = _newest_since(conn, key, since, selection)
        if newest is not None:
            seen[value] = newest
    return seen


def newest_prediction(conn: Connection, selection: PredictionFilter) -> datetime | None:
    """The newest prediction ``datetime`` of the selection (None when it is empty)."""
    query = sa.select(P.datetime).where(*selection.clauses()).order_by(P.datetime.desc())
    value: datetime | None = conn.execute(query.limit(1)).scalar_one_or_none()
    return value


def oldest_since(conn: Connection, since: datetime, selection: PredictionFilter) -> datetime | None:
    """The oldest prediction ``datetime`` of the selection at or after ``since`` (None when
    there is none)."""
    query = sa.select(P.datetime).where(P.datetime >= since, *selection.clauses())
    value: datetime | None = conn.execute(query.order_by(P.datetime).limit(1)).scalar_one_or_none()
    return value


# ---------------------------------------------------------------- outcome frontiers


def due_through(now: datetime, horizon: str, candle_interval: timedelta) -> datetime:
    """The newest reference time whose ``horizon`` outcome is due at ``now``: the candle
    opening at t + horizon must have closed."""
    return now - HORIZON_DELTAS[horizon] - candle_interval


def _newest_where(
    conn: Connection,
    selection: PredictionFilter,
    floor: datetime,
    ceiling: datetime,
    *extra: ColumnElement[bool],
) -> datetime | None:
    query = (
        sa.select(P.datetime)
        .where(P.datetime >= floor, P.datetime <= ceiling, *extra, *selection.clauses())
        .order_by(P.datetime.desc())
        .limit(1)
    )
    value: datetime | None = conn.execute(query).scalar_one_or_none()
    return value


def newest_due(
    conn: Connection,
    selection: PredictionFilter,
    lookback: timedelta,
    *,
    now: datetime | None = None,
    candle_interval: timedelta = DEFAULT_CANDLE_INTERVAL,
) -> dict[str, datetime | None]:
    """Per horizon, the newest prediction ``datetime`` of the selection within ``lookback``
    of ``now`` whose outcome is due (see ``due_through``); None when none is."""
    moment = now or datetime.now(UTC)
    floor = moment - lookback
    return {
        horizon: _newest_where(
            conn, selection, floor, due_through(moment, horizon, candle_interval)
        )
        for horizon in HORIZONS
    }


def newest_outcomes(
    conn: Connection,
    selection: PredictionFilter,
    lookback: timedelta,
    *,
    now: datetime | None = None,
    candle_interval: timedelta = DEFAULT_CANDLE_INTERVAL,
) -> dict[str, datetime | None]:
    """Per horizon, the newest prediction ``datetime`` of the selection within ``lookback``
    of ``now`` whose outcome (``actual_direction_<h>``) is filled: the horizon is matured
    through it. None when no outcome was filled in the lookback.

    The scan runs back from the newest due prediction, so it costs the rows not yet
    filled: a few while the backfill keeps up, at most ``lookback`` of them when it stopped.
    """
    moment = now or datetime.now(UTC)
    floor = moment - lookback
    return {
        horizon: _newest_where(
            conn,
            selection,
            floor,
            due_through(moment, horizon, candle_interval),
            P[f"actual_direction_{horizon}"].isnot(None),
        )
        for horizon in HORIZONS
    }


# ---------------------------------------------------------------- one snapshot


@dataclass(frozen=True)
class Liveness:
    """What the freshness check judges, read at ``now`` over ``lookback``.

    ``symbols`` / ``model_versions``: the newest prediction time of each key seen in the
    lookback (None is the model version of rows logged without one). ``due`` / ``filled``:
    per horizon, the newest prediction whose outcome is due / is filled (None: none in the
    lookback). ``oldest``: the oldest prediction in the lookback; ``newest``: the
    selection's newest prediction at any time (None: the selection is empty).
    """

    now: datetime
    lookback: timedelta
    candle_interval: timedelta
    symbols: dict[str, datetime]
    model_versions: dict[str | None, datetime]
    due: dict[str, datetime | None]
    filled: dict[str, datetime | None]
    oldest: datetime | None
    newest: datetime | None


def liveness(
    conn: Connection,
    selection: PredictionFilter,
    *,
    now: datetime,
    lookback: timedelta,
    candle_interval: timedelta = DEFAULT_CANDLE_INTERVAL,
) -> Liveness:
    """Every liveness read of the selection at ``now`` (aware UTC) on one connection."""
    since = now - lookback
    symbols = {
        str(key): moment for key, moment in last_seen(conn, "symbol", since, selection).items()
    }
    return Liveness(
        now=now,
        lookback=lookback,
        candle_interval=candle_interval,
        symbols=symbols,
        model_versions=last_seen(conn, "model_version", since, selection),
        due=newest_due(conn, selection, lookback, now=now, candle_interval=candle_interval),
        filled=newest_outcomes(conn, selection, lookback, now=now, candle_interval=candle_interval),
        oldest=oldest_since(conn, since, selection),
        newest=newest_prediction(conn, selection) if not symbols else max(symbols.values()),
    )


def read_liveness(
    source: DatabaseSource,
    selection: PredictionFilter,
    *,
    now: datetime,
    lookback: timedelta,
    candle_interval: timedelta = DEFAULT_CANDLE_INTERVAL,
) -> Liveness:
    """``liveness`` on a database source."""
    with reading(source) as engine, engine.connect() as conn:
        return liveness(
            conn, selection, now=now, lookback=lookback, candle_interval=candle_interval
        )


# ---------------------------------------------------------------- data quality


@dataclass(frozen=True)
class QualityFigures:
    """Data-quality counts of a window: ``rows``; ``nan_inf_rows`` with a NaN or an infinite
    feature (``nan_count > 0`` or ``inf_count > 0``); ``duplicate_rows`` (``is_duplicate``);
    ``timed_rows`` with an ``inference_time_ms``, its percentiles in ms (None without any),
    computed over ``sampled_rows`` of them (all of them unless an even sample was read)."""

    rows: int
    nan_inf_rows: int
    duplicate_rows: int
    timed_rows: int
    inference_p50_ms: float | None
    inference_p95_ms: float | None
    inference_p99_ms: float | None
    sampled_rows: int

    @property
    def nan_inf_share(self) -> float | None:
        """Share of rows with a NaN or infinite feature (None for an empty window)."""
        return self.nan_inf_rows / self.rows if self.rows else None

    @property
    def duplicate_share(self) -> float | None:
        """Share of duplicate feature vectors (None for an empty window)."""
        return self.duplicate_rows / self.rows if self.rows else None


def _as_int(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return sa.case((condition, 1), else_=0)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def quality_figures(
    conn: Connection, selection: PredictionFilter, *, max_sample_rows: int = QUALITY_MAX_SAMPLE_ROWS
) -> QualityFigures:
    """The selection's ``QualityFigures``. PostgreSQL computes the inference-time
    percentiles with ``percentile_cont`` (linear interpolation, numpy's default); SQLite
    reads the times (every k-th id beyond ``max_sample_rows``) and numpy computes them."""
    clauses = selection.clauses()
    timing = P.inference_time_ms
    columns: list[ColumnElement[Any]] = [
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(_as_int((P.nan_count > 0) | (P.inf_count > 0))), 0),
        sa.func.coalesce(sa.func.sum(_as_int(P.is_duplicate.is_(True))), 0),
        sa.func.count(timing),
    ]
    native = conn.dialect.name == "postgresql"
    if native:
        columns += [
            sa.func.percentile_cont(share / 100).within_group(timing)
            for share in INFERENCE_PERCENTILES
        ]
    head = conn.execute(sa.select(*columns).where(*clauses)).one()
    rows, nan_inf, duplicates, timed = (int(value) for value in head[:4])
    if native:
        p50, p95, p99 = (_float_or_none(value) for value in head[4:])
        sampled = timed
    else:
        query = sa.select(timing).where(*clauses, timing.isnot(None))
        if timed > max_sample_rows:
            query = query.where(P.id % math.ceil(timed / max_sample_rows) == 0)
        times = np.asarray(conn.execute(query).scalars().all(), dtype=float)
        sampled = int(times.size)
        p50, p95, p99 = (
            (float(value) for value in np.percentile(times, INFERENCE_PERCENTILES))
            if sampled
            else (None, None, None)
        )
    return QualityFigures(rows, nan_inf, duplicates, timed, p50, p95, p99, sampled)


def read_quality(source: DatabaseSource, selection: PredictionFilter) -> QualityFigures:
    """``quality_figures`` on a database source."""
    with reading(source) as engine, engine.connect() as conn:
        return quality_figures(conn, selection)
