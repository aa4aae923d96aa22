"""Micro-benchmark of the numeric pieces of the prediction logger (no database).

Run: .venv/bin/python bench/bench_numeric.py

Caller-path functions are timed per call; background functions per row of a batch. Each
figure is compared with a baseline measured in the same run: the bare copy a caller-path
function cannot avoid, or a straightforward per-row implementation of the background work
(pandas / per-row numpy), so the ratios show what validation costs and what batching buys.
"""

from __future__ import annotations

import hashlib
import timeit
from collections.abc import Callable

import numpy as np
import pandas as pd

from mlpred_cli.derive.feature_stats import as_feature_array, feature_stats_columns
from mlpred_cli.derive.indicators import compute_indicators, extract_market_data, indicator_columns
from mlpred_cli.derive.raw_outputs import (
    as_raw_outputs,
    interpret_raw_outputs,
    validate_predictions,
)

BATCH = 1_000
CANDLES = 300


def per_call_us(function: Callable[[], object], calls: int) -> float:
    """Best of 5 repeats, microseconds per call."""
    return min(timeit.repeat(function, number=calls, repeat=5)) / calls * 1e6


def report(name: str, ours: float, baseline: float, baseline_name: str) -> None:
    print(
        f"{name:<44} {ours:9.2f} us   baseline {baseline:9.2f} us ({baseline_name})"
        f"   ratio {ours / baseline:6.2f}"
    )


