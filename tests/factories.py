"""Building ``ml_predictions`` and ``market_candles`` rows directly, for tests that need data
without going through the logger."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from mlpred_cli.config import HORIZONS
from mlpred_cli.store.prediction_row import WRITE_COLUMNS, Row
from mlpred_cli.store.tables import candles_table, predictions_table


def prediction_row(
    symbol: str = "BTCUSDT",
    moment: datetime | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A complete, plausible prediction row; ``overrides`` replace any column."""
    when = moment or datetime.now(UTC)
    row: dict[str, Any] = {
        "prediction_id": uuid.uuid4(),
        "symbol": symbol,
        "timestamp": int(when.timestamp() * 1000),
        "datetime": when,
        "features_count": 240,
        "features_hash": 123456789,
        "lookback_periods": 1,
        "features_mean": 0.0,
        "features_std": 1.0,
        "features_min": -3.0,
        "features_max": 3.0,
        "nan_count": 0,
        "inf_count": 0,
        "zero_variance_count": None,
        "is_duplicate": False,
        "close_price": 100.0,
        "volume": 1000.0,
        "signal_type": "LONG",
        "signal_confidence": 0.7,
        "signal_timeframe": "1h",
        "risk_score": 0.3,
        "model_version": "v1",
        "inference_time_ms": 5.0,
    }
    for horizon in HORIZONS:
        row[f"predicted_return_{horizon}"] = 0.001
        row[f"direction_{horizon}"] = "LONG"
        row[f"direction_{horizon}_confidence"] = 0.6
    row.update(overrides)
    if "timestamp" not in overrides:
        row["timestamp"] = int(row["datetime"].timestamp() * 1000)
    return row


def insert_predictions(engine: Engine, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert rows into ``ml_predictions``; returns how many."""
    batch = list(rows)
    if batch:
        with engine.begin() as conn:
            conn.execute(predictions_table.insert(), batch)
    return len(batch)


def insert_candles(engine: Engine, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert rows into ``market_candles``; returns how many."""
    batch = list(rows)
    if batch:
        with engine.begin() as conn:
            conn.execute(candles_table.insert(), batch)
    return len(batch)


def candle_row(
    symbol: str, moment: datetime, close: float, *, interval_minutes: int = 15
) -> dict[str, Any]:
    """A candle whose open/high/low bracket ``close``."""
    return {
        "symbol": symbol,
        "interval_minutes": interval_minutes,
        "datetime": moment,
        "open": close,
        "high": close * 1.001,
        "low": close * 0.999,
        "close": close,
        "volume": 10.0,
    }


def install_poison_rule(engine: Engine) -> None:
    """Make the database reject every ``ml_predictions`` row whose symbol is ``POISON`` (a
    CHECK constraint on PostgreSQL, a RAISE trigger on SQLite)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "ALTER TABLE ml_predictions ADD CONSTRAINT no_poison CHECK (symbol <> 'POISON')"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER no_poison BEFORE INSERT ON ml_predictions "
                "WHEN NEW.symbol = 'POISON' BEGIN SELECT RAISE(ABORT, 'poison row'); END"
            )


def written_rows(count: int = 1, moment: datetime | None = None, **overrides: Any) -> list[Row]:
    """Minimal rows as the writer hands them to the store (``WRITE_COLUMNS`` order): a fresh
    ``prediction_id``, ``symbol`` BTCUSDT, ``timestamp`` 0..count-1; ``overrides`` set other
    columns (the same value on every row)."""
    when = moment or datetime.now(UTC)
    rows = []
    for i in range(count):
        values: dict[str, Any] = dict.fromkeys(WRITE_COLUMNS)
        values.update(prediction_id=uuid.uuid4(), symbol="BTCUSDT", timestamp=i, datetime=when,
                      is_duplicate=False, created_at=when, updated_at=when)  # fmt: skip
        values.update(overrides)
        rows.append(tuple(values[name] for name in WRITE_COLUMNS))
    return rows
