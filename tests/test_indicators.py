"""Indicators and market-data extraction (pure numpy/pandas, no database).

Each indicator is checked against a plain-Python loop written here from the textbook
definition, against the published Wilder RSI worked example, and on hand-checkable cases.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

from mlpred_cli.config import MAX_INDICATOR_CANDLES
from mlpred_cli.derive.indicators import (
    MarketArrays,
    compute_indicators,
    extract_market_data,
    indicator_columns,
)
from mlpred_cli.errors import InputError

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _market(
    close: list[float] | np.ndarray,
    high: list[float] | np.ndarray | None = None,
    low: list[float] | np.ndarray | None = None,
    volume: list[float] | np.ndarray | None = None,
) -> MarketArrays:
    close_array = np.asarray(close, dtype=float)
    return MarketArrays(
        open=close_array.copy(),
        high=close_array.copy() if high is None else np.asarray(high, dtype=float),
        low=close_array.copy() if low is None else np.asarray(low, dtype=float),
        close=close_array,
        volume=np.ones_like(close_array) if volume is None else np.asarray(volume, dtype=float),
        last_open_time=T0,
    )


def _random_candles(count: int, seed: int = 3) -> MarketArrays:
    rng = np.random.default_rng(seed)
    close = 100.0 + np.cumsum(rng.normal(0.0, 1.0, count))
    high = close + rng.uniform(0.1, 1.5, count)
    low = close - rng.uniform(0.1, 1.5, count)
    volume = rng.uniform(10.0, 100.0, count)
    return _market(close, high, low, volume)


# ------------------------------------------------------------------ loop references


def _wilder_reference(values: list[float], period: int = 14) -> list[float]:
    """Wilder's smoothing: the mean of the first ``period`` values, then (13 * avg + x) / 14."""
    average = sum(values[:period]) / period
    out = [average]
    for value in values[period:]:
        average = (average * (period - 1) + value) / period
        out.append(average)
    return out


def _rsi_reference(close: list[float]) -> float:
    gains, losses = [], []
    for previous, current in pairwise(close):
        gains.append(max(current - previous, 0.0))
        losses.append(max(previous - current, 0.0))
    average_gain = _wilder_reference(gains)[-1]
    average_loss = _wilder_reference(losses)[-1]
    return 100.0 - 100.0 / (1.0 + average_gain / average_loss)


def _ema_reference(values: list[float], period: int) -> float:
    alpha = 2.0 / (period + 1)
    ema = sum(values[:period]) / period
    for value in values[period:]:
        ema = alpha * value + (1.0 - alpha) * ema
    return ema


def _true_ranges(high: list[float], low: list[float], close: list[float]) -> list[float]:
    return [
        max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1]))
        for i in range(1, len(close))
    ]


def _adx_reference(high: list[float], low: list[float], close: list[float]) -> float:
    plus_dm, minus_dm = [], []
    for i in range(1, len(close)):
        up, down = high[i] - high[i - 1], low[i - 1] - low[i]
        plus_dm.append(up if up > down and up > 0 else 0.0)
        minus_dm.append(down if down > up and down > 0 else 0.0)
    true_range = _wilder_reference(_true_ranges(high, low, close))
    plus_di = [100 * p / t for p, t in zip(_wilder_reference(plus_dm), true_range, strict=True)]
    minus_di = [100 * m / t for m, t in zip(_wilder_reference(minus_dm), true_range, strict=True)]
    dx = [100 * abs(p - m) / (p + m) for p, m in zip(plus_di, minus_di, strict=True)]
    return _wilder_reference(dx)[-1]


# ------------------------------------------------------------------ indicators