def candles(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 + np.cumsum(rng.normal(size=CANDLES))
    return pd.DataFrame(
        {
            "open": close,
            "high": close + rng.uniform(0.1, 1.0, CANDLES),
            "low": close - rng.uniform(0.1, 1.0, CANDLES),
            "close": close,
            "volume": rng.uniform(1.0, 100.0, CANDLES),
        },
        index=pd.date_range("2024-01-01", periods=CANDLES, freq="15min", tz="UTC"),
    )


def naive_feature_stats(arrays: list[np.ndarray]) -> list[tuple[object, ...]]:
    rows = []
    for array in arrays:
        vector = array[-1] if array.ndim == 2 else array
        finite = vector[np.isfinite(vector)]
        digest = hashlib.md5(array.astype(np.float32).tobytes()).hexdigest()
        rows.append(
            (
                float(finite.mean()),
                float(finite.std()),
                float(finite.min()),
                float(finite.max()),
                int(np.isnan(vector).sum()),
                int(np.isinf(vector).sum()),
                int(digest[:15], 16),
            )
        )
    return rows


def pandas_indicators(frame: pd.DataFrame) -> dict[str, float]:
    """A typical pandas implementation (ewm-based, unseeded) as the per-row baseline."""
    close, high, low = frame["close"], frame["high"], frame["low"]
    change = close.diff()
    gain = change.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    loss = (-change).clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    previous = close.shift()
    true_range = pd.concat(
        [high - low, (high - previous).abs(), (low - previous).abs()], axis=1
    ).max(axis=1)
    middle = close.rolling(20).mean()
    std = close.rolling(20).std(ddof=0)
    return {
        "rsi": float(100 - 100 / (1 + gain.iloc[-1] / loss.iloc[-1])),
        "macd": float(
            close.ewm(span=12, adjust=False).mean().iloc[-1]
            - close.ewm(span=26, adjust=False).mean().iloc[-1]
        ),
        "bb": float((close.iloc[-1] - (middle - 2 * std).iloc[-1]) / (4 * std.iloc[-1])),
        "atr": float(true_range.ewm(alpha=1 / 14, adjust=False).mean().iloc[-1]),
        "vr": float(frame["volume"].iloc[-1] / frame["volume"].iloc[-20:].mean()),
    }


def per_row_interpret(raw: np.ndarray) -> list[tuple[object, ...]]:
    out = []
    for row in raw:
        logits = row[4:16].reshape(4, 3)
        exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = exponentials / exponentials.sum(axis=1, keepdims=True)
        out.append((probabilities.argmax(axis=1).tolist(), probabilities.max(axis=1).tolist()))
    return out


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"caller path (per call); background (per row, batches of {BATCH:,})\n")

    vector = rng.normal(size=240)
    report(
        "as_feature_array(240-float ndarray)",
        per_call_us(lambda: as_feature_array(vector), 20_000),
        per_call_us(lambda: vector.copy(), 20_000),
        "ndarray.copy",
    )
    as_list = vector.tolist()
    report(
        "as_feature_array(240-float list)",
        per_call_us(lambda: as_feature_array(as_list), 5_000),
        per_call_us(lambda: np.array(as_list), 5_000),
        "np.array(list)",
    )
    raw_vector = rng.normal(size=20)
    report(
        "as_raw_outputs(20-float ndarray)",
        per_call_us(lambda: as_raw_outputs(raw_vector), 20_000),
        per_call_us(lambda: raw_vector.copy(), 20_000),
        "ndarray.copy",
    )
    predictions = {
        "returns_1h": 0.01,
        "direction_1h": "LONG",
        "confidence_1h": 0.7,
        "signal_type": "LONG",
        "signal_confidence": 0.7,
        "primary_timeframe": "1h",
        "risk_score": 0.3,
        "max_drawdown": -0.01,
        "max_rally": 0.02,
    }
    report(
        "validate_predictions(9 keys)",
        per_call_us(lambda: validate_predictions(predictions), 20_000),
        per_call_us(lambda: dict(predictions), 20_000),
        "dict copy",
    )
    frame = candles(1)
    report(
        f"extract_market_data({CANDLES} candles, DatetimeIndex)",
        per_call_us(lambda: extract_market_data(frame), 2_000),
        per_call_us(
            lambda: (frame[["open", "high", "low", "close", "volume"]].to_numpy(), frame.index[-1]),
            2_000,
        ),
        "df[cols].to_numpy",
    )
    epoch_frame = frame.reset_index(names="timestamp")
    epoch_frame["timestamp"] = epoch_frame["timestamp"].astype("int64") // 1_000
    report(
        f"extract_market_data({CANDLES} candles, epoch ms col)",
        per_call_us(lambda: extract_market_data(epoch_frame), 2_000),
        per_call_us(
            lambda: (epoch_frame[["open", "high", "low", "close", "volume"]].to_numpy(),),
            2_000,
        ),
        "df[cols].to_numpy",
    )

    print()
    vectors = [as_feature_array(rng.normal(size=240)) for _ in range(BATCH)]
    report(
        "feature_stats_columns(240 vector)",
        per_call_us(lambda: feature_stats_columns(vectors), 3) / BATCH,
        per_call_us(lambda: naive_feature_stats(vectors), 3) / BATCH,
        "per-row numpy",
    )
    windows = [as_feature_array(rng.normal(size=(60, 240))) for _ in range(BATCH // 4)]
    report(
        "feature_stats_columns(60x240 window)",
        per_call_us(lambda: feature_stats_columns(windows), 2) / len(windows),
        per_call_us(lambda: naive_feature_stats(windows), 2) / len(windows),
        "per-row numpy",
    )
    md5_only = [np.ascontiguousarray(window, dtype="<f4") for window in windows]
    print(
        f"{'  of which MD5 of the 57,600-byte window':<44} "
        f"{per_call_us(lambda: [hashlib.md5(w).digest() for w in md5_only], 2) / len(windows):9.2f}"
        " us"
    )
    markets = [extract_market_data(candles(seed)) for seed in range(BATCH)]
    frames = [candles(seed) for seed in range(50)]
    pandas_us = per_call_us(lambda: [pandas_indicators(f) for f in frames], 2) / len(frames)
    report(
        f"indicator_columns({CANDLES} candles)",
        per_call_us(lambda: indicator_columns(markets), 3) / BATCH,
        pandas_us,
        "pandas per row",
    )
    single = markets[0]
    assert single is not None
    report(
        f"compute_indicators({CANDLES} candles, one row)",
        per_call_us(lambda: compute_indicators(single), 2_000),
        pandas_us,
        "pandas per row",
    )
    raw = rng.normal(size=(BATCH, 20))
    report(
        "interpret_raw_outputs",
        per_call_us(lambda: interpret_raw_outputs(raw), 20) / BATCH,
        per_call_us(lambda: per_row_interpret(raw), 3) / BATCH,
        "per-row softmax",
    )


if __name__ == "__main__":
    main()
