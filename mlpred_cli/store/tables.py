"""SQLAlchemy models: the schema contract of DESIGN.md.

Column names match the original bot's tables so existing SQL and dashboards keep working.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mlpred_cli.store.column_types import BigIntPK, JSONPayload, UTCDateTime
from mlpred_cli.store.rollup_columns import (
    ACCURACY_INDEX_COLUMNS,
    COUNT_COLUMNS,
    DAILY_TOTAL_KEY_COLUMNS,
    DAILY_TOTAL_TABLE,
    MONTHLY_KEY_COLUMNS,
    MONTHLY_TABLE,
    ROLLUP_TABLE,
    SUM_COLUMNS,
    TIER_IC_COLUMNS,
)


class Base(DeclarativeBase):
    """Declarative base shared by every mlpred table."""

    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


Double: sa.Double[float] = sa.Double()
Direction = sa.String(10)


class MLPrediction(Base):
    """One logged prediction and, once backfilled, what the market actually did."""

    __tablename__ = "ml_predictions"
    __table_args__ = (
        sa.Index("ix_ml_predictions_symbol_datetime", "symbol", "datetime"),
        sa.Index("ix_ml_predictions_datetime", "datetime"),
        sa.Index("ix_ml_predictions_signal_confidence", "signal_confidence"),
        sa.Index("ix_ml_predictions_signal_type", "signal_type"),
        sa.Index("ix_ml_predictions_features_hash", "features_hash"),
        sa.Index("ix_ml_predictions_model_version_datetime", "model_version", "datetime"),
        # No index names an outcome column (nor actuals_filled_at), and pages keep a fifth
        # free, so outcome backfills can be HOT updates (migration 0002).
        {"postgresql_with": {"fillfactor": 80}},
    )

    # identity
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    prediction_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, nullable=False, unique=True)
    symbol: Mapped[str] = mapped_column(sa.String(20), nullable=False)
    timestamp: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    datetime: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)

    # input features
    features_count: Mapped[int | None] = mapped_column(sa.Integer)
    features_hash: Mapped[int | None] = mapped_column(sa.BigInteger)
    lookback_periods: Mapped[int | None] = mapped_column(sa.Integer)

    # market
    close_price: Mapped[float | None] = mapped_column(Double)
    volume: Mapped[float | None] = mapped_column(Double)
    rsi: Mapped[float | None] = mapped_column(Double)
    macd: Mapped[float | None] = mapped_column(Double)
    bb_position: Mapped[float | None] = mapped_column(Double)
    atr_pct: Mapped[float | None] = mapped_column(Double)
    volume_ratio: Mapped[float | None] = mapped_column(Double)
    trend_strength: Mapped[float | None] = mapped_column(Double)

    # feature statistics
    features_mean: Mapped[float | None] = mapped_column(Double)
    features_std: Mapped[float | None] = mapped_column(Double)
    features_min: Mapped[float | None] = mapped_column(Double)
    features_max: Mapped[float | None] = mapped_column(Double)
    zero_variance_count: Mapped[int | None] = mapped_column(sa.Integer)
    nan_count: Mapped[int | None] = mapped_column(sa.Integer)
    inf_count: Mapped[int | None] = mapped_column(sa.Integer)
    is_duplicate: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )

    # model outputs
    predicted_return_15m: Mapped[float | None] = mapped_column(Double)
    predicted_return_1h: Mapped[float | None] = mapped_column(Double)
    predicted_return_4h: Mapped[float | None] = mapped_column(Double)
    predicted_return_12h: Mapped[float | None] = mapped_column(Double)
    direction_15m: Mapped[str | None] = mapped_column(Direction)
    direction_1h: Mapped[str | None] = mapped_column(Direction)
    direction_4h: Mapped[str | None] = mapped_column(Direction)
    direction_12h: Mapped[str | None] = mapped_column(Direction)
    direction_15m_confidence: Mapped[float | None] = mapped_column(Double)
    direction_1h_confidence: Mapped[float | None] = mapped_column(Double)
    direction_4h_confidence: Mapped[float | None] = mapped_column(Double)
    direction_12h_confidence: Mapped[float | None] = mapped_column(Double)

    # risk
    risk_score: Mapped[float | None] = mapped_column(Double)
    max_drawdown_predicted: Mapped[float | None] = mapped_column(Double)
    max_rally_predicted: Mapped[float | None] = mapped_column(Double)

    # signal
    signal_type: Mapped[str | None] = mapped_column(Direction)
    signal_confidence: Mapped[float | None] = mapped_column(Double)
    signal_timeframe: Mapped[str | None] = mapped_column(sa.String(10))

    # metadata
    model_version: Mapped[str | None] = mapped_column(sa.String(50))
    inference_time_ms: Mapped[float | None] = mapped_column(Double)

    # outcomes
    actual_return_15m: Mapped[float | None] = mapped_column(Double)
    actual_return_1h: Mapped[float | None] = mapped_column(Double)
    actual_return_4h: Mapped[float | None] = mapped_column(Double)
    actual_return_12h: Mapped[float | None] = mapped_column(Double)
    actual_direction_15m: Mapped[str | None] = mapped_column(Direction)
    actual_direction_1h: Mapped[str | None] = mapped_column(Direction)
    actual_direction_4h: Mapped[str | None] = mapped_column(Direction)
    actual_direction_12h: Mapped[str | None] = mapped_column(Direction)
    accuracy_15m: Mapped[bool | None] = mapped_column(sa.Boolean)
    accuracy_1h: Mapped[bool | None] = mapped_column(sa.Boolean)
    accuracy_4h: Mapped[bool | None] = mapped_column(sa.Boolean)
    accuracy_12h: Mapped[bool | None] = mapped_column(sa.Boolean)
    return_error_15m: Mapped[float | None] = mapped_column(Double)
    return_error_1h: Mapped[float | None] = mapped_column(Double)
    return_error_4h: Mapped[float | None] = mapped_column(Double)
    return_error_12h: Mapped[float | None] = mapped_column(Double)
    actuals_filled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    # optional payload (off unless the logger is asked to store it)
    features_array: Mapped[Any | None] = mapped_column(JSONPayload)
    model_outputs_raw: Mapped[Any | None] = mapped_column(JSONPayload)
    #: caller-supplied feature attributions (e.g. SHAP values), aligned with the features
    feature_attributions: Mapped[Any | None] = mapped_column(JSONPayload)

    created_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, nullable=False, server_default=sa.func.current_timestamp()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, nullable=False, server_default=sa.func.current_timestamp()
    )


class MLFeatureImportance(Base):
    """One feature's importance in one snapshot (all features of a snapshot share calculated_at)."""

    __tablename__ = "ml_feature_importance"
    __table_args__ = (
        sa.Index(
            "ix_ml_feature_importance_snapshot",
            "model_version",
            "method",
            "calculated_at",
        ),
        sa.Index("ix_ml_feature_importance_feature_name", "feature_name"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    feature_name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    feature_index: Mapped[int | None] = mapped_column(sa.Integer)
    importance_score: Mapped[float | None] = mapped_column(Double)
    importance_rank: Mapped[int | None] = mapped_column(sa.Integer)
    correlation_with_returns: Mapped[float | None] = mapped_column(Double)
    usage_count: Mapped[int | None] = mapped_column(sa.Integer)
    model_version: Mapped[str | None] = mapped_column(sa.String(50))
    method: Mapped[str] = mapped_column(sa.String(30), nullable=False, server_default="model")
    horizon: Mapped[str | None] = mapped_column(sa.String(10))
    calculated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    # significance (migration 0006): null in snapshots written before it
    p_value: Mapped[float | None] = mapped_column(Double)
    q_value: Mapped[float | None] = mapped_column(Double)
    n_effective: Mapped[float | None] = mapped_column(Double)
    surrogate_r2: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, nullable=False, server_default=sa.func.current_timestamp()
    )


class MarketCandle(Base):
    """One OHLCV candle: the price source for actual outcomes."""

    __tablename__ = "market_candles"

    symbol: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    interval_minutes: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    datetime: Mapped[dt.datetime] = mapped_column(UTCDateTime, primary_key=True)
    open: Mapped[float] = mapped_column(Double, nullable=False)
    high: Mapped[float] = mapped_column(Double, nullable=False)
    low: Mapped[float] = mapped_column(Double, nullable=False)
    close: Mapped[float] = mapped_column(Double, nullable=False)
    volume: Mapped[float | None] = mapped_column(Double)


class BackfillProgress(Base):
    """How far plain backfill runs have examined one symbol's predictions (migration 0003).

    Every prediction of ``symbol`` with ``id <= examined_id`` was looked at by a backfill of
    every horizon when all its horizons were due: it is complete, or a candle was missing
    (retried inside the symbol's retry window only). Rows above it are always looked at.
    """

    __tablename__ = "ml_backfill_progress"

    symbol: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    examined_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


def _rollup_table() -> sa.Table:
    """``ml_prediction_daily`` (migration 0004): see ``store.rollup_columns``."""
    counts = [
        sa.Column(name, sa.BigInteger, nullable=False, server_default=sa.text("0"))
        for name in COUNT_COLUMNS
    ]
    sums = [
        sa.Column(name, Double, nullable=False, server_default=sa.text("0")) for name in SUM_COLUMNS
    ]
    return sa.Table(
        ROLLUP_TABLE,
        Base.metadata,
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("symbol", sa.String(20), primary_key=True),
        sa.Column("model_version", sa.String(50), primary_key=True),
        sa.Column("horizon", sa.String(10), primary_key=True),
        *counts,
        *sums,
        sa.Column("ic", Double),
        sa.Index(
            "ix_ml_prediction_daily_accuracy",
            "day",
            "symbol",
            "model_version",
            "horizon",
            postgresql_include=list(ACCURACY_INDEX_COLUMNS),
        ),
    )


rollup_table: sa.Table = _rollup_table()


def _tier_table(name: str, keys: tuple[str, ...], *indexes: sa.Index) -> sa.Table:
    """A rollup tier (migration 0007): the additive columns of ``ml_prediction_daily`` and
    the daily ICs as sums, summed over the daily rows of each key (``store.rollup_tiers``)."""
    types: dict[str, sa.types.TypeEngine[Any]] = {"day": sa.Date(), "month": sa.Date()}
    types |= {"symbol": sa.String(20), "model_version": sa.String(50), "horizon": sa.String(10)}
    integers = (*COUNT_COLUMNS, "ic_days")
    return sa.Table(
        name,
        Base.metadata,
        *(sa.Column(key, types[key], primary_key=True) for key in keys),
        *(
            sa.Column(column, sa.BigInteger, nullable=False, server_default=sa.text("0"))
            for column in integers
        ),
        *(
            sa.Column(column, Double, nullable=False, server_default=sa.text("0"))
            for column in (*SUM_COLUMNS, "ic_sum", "ic_sq_sum")
        ),
        *indexes,
    )


monthly_table: sa.Table = _tier_table(
    MONTHLY_TABLE,
    MONTHLY_KEY_COLUMNS,
    # an accuracy table's read of the months: an index-only scan of narrow entries
    sa.Index(
        "ix_ml_prediction_monthly_accuracy",
        *MONTHLY_KEY_COLUMNS,
        postgresql_include=[*ACCURACY_INDEX_COLUMNS, *TIER_IC_COLUMNS],
    ),
)
daily_total_table: sa.Table = _tier_table(DAILY_TOTAL_TABLE, DAILY_TOTAL_KEY_COLUMNS)


class RollupState(Base):
    """How far ``ml_prediction_daily`` reaches (migration 0004): it holds exactly the rows of
    ``ml_predictions`` with ``id <= complete_through_id`` (one row, ``name = 'daily'``)."""

    __tablename__ = "ml_rollup_state"

    name: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    complete_through_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    #: The rollup tiers hold the daily rows of the days before it (migration 0007; None:
    #: none yet). See ``store.rollup_tiers``.
    tiers_before: Mapped[dt.date | None] = mapped_column(sa.Date, nullable=True)


class ArchivedDay(Base):
    """One UTC day whose predictions were archived to Parquet and removed (migration 0004);
    its rollups stay in ``ml_prediction_daily``."""

    __tablename__ = "ml_archived_days"

    day: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True)
    predictions: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    location: Mapped[str] = mapped_column(sa.Text, nullable=False)
    checksum: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    archived_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class Alert(Base):
    """The state of one ``mlpred check`` alert, keyed by its fingerprint (migration 0005):
    open while ``resolved_at`` is null; a later run updates the row, never adds another."""

    __tablename__ = "ml_alerts"
    __table_args__ = (sa.Index("ix_ml_alerts_resolved_at", "resolved_at"),)

    fingerprint: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    check_name: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    metric: Mapped[str] = mapped_column(sa.String(80), nullable=False)
    symbol: Mapped[str | None] = mapped_column(sa.String(20))
    model_version: Mapped[str | None] = mapped_column(sa.String(50))
    horizon: Mapped[str | None] = mapped_column(sa.String(8))
    severity: Mapped[str] = mapped_column(sa.String(10), nullable=False)
    value: Mapped[float | None] = mapped_column(Double)
    threshold: Mapped[float | None] = mapped_column(Double)
    n: Mapped[int | None] = mapped_column(sa.BigInteger)
    message: Mapped[str] = mapped_column(sa.Text, nullable=False)
    first_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    notified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


