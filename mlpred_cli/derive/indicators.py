"""Market indicators from the OHLCV candles the caller passes with a prediction.

``extract_market_data`` runs on the caller's path: it only finds the columns, copies them to
numpy and finds the time of the last candle. ``compute_indicators`` (one prediction) and
``indicator_columns`` (a batch, stacked by candle count) run in the background.

Definitions (``n`` = number of candles, oldest first; ``t`` = the last candle):

* ``close_price``, ``volume``: of the last candle.
* ``rsi``: RSI 14 (Wilder). Average gain and loss are seeded with the simple mean of the first
  14 close-to-close changes, then ``avg = avg + (x - avg) / 14``;
  ``rsi = 100 * avg_gain / (avg_gain + avg_loss)``. Only rises -> 100, only falls -> 0;
  no change at all (flat prices) -> 50, neither side. Needs n >= 15.
* ``macd``: the MACD line EMA12(close) - EMA26(close), in price units. Each EMA uses
  ``alpha = 2 / (period + 1)`` and is seeded with the simple mean of its first ``period``
  closes (the StockCharts convention). Needs n >= 26.
* ``bb_position``: ``(close - lower) / (upper - lower)`` of Bollinger bands over the last 20
  closes: SMA20 +- 2 population standard deviations. 0 at the lower band, 1 at the upper, may
  leave [0, 1]. None when the 20 closes are all equal (zero-width band). Needs n >= 20.
* ``atr_pct``: ATR 14 (Wilder, seeded with the mean of the first 14 true ranges; a true range
  needs the previous close, so it starts at the second candle) / close * 100. Needs n >= 15.
* ``volume_ratio``: volume of the last candle / mean volume of the last 20 candles, the last
  one included. None when that mean is 0. Needs n >= 20.
* ``trend_strength``: ADX 14 (Wilder): +DM / -DM smoothed like the ATR,
  ``DX = 100 * |+DM14 - -DM14| / (+DM14 + -DM14)`` (equal to the usual +DI / -DI form, the
  true range cancels; 0 when there is no directional movement), ADX seeded with the mean of
  the first 14 DX values, then Wilder-smoothed. Needs n >= 28.

Too few candles, or a missing / non-finite input, gives None, never 0. Only the most recent
``MAX_INDICATOR_CANDLES`` candles are kept; Wilder averages forget their seed geometrically
(weight (13/14)^k), so older history does not change the figures measurably.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np
import pandas as pd

from mlpred_cli.config import MAX_INDICATOR_CANDLES
from mlpred_cli.derive.finite_values import floats_or_none
from mlpred_cli.derive.market_time import (
    TIME_COLUMNS,
    column_positions,
    epoch_microseconds,
    find_time_source,
    parse_times,
)
from mlpred_cli.errors import InputError
from mlpred_cli.store.prediction_row import INDICATOR_COLUMNS

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")

WILDER_PERIOD = 14
MACD_FAST_PERIOD = 12
MACD_SLOW_PERIOD = 26
BOLLINGER_PERIOD = 20
BOLLINGER_WIDTH = 2.0
VOLUME_RATIO_PERIOD = 20

#: Rows computed together: large enough to amortise numpy's call overhead, small enough for
#: the temporaries to stay in cache.
_CHUNK_ROWS = 256
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NUMERIC_KINDS = frozenset("iuf")


@dataclass(frozen=True, slots=True)
class MarketArrays:
    """OHLCV candles as float64 copies, oldest first; NaN where a column was absent."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    #: Open time of the last candle, timezone-aware UTC.
    last_open_time: datetime


#: Lower-cased name -> position of the first column with that name, cached per column set.
_column_positions = lru_cache(maxsize=256)(column_positions)


def _numeric_column(frame: pd.DataFrame, label: object, name: str) -> np.ndarray:
    """One column as a float64 array (not yet copied); InputError when it is not numeric."""
    column = frame[label]
    if isinstance(column, pd.DataFrame):
        raise InputError(f"market_data has more than one {name!r} column")
    if column.dtype.kind not in _NUMERIC_KINDS:
        raise InputError(f"market_data column {name!r} must be numeric, got dtype {column.dtype}")
    values: np.ndarray = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return values