def test_rsi_matches_published_wilder_example() -> None:
    # The StockCharts "RSI" worked example (Wilder smoothing): first RSI 70.53, then 66.32 ...
    closes = [
        44.3389, 44.0902, 44.1497, 43.6124, 44.3278, 44.8264, 45.0955, 45.4245, 45.8433,
        46.0826, 45.8931, 46.0328, 45.6140, 46.2820, 46.2820, 46.0028, 46.0328, 46.4116,
        46.2222, 45.6439, 46.2122, 46.2521, 45.7137, 46.4515, 45.7835, 45.3548, 44.0288,
    ]  # fmt: skip
    published = {15: 70.53, 16: 66.32, 17: 66.55, 18: 69.41, 19: 66.36, 20: 57.97, 27: 39.99}
    for count, rsi in published.items():
        assert compute_indicators(_market(closes[:count]))["rsi"] == pytest.approx(rsi, abs=0.005)


def test_every_indicator_matches_loop_reference() -> None:
    market = _random_candles(80)
    close, high, low = market.close.tolist(), market.high.tolist(), market.low.tolist()
    volume = market.volume.tolist()
    result = compute_indicators(market)

    assert result["close_price"] == close[-1]
    assert result["volume"] == volume[-1]
    assert result["rsi"] == pytest.approx(_rsi_reference(close), rel=1e-10)
    assert result["macd"] == pytest.approx(
        _ema_reference(close, 12) - _ema_reference(close, 26), rel=1e-10
    )
    atr = _wilder_reference(_true_ranges(high, low, close))[-1]
    assert result["atr_pct"] == pytest.approx(atr / close[-1] * 100, rel=1e-10)
    assert result["trend_strength"] == pytest.approx(_adx_reference(high, low, close), rel=1e-9)

    last20 = close[-20:]
    middle = sum(last20) / 20
    std = math.sqrt(sum((c - middle) ** 2 for c in last20) / 20)
    lower, upper = middle - 2 * std, middle + 2 * std
    assert result["bb_position"] == pytest.approx((close[-1] - lower) / (upper - lower), rel=1e-10)
    assert result["volume_ratio"] == pytest.approx(volume[-1] / (sum(volume[-20:]) / 20))


def test_bollinger_position_by_hand() -> None:
    # 19 closes of 10 and a last close of 12: mean 10.1, population variance
    # (19 * 0.01 + 1.9^2) / 20 = 0.19; bands 10.1 -+ 2 * sqrt(0.19).
    result = compute_indicators(_market([10.0] * 19 + [12.0]))
    std = math.sqrt(0.19)
    assert result["bb_position"] == pytest.approx((12.0 - (10.1 - 2 * std)) / (4 * std))


def test_volume_ratio_by_hand() -> None:
    # volumes 1..25: the last 20 are 6..25, mean 15.5 (current candle included)
    result = compute_indicators(_market([10.0] * 25, volume=list(range(1, 26))))
    assert result["volume_ratio"] == pytest.approx(25 / 15.5)


def test_zero_mean_volume_gives_no_ratio() -> None:
    assert compute_indicators(_market([10.0] * 25, volume=[0.0] * 25))["volume_ratio"] is None


def test_flat_prices() -> None:
    result = compute_indicators(_market([50.0] * 40))
    assert result["rsi"] == 50.0  # no gains, no losses: neither side
    assert result["bb_position"] is None  # zero-width band
    assert result["macd"] == pytest.approx(0.0, abs=1e-9)
    assert result["atr_pct"] == 0.0
    assert result["trend_strength"] == 0.0  # no directional movement


def test_monotonic_prices_give_extreme_rsi() -> None:
    assert compute_indicators(_market(list(range(1, 31))))["rsi"] == 100.0
    assert compute_indicators(_market(list(range(30, 0, -1))))["rsi"] == 0.0


@pytest.mark.parametrize(
    ("name", "minimum"),
    [
        ("rsi", 15),
        ("atr_pct", 15),
        ("bb_position", 20),
        ("volume_ratio", 20),
        ("macd", 26),
        ("trend_strength", 28),
    ],
)
def test_too_few_candles_give_none(name: str, minimum: int) -> None:
    full = _random_candles(minimum)
    short = _random_candles(minimum - 1)
    assert compute_indicators(short)[name] is None
    assert isinstance(compute_indicators(full)[name], float)


