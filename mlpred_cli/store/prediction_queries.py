"""SQLAlchemy selects and aggregations over ``ml_predictions``, shared by the CLI and the
notebook API. Everything that can be counted or averaged is done here, in the database.

Times are timezone-aware UTC; ``since`` is inclusive and ``until`` exclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from mlpred_cli.config import CONFIDENCE_BIN_EDGES, HORIZONS, PRIMARY_HORIZON_FALLBACK, SIGNAL_TYPES
from mlpred_cli.errors import InputError
from mlpred_cli.store.tables import predictions_table

P = predictions_table.c

#: A select of any columns (SQLAlchemy 2.1 types selects by their column tuple).
AnySelect = sa.Select[*tuple[Any, ...]]

#: Groupings ``accuracy`` understands; ``day`` is the UTC calendar day of ``datetime``.
ACCURACY_GROUPS: tuple[str, ...] = ("symbol", "model_version", "signal_type", "day")

#: Columns that hold large optional payloads; never loaded unless asked for by name.
PAYLOAD_COLUMNS: tuple[str, ...] = ("features_array", "model_outputs_raw", "feature_attributions")


# ---------------------------------------------------------------- the selection


def parse_time(value: str | datetime, name: str) -> datetime:
    """An ISO 8601 time (or datetime) as aware UTC; naive values are taken as UTC. ``name``
    (the parameter, e.g. ``since``) labels the error."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InputError(
                f"{name}: '{value}' is not an ISO 8601 time (e.g. 2026-03-01T12:00)"
            ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class PredictionFilter:
    """Which predictions a query looks at. ``None`` fields do not filter."""

    symbol: str | None = None
    model_version: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    days: float | None = None
    #: Set when the window was given in hours (``days`` is then ``hours / 24``).
    hours: float | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        """The WHERE clauses of this selection."""
        clauses: list[ColumnElement[bool]] = []
        if self.symbol is not None:
            clauses.append(P.symbol == self.symbol)
        if self.model_version is not None:
            clauses.append(P.model_version == self.model_version)
        if self.since is not None:
            clauses.append(P.datetime >= self.since)
        if self.until is not None:
            clauses.append(P.datetime < self.until)
        return clauses

    def describe(self) -> str:
        """Human wording of the selection, e.g. ``for BTCUSDT in the last 30 days``."""
        parts = []
        if self.symbol is not None:
            parts.append(f"for {self.symbol}")
        if self.model_version is not None:
            parts.append(f"of model {self.model_version}")
        if self.hours is not None:
            unit = "hour" if self.hours == 1 else "hours"
            parts.append(f"in the last {self.hours:g} {unit}")
        elif self.days is not None:
            unit = "day" if self.days == 1 else "days"
            parts.append(f"in the last {self.days:g} {unit}")
        else:
            if self.since is not None:
                parts.append(f"since {self.since.isoformat()}")
            if self.until is not None:
                parts.append(f"before {self.until.isoformat()}")
        return " ".join(parts) if parts else "in the database"


def make_filter(
    *,
    symbol: str | None = None,
    model_version: str | None = None,
    days: float | None = None,
    hours: float | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    now: datetime | None = None,
) -> PredictionFilter:
    """Validate the selection options; ``days``/``hours`` and ``since``/``until`` exclude
    each other. Raises ``InputError`` on bad input."""
    if days is not None and hours is not None:
        raise InputError("give days or hours, not both")
    if (days is not None or hours is not None) and (since is not None or until is not None):
        raise InputError("give days/hours or since/until, not both")
    for name, amount in (("days", days), ("hours", hours)):
        if amount is not None and not amount > 0:
            raise InputError(f"{name} must be positive, got {amount:g}")
        if amount is not None and not math.isfinite(amount):
            raise InputError(f"{name} must be a finite number, got {amount:g}")
    since_at = parse_time(since, "since") if since is not None else None
    until_at = parse_time(until, "until") if until is not None else None
    if since_at is not None and until_at is not None and since_at >= until_at:
        raise InputError("since must be before until")
    reference = now or datetime.now(UTC)
    try:
        if days is not None:
            since_at = reference - timedelta(days=days)
        if hours is not None:
            since_at = reference - timedelta(hours=hours)
    except OverflowError:
        name, amount = ("days", days) if days is not None else ("hours", hours)
        raise InputError(f"{name} {amount:g} reaches past the calendar") from None
    if hours is not None:
        days = hours / 24
    return PredictionFilter(
        symbol=symbol or None,
        model_version=model_version or None,
        since=since_at,
        until=until_at,
        days=days,
        hours=hours,
    )