def _times_microseconds(
    frame: pd.DataFrame, names: tuple[object, ...], positions: dict[str, int]
) -> tuple[np.ndarray, bool]:
    """Candle open times as int64 microseconds since the epoch, UTC (naive times are UTC),
    and whether they came from a numeric (epoch) column; the column is found and epochs are
    read by the rule of ``derive/market_time.py``."""
    source = find_time_source(names, frame.index, subject="market_data", positions=positions)
    if isinstance(source, pd.DatetimeIndex):
        index = source
        # asi8: integers in the index's unit since the epoch, UTC for aware indexes (no copy).
        times = index.asi8.view(f"datetime64[{index.unit}]").astype("datetime64[us]", copy=False)
    else:
        name = str(names[source]).strip().lower()
        column = frame[frame.columns[source]]
        if isinstance(column, pd.DataFrame):
            raise InputError(f"market_data has more than one {name!r} column")
        kind = column.dtype.kind
        if kind == "M":
            times = column.to_numpy(dtype="datetime64[us]")
        elif kind in _NUMERIC_KINDS:
            epochs = column.to_numpy()
            if epochs.dtype.kind not in _NUMERIC_KINDS:  # a nullable dtype holding NA
                epochs = column.to_numpy(dtype=np.float64, na_value=np.nan)
            if epochs.dtype.kind == "f" and np.isnan(epochs).any():
                raise InputError(f"market_data column {name!r} has missing times")
            return epoch_microseconds(epochs, what=f"market_data column {name!r}"), True
        else:
            what = f"market_data column {name!r}"
            parsed, unreadable = parse_times(column.reset_index(drop=True), what=what)
            if unreadable.any():
                first = int(np.argmax(unreadable.to_numpy()))
                raise InputError(
                    f"{what} does not hold times: {column.iat[first]!r} at position {first} "
                    "is neither ISO 8601 nor an epoch number"
                )
            times = parsed.to_numpy(dtype="datetime64[us]")
    if np.isnat(times).any():
        raise InputError("market_data has missing candle times (NaT)")
    return times.view(np.int64), False


def extract_market_data(market_data: object) -> MarketArrays | None:
    """Copy the OHLCV candles of a pandas DataFrame for the indicators (caller path).

    Columns ``open, high, low, close, volume`` are found case-insensitively (only ``close`` is
    required; absent ones become NaN). Times come from a ``datetime`` / ``timestamp`` /
    ``time`` / ``date`` / ``open_time`` column or else a DatetimeIndex, by the rule of
    ``derive/market_time.py`` that ``import-candles`` uses too: datetime64 (naive = UTC, aware
    converted to UTC), epoch numbers (s, ms, us or ns, judged by magnitude; one unit per
    column) or ISO 8601 text. Rows are sorted
    by time if the last row is not the latest. Keeps the most recent ``MAX_INDICATOR_CANDLES``.
    None -> None. Raises InputError for anything else it cannot use.
    """
    if market_data is None:
        return None
    if not isinstance(market_data, pd.DataFrame):
        raise InputError(
            f"market_data must be a pandas DataFrame, got {type(market_data).__name__}"
        )
    row_count = len(market_data)
    if row_count == 0:
        raise InputError("market_data is empty")
    names = tuple(market_data.columns.tolist())
    positions = _column_positions(names)
    if "close" not in positions:
        raise InputError("market_data has no 'close' column (names are matched case-insensitively)")
    times, numeric_time = _times_microseconds(market_data, names, positions)

    present = [name for name in PRICE_COLUMNS if name in positions]
    # One to_numpy() of the whole frame is far cheaper than a column lookup per name, but only
    # worth trying when every column is a price (or a numeric time) column.
    matrix = None
    if len(positions) == len(market_data.columns) and all(
        name in PRICE_COLUMNS or (name in TIME_COLUMNS and numeric_time) for name in positions
    ):
        matrix = market_data.to_numpy()
    columns: dict[str, np.ndarray] = {}
    for name in present:
        if matrix is not None and matrix.dtype.kind in _NUMERIC_KINDS:
            columns[name] = matrix[:, positions[name]]
        else:
            columns[name] = _numeric_column(market_data, market_data.columns[positions[name]], name)

    last_time = times[-1]
    if row_count > 1 and last_time != times.max():
        order = np.argsort(times, kind="stable")[-MAX_INDICATOR_CANDLES:]
        last_time = times[order[-1]]
        selected = {name: values[order] for name, values in columns.items()}
    else:
        keep = slice(max(0, row_count - MAX_INDICATOR_CANDLES), row_count)
        selected = {name: values[keep] for name, values in columns.items()}
    length = len(selected["close"])
    arrays = {
        name: (
            np.array(selected[name], dtype=np.float64, copy=True)
            if name in selected
            else np.full(length, np.nan)
        )
        for name in PRICE_COLUMNS
    }
    return MarketArrays(
        open=arrays["open"],
        high=arrays["high"],
        low=arrays["low"],
        close=arrays["close"],
        volume=arrays["volume"],
        last_open_time=_EPOCH + timedelta(microseconds=int(last_time)),
    )