def test_single_candle() -> None:
    result = compute_indicators(_market([42.0], volume=[7.0]))
    assert result["close_price"] == 42.0
    assert result["volume"] == 7.0
    assert all(result[name] is None for name in result if name not in ("close_price", "volume"))


def test_nan_input_gives_none_not_zero() -> None:
    market = _random_candles(60)
    market.high[30] = np.nan
    result = compute_indicators(market)
    assert result["atr_pct"] is None
    assert result["trend_strength"] is None
    assert isinstance(result["rsi"], float)


def test_batch_equals_single_and_keeps_order() -> None:
    markets: list[MarketArrays | None] = [
        _random_candles(60, seed=1),
        None,
        _random_candles(30, seed=2),
        _random_candles(60, seed=3),
        _random_candles(10, seed=4),
    ]
    columns = indicator_columns(markets)
    for position, market in enumerate(markets):
        expected = compute_indicators(market) if market is not None else None
        for name, values in columns.items():
            if expected is None or expected[name] is None:
                assert values[position] is None
            else:
                assert values[position] == pytest.approx(expected[name], rel=1e-12), name
                assert values[position] is None or type(values[position]) is float


# ------------------------------------------------------------------ extract_market_data


def _frame(count: int = 30, **columns: object) -> pd.DataFrame:
    rng = np.random.default_rng(count)
    close = 100.0 + np.cumsum(rng.normal(size=count))
    data: dict[str, object] = {
        "open": close,
        "high": close + 1.0,
        "low": close - 1.0,
        "close": close,
        "volume": rng.uniform(1.0, 2.0, count),
    }
    data.update(columns)
    return pd.DataFrame(data)


def test_datetime_index_utc() -> None:
    frame = _frame().set_axis(pd.date_range("2024-03-01", periods=30, freq="15min", tz="UTC"))
    market = extract_market_data(frame)
    assert market is not None
    assert market.last_open_time == datetime(2024, 3, 1, 7, 15, tzinfo=UTC)
    assert market.close.tolist() == frame["close"].tolist()
    assert market.close.dtype == np.float64


def test_naive_index_is_utc() -> None:
    frame = _frame().set_axis(pd.date_range("2024-03-01", periods=30, freq="15min"))
    market = extract_market_data(frame)
    assert market is not None
    assert market.last_open_time == datetime(2024, 3, 1, 7, 15, tzinfo=UTC)


def test_aware_non_utc_index_is_converted() -> None:
    index = pd.date_range("2024-03-01 10:00", periods=30, freq="15min", tz="Europe/Berlin")
    market = extract_market_data(_frame().set_axis(index))
    assert market is not None
    # 17:15 in Berlin (UTC+1 in March before DST) is 16:15 UTC
    assert market.last_open_time == datetime(2024, 3, 1, 16, 15, tzinfo=UTC)
    assert market.last_open_time.utcoffset() is not None


@pytest.mark.parametrize(
    ("name", "last_value"),
    [
        ("timestamp", 1_709_280_000_000),  # epoch ms
        ("time", 1_709_280_000),  # epoch s
        ("open_time", 1_709_280_000.0),  # epoch s as float
        ("Timestamp", 1_709_280_000_000_000),  # epoch us, capitalised name
    ],
)
def test_epoch_time_columns(name: str, last_value: float) -> None:
    step = last_value / 1_709_280_000 * 900  # 15 minutes in the column's unit
    times = [last_value - step * (29 - i) for i in range(30)]
    values = np.array(times, dtype=type(last_value))
    market = extract_market_data(_frame(**{name: values}))
    assert market is not None
    assert market.last_open_time == datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def test_datetime_column_naive_and_aware() -> None:
    naive = pd.date_range("2024-03-01", periods=30, freq="15min")
    market = extract_market_data(_frame(datetime=naive))
    assert market is not None and market.last_open_time == datetime(2024, 3, 1, 7, 15, tzinfo=UTC)
    aware = pd.date_range("2024-03-01 09:00", periods=30, freq="15min", tz="Asia/Tokyo")
    market = extract_market_data(_frame(open_time=aware))
    assert market is not None and market.last_open_time == datetime(2024, 3, 1, 7, 15, tzinfo=UTC)