# ---------------------------------------------------------------- dialect helpers


class utc_day(FunctionElement[str]):  # noqa: N801  (SQL function naming)
    """The UTC calendar day of a timestamp column as text ``YYYY-MM-DD``."""

    type = sa.String()
    inherit_cache = True


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(next(iter(element.clauses)), **kw)
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


@compiles(utc_day)
def _utc_day_default(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'
    return f"substr({compiler.process(next(iter(element.clauses)), **kw)}, 1, 10)"


def _as_int(condition: ColumnElement[Any]) -> ColumnElement[int]:
    return sa.case((condition, 1), else_=0)


def _count_true(column: ColumnElement[Any]) -> ColumnElement[Any]:
    return sa.func.sum(_as_int(column.is_(True)))


def _correct(horizon: str) -> ColumnElement[bool]:
    return P[f"accuracy_{horizon}"].is_(True)


def is_scored(
    actual_direction: ColumnElement[Any], direction: ColumnElement[Any]
) -> ColumnElement[bool]:
    """THE rule of which rows count as scored (SQL side; ``analysis.scoring.scored_mask`` is
    the frame side): both the actual and the predicted direction are known. A row without a
    predicted direction (NaN logits, or a bot dict without that horizon) made no prediction
    there, so it is neither right nor wrong."""
    return actual_direction.isnot(None) & direction.isnot(None)


def scored(horizon: str) -> ColumnElement[bool]:
    """Rows that can be scored at ``horizon`` (see ``is_scored``)."""
    return is_scored(P[f"actual_direction_{horizon}"], P[f"direction_{horizon}"])


def primary_horizon_column(prefix: str) -> ColumnElement[Any]:
    """``<prefix>_<h>`` of each row's primary horizon: its ``signal_timeframe`` when that is a
    horizon, else ``PRIMARY_HORIZON_FALLBACK``."""
    whens = [(P.signal_timeframe == h, P[f"{prefix}_{h}"]) for h in HORIZONS]
    return sa.case(*whens, else_=P[f"{prefix}_{PRIMARY_HORIZON_FALLBACK}"])


def confidence_bin_column(edges: Sequence[float] = CONFIDENCE_BIN_EDGES) -> ColumnElement[Any]:
    """Bin number of ``signal_confidence`` (same bins as ``metrics.confidence_bin_index``)."""
    conf = P.signal_confidence
    whens: list[tuple[ColumnElement[bool], int]] = [((conf < edges[0]) | (conf > edges[-1]), -1)]
    whens += [(conf < upper, number) for number, upper in enumerate(edges[1:-1])]
    return sa.case(*whens, else_=len(edges) - 2)


# ---------------------------------------------------------------- row selects


def _columns(names: Sequence[str] | None) -> list[sa.Column[Any]]:
    if names is None:
        return [c for c in predictions_table.columns if c.name not in PAYLOAD_COLUMNS]
    unknown = [n for n in names if n not in predictions_table.c]
    if unknown:
        raise InputError(f"unknown column {unknown[0]!r} of ml_predictions")
    return [predictions_table.c[n] for n in names]


def select_predictions(
    selection: PredictionFilter, columns: Sequence[str] | None = None
) -> AnySelect:
    """Rows of the selection, oldest first (payload columns only when named)."""
    return sa.select(*_columns(columns)).where(*selection.clauses()).order_by(P.datetime, P.id)


def read_frame(conn: Connection | Engine, statement: AnySelect) -> pd.DataFrame:
    """Run a select into a DataFrame; UUIDs become strings, times ``datetime64[UTC]``."""
    if isinstance(conn, Engine):
        with conn.connect() as connection:
            return read_frame(connection, statement)
    result = conn.execute(statement)
    # plain tuples: pandas builds a frame from them ~7x faster than from Row objects
    frame = pd.DataFrame(list(map(tuple, result)), columns=list(result.keys()))
    for name in frame.columns:
        column = predictions_table.c.get(name)
        if column is None:
            continue
        if isinstance(column.type, sa.Uuid):
            frame[name] = frame[name].map(lambda v: None if v is None else str(v))
        elif name in ("datetime", "created_at", "updated_at", "actuals_filled_at"):
            frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame


def latest_predictions(
    selection: PredictionFilter,
    columns: Sequence[str],
    *,
    limit: int,
    min_confidence: float | None = None,
    include_neutral: bool = True,
) -> AnySelect:
    """Newest first, at most ``limit`` rows; optionally only ``signal_confidence >
    min_confidence`` and (without ``include_neutral``) ``signal_type != 'NEUTRAL'``."""
    statement = sa.select(*_columns(columns)).where(*selection.clauses())
    if min_confidence is not None:
        statement = statement.where(P.signal_confidence > min_confidence)
    if not include_neutral:
        statement = statement.where(P.signal_type != "NEUTRAL")
    return statement.order_by(P.datetime.desc(), P.id.desc()).limit(limit)


# ---------------------------------------------------------------- aggregations


def horizon_counts(horizon: str) -> list[ColumnElement[Any]]:
    """Per-horizon aggregates: ``n_h`` (rows with a predicted and an actual direction) and
    ``correct_h``."""
    scored_rows = scored(horizon)
    return [
        sa.func.coalesce(sa.func.sum(_as_int(scored_rows)), 0).label(f"n_{horizon}"),
        sa.func.coalesce(sa.func.sum(_as_int(scored_rows & _correct(horizon))), 0).label(
            f"correct_{horizon}"
        ),
    ]


def any_outcome() -> ColumnElement[bool]:
    """Rows with an outcome (an actual direction) at some horizon."""
    return sa.or_(*(P[f"actual_direction_{h}"].isnot(None) for h in HORIZONS))


def accuracy_groups(
    selection: PredictionFilter,
    by: str,
    horizons: Sequence[str] = HORIZONS,
    min_count: int = 0,
) -> AnySelect:
    """GROUP BY ``by``: ``total``, ``n_outcomes`` (rows with any outcome), ``avg_confidence``
    (over all rows), and ``n_h`` / ``correct_h`` per horizon; ordered by total descending
    (``day``: by date)."""
    if by not in ACCURACY_GROUPS:
        raise InputError(f"cannot group by {by!r}: use one of {', '.join(ACCURACY_GROUPS)}")
    key: ColumnElement[Any] = utc_day(P.datetime) if by == "day" else P[by]
    total = sa.func.count().label("total")
    statement = (
        sa.select(
            key.label(by),
            total,
            sa.func.coalesce(sa.func.sum(_as_int(any_outcome())), 0).label("n_outcomes"),
            sa.func.avg(P.signal_confidence).label("avg_confidence"),
            *(column for h in horizons for column in horizon_counts(h)),
        )
        .where(*selection.clauses())
        .group_by(key)
        .order_by(*((key,) if by == "day" else (sa.desc("total"), key)))
    )
    if min_count > 0:
        statement = statement.having(sa.func.count() >= min_count)
    return statement


def overview(selection: PredictionFilter) -> AnySelect:
    """One row: counts, time range, distinct symbols and versions, mean confidence, input
    health totals."""
    return sa.select(
        sa.func.count().label("predictions"),
        sa.func.min(P.datetime).label("first"),
        sa.func.max(P.datetime).label("last"),
        sa.func.count(sa.distinct(P.symbol)).label("symbols"),
        sa.func.count(sa.distinct(P.model_version)).label("model_versions"),
        sa.func.avg(P.signal_confidence).label("avg_confidence"),
        sa.func.coalesce(sa.func.sum(_as_int(any_outcome())), 0).label("with_outcomes"),
        sa.func.avg(P.features_count).label("avg_features_count"),
        sa.func.sum(P.nan_count).label("nan_total"),
        sa.func.coalesce(sa.func.sum(_as_int(P.nan_count > 0)), 0).label("rows_with_nan"),
        sa.func.sum(P.inf_count).label("inf_total"),
        sa.func.coalesce(sa.func.sum(_as_int(P.inf_count > 0)), 0).label("rows_with_inf"),
        sa.func.avg(P.zero_variance_count).label("avg_zero_variance_count"),
        sa.func.count(P.zero_variance_count).label("n_zero_variance_known"),
        sa.func.coalesce(_count_true(P.is_duplicate), 0).label("duplicates"),
    ).where(*selection.clauses())


def distinct_values(selection: PredictionFilter, column: str) -> AnySelect:
    """Distinct non-null values of a column in the selection, sorted."""
    col = P[column]
    return sa.select(col).where(*selection.clauses(), col.isnot(None)).distinct().order_by(col)


def signal_counts(selection: PredictionFilter) -> AnySelect:
    """GROUP BY ``signal_type``: ``count``."""
    return (
        sa.select(P.signal_type, sa.func.count().label("count"))
        .where(*selection.clauses())
        .group_by(P.signal_type)
    )


def horizon_summary(selection: PredictionFilter, horizon: str) -> AnySelect:
    """One row for a horizon: ``n``, ``correct``; ``n_directional``/``correct_directional``
    for non-NEUTRAL predictions; actual direction counts ``actual_<TYPE>``; ``abs_error`` and
    ``squared_error`` means of predicted minus actual return."""
    actual = P[f"actual_direction_{horizon}"]
    has_outcome = scored(horizon)
    directional = has_outcome & P[f"direction_{horizon}"].in_(("LONG", "SHORT"))
    error = P[f"predicted_return_{horizon}"] - P[f"actual_return_{horizon}"]
    return sa.select(
        sa.func.coalesce(sa.func.sum(_as_int(has_outcome)), 0).label("n"),
        sa.func.coalesce(sa.func.sum(_as_int(has_outcome & _correct(horizon))), 0).label("correct"),
        sa.func.coalesce(sa.func.sum(_as_int(directional)), 0).label("n_directional"),
        sa.func.coalesce(sa.func.sum(_as_int(directional & _correct(horizon))), 0).label(
            "correct_directional"
        ),
        *(
            sa.func.coalesce(sa.func.sum(_as_int(has_outcome & (actual == kind))), 0).label(
                f"actual_{kind}"
            )
            for kind in SIGNAL_TYPES
        ),
        sa.func.avg(sa.func.abs(error)).label("abs_error"),
        sa.func.avg(error * error).label("squared_error"),
    ).where(*selection.clauses())


def confidence_bins(selection: PredictionFilter) -> AnySelect:
    """GROUP BY confidence bin: ``count``, ``avg_confidence``, signal type counts, and
    ``n_primary``/``correct_primary`` of each row's primary horizon."""
    bin_number = confidence_bin_column().label("bin")
    primary_actual = primary_horizon_column("actual_direction")
    primary_direction = primary_horizon_column("direction")
    primary_accuracy = primary_horizon_column("accuracy")
    primary_scored = is_scored(primary_actual, primary_direction)
    return (
        sa.select(
            bin_number,
            sa.func.count().label("count"),
            sa.func.avg(P.signal_confidence).label("avg_confidence"),
            *(
                sa.func.sum(_as_int(P.signal_type == kind)).label(f"signals_{kind}")
                for kind in SIGNAL_TYPES
            ),
            sa.func.coalesce(sa.func.sum(_as_int(primary_scored)), 0).label("n_primary"),
            sa.func.coalesce(
                sa.func.sum(_as_int(primary_scored & primary_accuracy.is_(True))), 0
            ).label("correct_primary"),
        )
        .where(*selection.clauses(), P.signal_confidence.isnot(None))
        .group_by(sa.text("bin"))
        .order_by(sa.text("bin"))
    )


def half_means(selection: PredictionFilter, midpoint: datetime) -> AnySelect:
    """Mean ``features_mean`` / ``features_std`` before and from ``midpoint`` (UTC)."""
    first = P.datetime < midpoint

    def mean_when(condition: ColumnElement[bool], column: str) -> ColumnElement[Any]:
        return sa.func.avg(sa.case((condition, P[column]), else_=None))

    return sa.select(
        mean_when(first, "features_mean").label("features_mean_first"),
        mean_when(~first, "features_mean").label("features_mean_second"),
        mean_when(first, "features_std").label("features_std_first"),
        mean_when(~first, "features_std").label("features_std_second"),
    ).where(*selection.clauses())


def outcome_values(selection: PredictionFilter) -> AnySelect:
    """Row-level values the rank, calibration and overlap-corrected metrics need, only for
    rows with an outcome."""
    names = ["symbol", "datetime"]
    for h in HORIZONS:
        names += [
            f"predicted_return_{h}",
            f"actual_return_{h}",
            f"direction_{h}",
            f"direction_{h}_confidence",
            f"accuracy_{h}",
            f"actual_direction_{h}",
        ]
    return sa.select(*_columns(names)).where(*selection.clauses(), any_outcome())


def column_values(selection: PredictionFilter, column: str) -> AnySelect:
    """The non-null values of one column in the selection (unordered)."""
    col = P[column]
    return sa.select(col).where(*selection.clauses(), col.isnot(None))