predictions_table: sa.Table = MLPrediction.__table__  # type: ignore[assignment]
feature_importance_table: sa.Table = MLFeatureImportance.__table__  # type: ignore[assignment]
candles_table: sa.Table = MarketCandle.__table__  # type: ignore[assignment]
backfill_progress_table: sa.Table = BackfillProgress.__table__  # type: ignore[assignment]
rollup_state_table: sa.Table = RollupState.__table__  # type: ignore[assignment]
archived_days_table: sa.Table = ArchivedDay.__table__  # type: ignore[assignment]
alerts_table: sa.Table = Alert.__table__  # type: ignore[assignment]

#: The 61 columns of the original bot's table, which must never be renamed or dropped.
ORIGINAL_PREDICTION_COLUMNS: tuple[str, ...] = (
    "id", "symbol", "timestamp", "datetime", "features_count", "features_hash",
    "lookback_periods", "close_price", "volume", "rsi", "macd", "bb_position", "atr_pct",
    "volume_ratio", "trend_strength", "features_mean", "features_std", "features_min",
    "features_max", "zero_variance_count", "nan_count",
    *(f"predicted_return_{h}" for h in ("15m", "1h", "4h", "12h")),
    *(f"direction_{h}" for h in ("15m", "1h", "4h", "12h")),
    *(f"direction_{h}_confidence" for h in ("15m", "1h", "4h", "12h")),
    "risk_score", "max_drawdown_predicted", "max_rally_predicted",
    "signal_type", "signal_confidence", "signal_timeframe", "model_version", "inference_time_ms",
    *(f"actual_return_{h}" for h in ("15m", "1h", "4h", "12h")),
    *(f"actual_direction_{h}" for h in ("15m", "1h", "4h", "12h")),
    *(f"accuracy_{h}" for h in ("15m", "1h", "4h", "12h")),
    *(f"return_error_{h}" for h in ("15m", "1h", "4h", "12h")),
    "features_array", "model_outputs_raw", "created_at", "updated_at",
)  # fmt: skip