@lru_cache(maxsize=64)
def _decay_weights(length: int, alpha: float) -> tuple[float, np.ndarray]:
    """Weights of ``avg = avg + alpha * (x - avg)`` unrolled over ``length`` values: the
    seed's weight and each value's weight in the last average (oldest first)."""
    decay = 1.0 - alpha
    weights = alpha * decay ** np.arange(length - 1, -1, -1, dtype=np.float64)
    weights.flags.writeable = False
    return decay**length, weights


def _recursive_last(series: np.ndarray, period: int, alpha: float) -> np.ndarray:
    """Last value of ``avg = avg + alpha * (x - avg)`` along axis 1, seeded with the mean of
    the first ``period`` values. The recursion unrolled into one weighted sum (a matrix-vector
    product): the same terms as the loop, and many times faster than running the filter when
    only the last value is needed."""
    seed: np.ndarray = series[:, :period].sum(axis=1) / period
    rest = series[:, period:]
    seed_weight, weights = _decay_weights(rest.shape[1], alpha)
    last: np.ndarray = seed_weight * seed + rest @ weights
    return last


def _recursive_series(series: np.ndarray, period: int, alpha: float) -> np.ndarray:
    """Every value of the recursion of ``_recursive_last``: rows x (length - period + 1),
    the first column being the seed. A first-order IIR filter (``scipy.signal.lfilter``)."""
    seed: np.ndarray = series[:, :period].sum(axis=1) / period
    rest = series[:, period:]
    if rest.shape[1] == 0:
        return seed[:, None]
    from scipy.signal import lfilter  # 1.6 s to import: loaded by the writer, not at start-up

    smoothed: np.ndarray
    smoothed, _ = lfilter(
        [alpha], [1.0, alpha - 1.0], rest, axis=1, zi=((1.0 - alpha) * seed)[:, None]
    )
    return np.concatenate([seed[:, None], smoothed], axis=1)


