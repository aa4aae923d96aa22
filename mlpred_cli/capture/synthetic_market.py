"""Synthetic but plausible data: random-walk candles, feature windows and raw model outputs.

Used by ``mlpred log-test`` and the benchmarks; deterministic for a given seed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

FEATURES_PER_VECTOR = 240
RAW_OUTPUTS = 20


def last_closed_candle_open(now: datetime, interval: timedelta) -> datetime:
    """Open time of the most recent candle that has closed by ``now`` (UTC)."""
    seconds = int(interval.total_seconds())
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC) - interval


def random_walk_candles(
    rng: np.random.Generator,
    count: int,
    *,
    end: datetime,
    interval: timedelta = timedelta(minutes=15),
    start_price: float = 100.0,
    volatility: float = 0.004,
) -> pd.DataFrame:
    """``count`` OHLCV candles ending with the candle that opens at ``end`` (UTC index)."""
    log_returns = rng.normal(0.0, volatility, count)
    close = start_price * np.exp(np.cumsum(log_returns))
    open_ = np.concatenate([[start_price], close[:-1]])
    spread = np.abs(rng.normal(0.0, volatility / 2, count)) * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    volume = rng.lognormal(mean=8.0, sigma=0.5, size=count)
    index = pd.date_range(end=end, periods=count, freq=interval, tz="UTC", name="datetime")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


def feature_window(
    rng: np.random.Generator, lookback: int = 60, features: int = FEATURES_PER_VECTOR
) -> np.ndarray:
    """A (lookback x features) window of standardised features; two columns are constant."""
    window = rng.normal(0.0, 1.0, (lookback, features))
    window[:, 0] = 1.0
    window[:, 1] = 0.0
    return window


def raw_model_outputs(rng: np.random.Generator) -> np.ndarray:
    """20 raw outputs in the default layout: 4 returns, 12 direction logits, 4 risk values."""
    returns = rng.normal(0.0, [0.002, 0.004, 0.008, 0.012])
    logits = rng.normal(0.0, 1.5, 12)
    risk = np.array([-0.004, 0.004, -0.01, 0.01]) * rng.uniform(0.5, 1.5, 4)
    return np.concatenate([returns, logits, risk])