def test_columns_found_case_insensitively_and_missing_ones_are_nan() -> None:
    frame = pd.DataFrame(
        {"CLOSE": np.arange(1.0, 21.0), "Volume": np.ones(20)},
        index=pd.date_range("2024-03-01", periods=20, freq="1h", tz="UTC"),
    )
    market = extract_market_data(frame)
    assert market is not None
    assert market.close[-1] == 20.0
    assert np.isnan(market.high).all()
    result = compute_indicators(market)
    assert result["rsi"] == 100.0
    assert result["atr_pct"] is None  # needs high and low


def test_unsorted_rows_are_sorted() -> None:
    frame = _frame(10).set_axis(pd.date_range("2024-03-01", periods=10, freq="1h", tz="UTC"))
    shuffled = frame.iloc[[3, 0, 9, 5, 1, 2, 4, 6, 8, 7]]
    market = extract_market_data(shuffled)
    assert market is not None
    assert market.close.tolist() == frame["close"].tolist()
    assert market.last_open_time == datetime(2024, 3, 1, 9, tzinfo=UTC)


def test_keeps_only_most_recent_candles() -> None:
    count = MAX_INDICATOR_CANDLES + 7
    frame = pd.DataFrame(
        {"close": np.arange(count, dtype=float)},
        index=pd.date_range("2024-01-01", periods=count, freq="15min", tz="UTC"),
    )
    market = extract_market_data(frame)
    assert market is not None
    assert len(market.close) == MAX_INDICATOR_CANDLES
    assert market.close[0] == 7.0 and market.close[-1] == count - 1


def test_arrays_are_copies() -> None:
    frame = _frame().set_axis(pd.date_range("2024-03-01", periods=30, freq="15min", tz="UTC"))
    market = extract_market_data(frame)
    frame.iloc[-1, frame.columns.get_loc("close")] = -1.0
    assert market is not None and market.close[-1] != -1.0


def test_integer_and_nullable_prices_are_accepted() -> None:
    frame = pd.DataFrame(
        {
            "close": pd.array([1.0, None, 3.0], dtype="Float64"),
            "volume": np.array([5, 6, 7]),
            "timestamp": [1, 2, 3],
        }
    )
    market = extract_market_data(frame)
    assert market is not None
    assert np.isnan(market.close[1]) and market.volume.tolist() == [5.0, 6.0, 7.0]


def test_none_gives_none() -> None:
    assert extract_market_data(None) is None


@pytest.mark.parametrize(
    ("market_data", "message"),
    [
        ({"close": [1.0]}, "must be a pandas DataFrame, got dict"),
        (pd.DataFrame({"close": [], "time": []}), "empty"),
        (pd.DataFrame({"price": [1.0], "time": [1]}), "no 'close' column"),
        (pd.DataFrame({"close": ["a", "b"], "time": [1, 2]}), "'close' must be numeric"),
        (pd.DataFrame({"close": [1.0, 2.0]}), "needs candle times"),
        (pd.DataFrame({"close": [1.0, 2.0], "timestamp": [1.0, np.nan]}), "missing times"),
        (
            pd.DataFrame({"close": [1.0, 2.0], "time": pd.array([1, None], dtype="Int64")}),
            "missing times",
        ),
        (pd.DataFrame({"close": [1.0], "time": ["not a time"]}), "does not hold times"),
        (
            pd.DataFrame({"close": [1.0, 2.0], "datetime": pd.to_datetime(["2024-01-01", None])}),
            "missing candle times",
        ),
    ],
)
def test_invalid_market_data(market_data: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        extract_market_data(market_data)