def _indicator_arrays(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> dict[str, np.ndarray]:
    """Every indicator for candle stacks of equal length (rows x candles); NaN means None."""
    rows, candles = close.shape
    nan_column = np.full(rows, np.nan)
    last_close = close[:, -1]
    result = {"close_price": last_close, "volume": volume[:, -1]}
    for name in INDICATOR_COLUMNS[2:]:
        result[name] = nan_column

    if candles > WILDER_PERIOD:
        change = np.diff(close, axis=1)
        previous_close = close[:, :-1]
        true_range = np.maximum(
            high[:, 1:] - low[:, 1:],
            np.maximum(np.abs(high[:, 1:] - previous_close), np.abs(low[:, 1:] - previous_close)),
        )
        averages = _recursive_last(
            np.concatenate([np.maximum(change, 0.0), np.maximum(-change, 0.0), true_range]),
            WILDER_PERIOD,
            1.0 / WILDER_PERIOD,
        )
        avg_gain, avg_loss, atr = averages[:rows], averages[rows : 2 * rows], averages[2 * rows :]
        movement = avg_gain + avg_loss
        result["rsi"] = np.where(movement == 0.0, 50.0, 100.0 * avg_gain / movement)
        result["atr_pct"] = atr / last_close * 100.0

    if candles >= 2 * WILDER_PERIOD:
        up_move = np.diff(high, axis=1)
        down_move = -np.diff(low, axis=1)
        plus_dm = np.where((up_move > down_move) & (up_move > 0.0), up_move, 0.0)
        minus_dm = np.where((down_move > up_move) & (down_move > 0.0), down_move, 0.0)
        # NaN compares False: keep it, so a gap in high/low cannot pass for "no movement".
        gap = np.isnan(up_move) | np.isnan(down_move)
        plus_dm[gap] = np.nan
        minus_dm[gap] = np.nan
        smoothed = _recursive_series(
            np.concatenate([plus_dm, minus_dm]), WILDER_PERIOD, 1.0 / WILDER_PERIOD
        )
        plus_smoothed, minus_smoothed = smoothed[:rows], smoothed[rows:]
        directional = plus_smoothed + minus_smoothed
        dx = np.where(
            directional == 0.0, 0.0, 100.0 * np.abs(plus_smoothed - minus_smoothed) / directional
        )
        result["trend_strength"] = _recursive_last(dx, WILDER_PERIOD, 1.0 / WILDER_PERIOD)

    if candles >= MACD_SLOW_PERIOD:
        fast = _recursive_last(close, MACD_FAST_PERIOD, 2.0 / (MACD_FAST_PERIOD + 1))
        slow = _recursive_last(close, MACD_SLOW_PERIOD, 2.0 / (MACD_SLOW_PERIOD + 1))
        result["macd"] = fast - slow

    if candles >= BOLLINGER_PERIOD:
        window = close[:, -BOLLINGER_PERIOD:]
        middle = window.sum(axis=1) / BOLLINGER_PERIOD
        deviation = window - middle[:, None]
        population_std = np.sqrt((deviation * deviation).sum(axis=1) / BOLLINGER_PERIOD)
        band_width = 2.0 * BOLLINGER_WIDTH * population_std
        flat = window.max(axis=1) == window.min(axis=1)
        position = (last_close - (middle - band_width / 2.0)) / band_width
        result["bb_position"] = np.where(flat, np.nan, position)

    if candles >= VOLUME_RATIO_PERIOD:
        result["volume_ratio"] = volume[:, -1] / (
            volume[:, -VOLUME_RATIO_PERIOD:].sum(axis=1) / VOLUME_RATIO_PERIOD
        )
    return result


def _columns_or_none(arrays: dict[str, np.ndarray]) -> dict[str, list[float | None]]:
    """Indicator arrays as lists of plain Python floats, None where a value is not finite."""
    matrix = np.stack(list(arrays.values()))
    return dict(zip(arrays, floats_or_none(matrix), strict=True))


def indicator_columns(markets: Sequence[MarketArrays | None]) -> dict[str, list[float | None]]:
    """Indicators of a batch as ``ml_predictions`` columns aligned with ``markets``.

    A None entry (no market data) gives None in every column. Candle stacks of equal length
    are computed together, one set of numpy calls per length (in chunks of a few hundred).
    """
    columns: dict[str, list[float | None]] = {
        name: [None] * len(markets) for name in INDICATOR_COLUMNS
    }
    groups: dict[int, list[int]] = {}
    for position, market in enumerate(markets):
        if market is not None:
            groups.setdefault(len(market.close), []).append(position)
    chunks = [
        positions[start : start + _CHUNK_ROWS]
        for positions in groups.values()
        for start in range(0, len(positions), _CHUNK_ROWS)
    ]
    for positions in chunks:
        group = [market for market in (markets[position] for position in positions) if market]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            arrays = _indicator_arrays(
                np.stack([market.high for market in group]),
                np.stack([market.low for market in group]),
                np.stack([market.close for market in group]),
                np.stack([market.volume for market in group]),
            )
        for name, values in _columns_or_none(arrays).items():
            target = columns[name]
            for position, value in zip(positions, values, strict=True):
                target[position] = value
    return columns


def compute_indicators(market: MarketArrays) -> dict[str, float | None]:
    """The indicators of one prediction's candles (see the module docstring); None when an
    indicator has too few candles or non-finite inputs."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        arrays = _indicator_arrays(
            market.high[None], market.low[None], market.close[None], market.volume[None]
        )
    return {name: values[0] for name, values in _columns_or_none(arrays).items()}
