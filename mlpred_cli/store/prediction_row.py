"""The shape of one ``ml_predictions`` row on its way to the table: the columns the writer
fills, in order, and the tuple that carries them."""

from __future__ import annotations

from typing import Any

from mlpred_cli.config import HORIZONS

#: Statistics of the input features (derive.feature_stats fills them).
FEATURE_STAT_COLUMNS: tuple[str, ...] = (
    "features_count",
    "features_hash",
    "lookback_periods",
    "features_mean",
    "features_std",
    "features_min",
    "features_max",
    "nan_count",
    "inf_count",
    "zero_variance_count",
)

#: Key indicators of the market data (derive.indicators fills them).
INDICATOR_COLUMNS: tuple[str, ...] = (
    "close_price",
    "volume",
    "rsi",
    "macd",
    "bb_position",
    "atr_pct",
    "volume_ratio",
    "trend_strength",
)

#: The model's interpreted outputs (derive.raw_outputs fills them).
INTERPRETED_COLUMNS: tuple[str, ...] = (
    *(f"predicted_return_{h}" for h in HORIZONS),
    *(f"direction_{h}" for h in HORIZONS),
    *(f"direction_{h}_confidence" for h in HORIZONS),
    "risk_score",
    "max_drawdown_predicted",
    "max_rally_predicted",
    "signal_type",
    "signal_confidence",
    "signal_timeframe",
)
FEATURE_COLUMNS = FEATURE_STAT_COLUMNS
MARKET_COLUMNS = INDICATOR_COLUMNS

#: Every column the writer fills, in the order rows are built and copied.
WRITE_COLUMNS: tuple[str, ...] = (
    "prediction_id",
    "symbol",
    "timestamp",
    "datetime",
    *FEATURE_COLUMNS,
    "is_duplicate",
    *MARKET_COLUMNS,
    *INTERPRETED_COLUMNS,
    "model_version",
    "inference_time_ms",
    "features_array",
    "model_outputs_raw",
    "feature_attributions",
    "created_at",
    "updated_at",
)
DATETIME_COLUMNS = frozenset({"datetime", "created_at", "updated_at"})
JSON_COLUMNS = frozenset({"features_array", "model_outputs_raw", "feature_attributions"})

Row = tuple[Any, ...]
