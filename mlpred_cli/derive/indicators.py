"""Market indicators from the OHLCV candles the caller passes with a prediction.

What runs where:

* Caller's path, ``extract_market_data``: finds the columns, checks what is cheap to check
  and copies. Prices go into one (5, n) float64 block (the journal writes it with one copy).
  For datetime64 times (a DatetimeIndex or a column) and epoch numbers the rows are sorted and
  trimmed here, so only the kept rows are copied. Text times are not parsed here: every row's
  prices and the raw text are copied, and only the last value is read
  (``datetime.fromisoformat``) to turn garbage away early; the market is *unsettled*.
* Writer thread, ``settle_markets`` (at the start of building a batch): parses unsettled text
  times by the rule of ``derive/market_time.py`` (one ISO 8601 parse for the batch), sorts,
  trims and sets ``last_open_time``; a column that cannot be read gives None and the message
  ``extract_market_data`` would have raised. Then ``indicator_columns`` (a batch, stacked
  by candle count) or ``compute_indicators`` (one prediction); both settle what is still
  unsettled themselves.

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

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from mlpred_cli.config import MAX_INDICATOR_CANDLES
from mlpred_cli.derive.finite_values import floats_or_none
from mlpred_cli.derive.market_time import (
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

#: Text time columns up to this many rows are parsed in the writer thread; longer ones on the
#: caller's path, as before. Unparsed, every row is kept (the sort needs all times), so this
#: bounds the journal record (about 70 bytes a row).
MAX_DEFERRED_TEXT_ROWS = 10_000

#: Rows computed together: large enough to amortise numpy's call overhead, small enough for
#: the temporaries to stay in cache.
_CHUNK_ROWS = 256
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_NUMERIC_KINDS = frozenset("iuf")
_NAT = np.iinfo(np.int64).min
_FLOAT64 = np.dtype(np.float64)
#: ``ndarray.min`` / ``max`` without their Python wrappers (a fifth of the cost at 300 rows).
_smallest = np.minimum.reduce
_largest = np.maximum.reduce
_DATETIME64 = {unit: np.dtype(f"datetime64[{unit}]") for unit in ("s", "ms", "us", "ns")}
_UNITS = {dtype: unit for unit, dtype in _DATETIME64.items()}
_MISSING_TIMES = "market_data has missing candle times (NaT)"
#: Column-label lookups kept, by the identity of the columns Index (held, so no id is reused).
_COLUMNS_CACHE_SIZE = 64


@dataclass(frozen=True, slots=True)
class TextTimes:
    """Candle times as the caller's text, not parsed yet: row ``i`` is the UTF-8 text
    ``data[offsets[i]:offsets[i + 1]]``, rows in the caller's order."""

    #: The time column's name (lower-cased, stripped), for messages.
    column: str
    #: int64, one more than the rows, starting at 0.
    offsets: np.ndarray
    data: bytes | memoryview

    def strings(self) -> list[str]:
        """Every row's text."""
        import pyarrow as pa

        count = self.offsets.shape[0] - 1
        offsets = np.ascontiguousarray(self.offsets, dtype=np.int64)
        array = pa.LargeStringArray.from_buffers(
            count, pa.py_buffer(offsets), pa.py_buffer(self.data)
        )
        array.validate(full=True)  # offsets in range, valid UTF-8
        strings: list[str] = array.to_pylist()
        return strings


@dataclass(frozen=True, slots=True, init=False)
class MarketArrays:
    """OHLCV candles as float64 copies, oldest first; NaN where a column was absent.

    Held as one (5, n) block, ``prices`` (the journal writes it with one copy); ``open``,
    ``high``, ``low``, ``close`` and ``volume`` are views of its rows. While ``text_times`` is
    set the market is unsettled: rows are in the caller's order and untrimmed, and
    ``last_open_time`` is only the last row's time as ``datetime.fromisoformat`` reads it;
    ``settle_market`` gives the settled market.
    """

    #: Rows open, high, low, close, volume.
    prices: np.ndarray
    #: Open time of the last candle in microseconds since the epoch, UTC.
    last_open_us: int
    #: Candle times still to parse (an unsettled market), else None.
    text_times: TextTimes | None

    def __init__(
        self,
        open: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray,
        last_open_time: datetime,
        text_times: TextTimes | None = None,
    ) -> None:
        prices = np.array([open, high, low, close, volume], dtype=np.float64)
        object.__setattr__(self, "prices", prices)
        object.__setattr__(self, "last_open_us", (last_open_time - _EPOCH) // _MICROSECOND)
        object.__setattr__(self, "text_times", text_times)

    @classmethod
    def from_prices(
        cls, prices: np.ndarray, last_open_us: int, text_times: TextTimes | None = None
    ) -> MarketArrays:
        """The market of a (5, n) float64 block, taken as it is (not copied)."""
        market = object.__new__(cls)
        object.__setattr__(market, "prices", prices)
        object.__setattr__(market, "last_open_us", last_open_us)
        object.__setattr__(market, "text_times", text_times)
        return market

    @property
    def open(self) -> np.ndarray:
        row: np.ndarray = self.prices[0]
        return row

    @property
    def high(self) -> np.ndarray:
        row: np.ndarray = self.prices[1]
        return row

    @property
    def low(self) -> np.ndarray:
        row: np.ndarray = self.prices[2]
        return row

    @property
    def close(self) -> np.ndarray:
        row: np.ndarray = self.prices[3]
        return row

    @property
    def volume(self) -> np.ndarray:
        row: np.ndarray = self.prices[4]
        return row

    @property
    def last_open_time(self) -> datetime:
        """Open time of the last candle, timezone-aware UTC."""
        return _EPOCH + timedelta(microseconds=self.last_open_us)

    @property
    def settled(self) -> bool:
        """True when the candles are sorted, trimmed and ``last_open_time`` is final."""
        return self.text_times is None


@dataclass(frozen=True, slots=True)
class _Columns:
    """What the caller path needs from a frame's column labels."""

    names: tuple[object, ...]
    positions: dict[str, int]
    #: (row in PRICE_COLUMNS, column position) of each price column present.
    prices: tuple[tuple[int, int], ...]
    #: Positions whose label occurs more than once.
    duplicated: frozenset[int]
    #: The first price column present whose label occurs more than once.
    duplicated_price: str | None
    #: The positions of ``prices`` and their lowest and highest.
    price_positions: tuple[int, ...]
    price_span: tuple[int, int]
    #: Whether the price columns present are adjacent, in the order of PRICE_COLUMNS.
    prices_adjacent: bool


#: Lower-cased name -> position of the first column with that name, cached per column set.
_column_positions = lru_cache(maxsize=256)(column_positions)
_columns_cache: dict[int, tuple[pd.Index, _Columns]] = {}

#: Where rows are taken from: a slice, or row positions (sorted by time); and the last
#: candle's open time in epoch microseconds.
_Window = tuple[slice | np.ndarray, int]


def _labels(index: pd.Index) -> list[object]:
    values = index.array
    if isinstance(values, pd.arrays.ArrowExtensionArray):
        labels: list[object] = values.__arrow_array__().to_pylist()  # 6x faster than tolist()
        return labels
    return index.tolist()


def _frame_columns(index: pd.Index) -> _Columns:
    """The labels of ``index`` looked up once per Index object (labels are immutable)."""
    cached = _columns_cache.get(id(index))
    if cached is not None and cached[0] is index:
        return cached[1]
    names = tuple(_labels(index))
    positions = _column_positions(names)
    counts = Counter(names)
    duplicated = frozenset(p for p, name in enumerate(names) if counts[name] > 1)
    prices = tuple(
        (row, positions[name]) for row, name in enumerate(PRICE_COLUMNS) if name in positions
    )
    price_positions = [position for _row, position in prices]
    columns = _Columns(
        names=names,
        positions=positions,
        prices=prices,
        duplicated=duplicated,
        duplicated_price=next(
            (PRICE_COLUMNS[row] for row, position in prices if position in duplicated), None
        ),
        price_positions=tuple(price_positions),
        price_span=(min(price_positions, default=0), max(price_positions, default=0)),
        prices_adjacent=bool(prices)
        and price_positions == list(range(price_positions[0], price_positions[0] + len(prices))),
    )
    if len(_columns_cache) >= _COLUMNS_CACHE_SIZE:
        _columns_cache.clear()
    _columns_cache[id(index)] = (index, columns)
    return columns


def _column_values(frame: pd.DataFrame, position: int) -> Any:
    """The 1-D array behind one column, not copied (read it before the caller can change
    it); datetime64 as a numpy array, in UTC. Read from the frame's blocks: a column lookup
    builds a Series, 10x the cost."""
    try:
        manager: Any = frame._mgr
        values = manager.blocks[manager.blknos[position]].values
        if values.ndim == 1:
            return values
        location = manager.blklocs[position]
        if isinstance(values, pd.arrays.DatetimeArray):  # its row is slow to build: a view
            return values.asi8[location].view(_DATETIME64[values.unit])  # type: ignore[attr-defined]
        return values[location]
    except (AttributeError, IndexError, TypeError):  # other internals: the public route
        values = frame.iloc[:, position].array
        if isinstance(values, pd.arrays.NumpyExtensionArray):
            return values.to_numpy()
        return values


def _numeric_column(frame: pd.DataFrame, position: int, name: str) -> np.ndarray:
    """One price column as numbers (not copied); InputError when it is not numeric."""
    values = _column_values(frame, position)
    if isinstance(values, np.ndarray) and values.dtype.kind in _NUMERIC_KINDS:
        return values
    dtype = values.dtype
    if dtype.kind not in _NUMERIC_KINDS:
        raise InputError(f"market_data column {name!r} must be numeric, got dtype {dtype}")
    numbers: np.ndarray = values.to_numpy(dtype=np.float64, na_value=np.nan)  # nullable
    return numbers


def _single_float_block(
    frame: pd.DataFrame, columns: _Columns
) -> tuple[np.ndarray, list[int], int | None]:
    """The float64 block holding every price column present, their rows in it and the first
    of them when they are adjacent rows in PRICE_COLUMNS order; LookupError when no block
    holds them all."""
    try:
        blocks = frame._mgr.blocks
    except AttributeError as error:
        raise LookupError from error
    positions = columns.price_positions
    low, high = columns.price_span
    for block in blocks:
        values = block.values
        if values.dtype != _FLOAT64 or not isinstance(values, np.ndarray) or values.ndim != 2:
            continue
        placement = block.mgr_locs
        if placement.is_slice_like:
            span = placement.as_slice
            if span.step in (None, 1):
                start = span.start
                if start <= low and high < span.stop:
                    first = positions[0] - start if columns.prices_adjacent else None
                    return values, [p - start for p in positions], first
                continue
        rows = {position: row for row, position in enumerate(placement.as_array.tolist())}
        if all(position in rows for position in positions):
            return values, [rows[position] for position in positions], None
    raise LookupError


def _price_block(frame: pd.DataFrame, columns: _Columns, selection: slice | np.ndarray) -> Any:
    """The selected rows of the price columns as a new C-contiguous (5, rows) float64 array."""
    try:
        values, rows, first = _single_float_block(frame, columns)
    except LookupError:
        pass
    else:
        if not isinstance(selection, slice):
            picked = values[np.ix_(np.asarray(rows), selection)]
        elif first is not None:  # the usual order: a slice of rows, 3x faster than a list
            picked = values[first : first + len(rows), selection].copy()
        else:
            picked = values[rows, selection]
        if len(rows) == len(PRICE_COLUMNS):
            return picked
        block = np.full((len(PRICE_COLUMNS), picked.shape[1]), np.nan)
        block[[row for row, _position in columns.prices]] = picked
        return block
    picked_columns = {
        row: _numeric_column(frame, position, PRICE_COLUMNS[row])[selection]
        for row, position in columns.prices
    }
    length = picked_columns[PRICE_COLUMNS.index("close")].shape[0]
    block = np.full((len(PRICE_COLUMNS), length), np.nan)
    for row, values in picked_columns.items():
        block[row] = values
    return block


def _microseconds(value: int, unit: str) -> int:
    """An epoch value in ``unit`` as microseconds, rounded down as numpy's cast rounds."""
    if unit == "ns":
        return value // 1000
    if unit == "ms":
        return value * 1000
    if unit == "s":
        return value * 1_000_000
    return value


def _times_window(times: np.ndarray) -> _Window:
    """The rule for the rows kept, on every row's open time (epoch microseconds): sorted by
    time if the last row is not the latest, then the last ``MAX_INDICATOR_CANDLES``."""
    count = times.shape[0]
    last = int(times[-1])
    if count > 1 and last != times.max():
        order = np.argsort(times, kind="stable")[-MAX_INDICATOR_CANDLES:]
        return order, int(times[order[-1]])
    return slice(max(0, count - MAX_INDICATOR_CANDLES), count), last


def _datetime_window(values: np.ndarray, unit: str) -> _Window:
    """``_times_window`` of datetime64 integers (``unit`` since the epoch, UTC), converting
    one value when the last row is the latest (the common case)."""
    if _smallest(values) == _NAT:
        raise InputError(_MISSING_TIMES)
    count = values.shape[0]
    last_value = values.item(-1)
    last = _microseconds(last_value, unit)
    latest = _largest(values)
    if latest != last_value and _microseconds(int(latest), unit) != last:
        return _times_window(
            values.view(f"datetime64[{unit}]").astype("datetime64[us]").view(np.int64)
        )
    return slice(max(0, count - MAX_INDICATOR_CANDLES), count), last


def _text_microseconds(column: pd.Series, name: str) -> np.ndarray:
    """Text times as epoch microseconds by the rule of ``derive/market_time.py``; InputError
    naming the first cell that is not a time."""
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
        raise InputError(_MISSING_TIMES)
    return times.view(np.int64)


def _column_window(frame: pd.DataFrame, position: int, values: Any, name: str) -> _Window:
    """The rows kept by the times of a time column (parsed here, whatever its kind)."""
    if isinstance(values, pd.arrays.DatetimeArray):
        return _datetime_window(values.asi8, values.unit)  # type: ignore[attr-defined]
    if isinstance(values, np.ndarray) and values.dtype.kind == "M":
        unit = _UNITS.get(values.dtype) or np.datetime_data(values.dtype)[0]
        return _datetime_window(values.view(np.int64), unit)
    if values.dtype.kind == "M":  # e.g. an Arrow timestamp
        times = frame.iloc[:, position].to_numpy(dtype="datetime64[us]")
        if np.isnat(times).any():
            raise InputError(_MISSING_TIMES)
        return _times_window(times.view(np.int64))
    if values.dtype.kind in _NUMERIC_KINDS:
        epochs = np.asarray(values) if isinstance(values, np.ndarray) else values.to_numpy()
        if epochs.dtype.kind not in _NUMERIC_KINDS:  # a nullable dtype holding NA
            epochs = values.to_numpy(dtype=np.float64, na_value=np.nan)
        if epochs.dtype.kind == "f" and np.isnan(epochs).any():
            raise InputError(f"market_data column {name!r} has missing times")
        return _times_window(epoch_microseconds(epochs, what=f"market_data column {name!r}"))
    return _times_window(_text_microseconds(frame.iloc[:, position], name))


def _iso_microseconds(text: object) -> int | None:
    """``text`` read by ``datetime.fromisoformat`` (naive = UTC) in epoch microseconds; None
    when it cannot read it."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    epoch = _EPOCH if moment.tzinfo else _NAIVE_EPOCH  # naive arithmetic is 4x faster
    return (moment - epoch) // _MICROSECOND


def _arrow_text(chunked: Any, name: str) -> tuple[TextTimes, int] | None:
    """Arrow strings kept as they are (immutable, so holding them is a copy): the offsets
    and the bytes; None when they hold a null or are not strings."""
    import pyarrow as pa

    array = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
    if array.null_count:
        return None
    type_id = array.type.id
    dtype: type[np.signedinteger[Any]]
    if type_id == pa.lib.Type_LARGE_STRING:
        width, dtype = 8, np.int64
    elif type_id == pa.lib.Type_STRING:
        width, dtype = 4, np.int32
    else:
        return None
    _validity, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(
        offsets_buffer, dtype=dtype, count=len(array) + 1, offset=array.offset * width
    )
    start, end = offsets.item(0), offsets.item(-1)
    data = memoryview(b"" if data_buffer is None else data_buffer)
    moment = _iso_microseconds(str(data[offsets.item(-2) : end], "utf-8"))
    if moment is None:
        return None
    if width == 4 or start:
        offsets = offsets.astype(np.int64) - start
    return TextTimes(name, offsets, data[start:end]), moment


def _object_text(values: np.ndarray, name: str) -> tuple[TextTimes, int] | None:
    """Python strings as one UTF-8 text with offsets; None when a value is not a string or
    the text is not ASCII (then the offsets in characters are not offsets in bytes)."""
    strings = values.tolist()
    moment = _iso_microseconds(strings[-1])
    if moment is None:
        return None
    try:
        text = "".join(strings)
        data = text.encode()
    except (TypeError, UnicodeEncodeError):  # None, NaN, datetime objects: read them now
        return None
    if len(data) != len(text):
        return None
    offsets = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, strings), dtype=np.int64, count=len(strings)), out=offsets[1:])
    return TextTimes(name, offsets, data), moment


def _deferred_text(values: Any, name: str) -> tuple[TextTimes, int] | None:
    """A copy of a text time column to parse later, and its last value's time; None when the
    column is not plain text whose last value reads as ISO 8601 (then it is parsed now)."""
    if len(values) > MAX_DEFERRED_TEXT_ROWS:
        return None
    if isinstance(values, pd.arrays.ArrowExtensionArray):
        return _arrow_text(values.__arrow_array__(), name)
    if isinstance(values, pd.arrays.StringArray):
        values = values.to_numpy(dtype=object)
    if isinstance(values, np.ndarray) and values.dtype == object:
        return _object_text(values, name)
    return None


def extract_market_data(market_data: object) -> MarketArrays | None:
    """Copy the OHLCV candles of a pandas DataFrame for the indicators (caller's path).

    Columns ``open, high, low, close, volume`` are found case-insensitively (only ``close`` is
    required; absent ones become NaN). Times come from a ``datetime`` / ``timestamp`` /
    ``time`` / ``open_time`` / ``date`` column or else a DatetimeIndex, by the rule of
    ``derive/market_time.py`` that ``import-candles`` uses too: datetime64 (naive = UTC, aware
    converted to UTC), epoch numbers (s, ms, us or ns, judged by magnitude; one unit per
    column) or ISO 8601 text. Rows are sorted by time if the last row is not the latest; the
    most recent ``MAX_INDICATOR_CANDLES`` are kept.

    Text times whose last value ``datetime.fromisoformat`` reads (naive = UTC) are kept as
    text: the market is unsettled and ``settle_market`` parses it (where a cell that is not a
    time is reported). None -> None. Raises InputError for anything else it cannot use.
    """
    if market_data is None:
        return None
    if not isinstance(market_data, pd.DataFrame):
        raise InputError(
            f"market_data must be a pandas DataFrame, got {type(market_data).__name__}"
        )
    if len(market_data) == 0:
        raise InputError("market_data is empty")
    columns = _frame_columns(market_data.columns)
    positions = columns.positions
    if "close" not in positions:
        raise InputError("market_data has no 'close' column (names are matched case-insensitively)")
    source = find_time_source(
        columns.names, market_data.index, subject="market_data", positions=positions
    )
    if isinstance(source, pd.DatetimeIndex):
        window = _datetime_window(source.asi8, source.unit)
    else:
        name = str(columns.names[source]).strip().lower()
        if source in columns.duplicated:
            raise InputError(f"market_data has more than one {name!r} column")
        values = _column_values(market_data, source)
        deferred = _deferred_text(values, name)
        if deferred is not None:
            _check_prices(columns)
            text, last_row_time = deferred
            prices = _price_block(market_data, columns, slice(None))
            return MarketArrays.from_prices(prices, last_row_time, text)
        window = _column_window(market_data, source, values, name)
    _check_prices(columns)
    selection, last = window
    return MarketArrays.from_prices(_price_block(market_data, columns, selection), last)


def _check_prices(columns: _Columns) -> None:
    if columns.duplicated_price is not None:
        raise InputError(f"market_data has more than one {columns.duplicated_price!r} column")


def settle_market(market: MarketArrays) -> MarketArrays:
    """The settled form of a market (itself when settled): text times parsed by the rule of
    ``derive/market_time.py``, rows sorted and trimmed as ``extract_market_data`` does, the
    final ``last_open_time``. Raises InputError, worded as ``extract_market_data`` would
    have, when the text is not times."""
    text = market.text_times
    if text is None:
        return market
    times = _text_microseconds(pd.Series(_text_strings(text)), text.column)
    return _settled(market, times)


def _text_strings(text: TextTimes) -> list[str]:
    try:
        return text.strings()
    except ValueError as error:  # pyarrow's ArrowInvalid: a damaged record
        raise InputError(f"market_data column {text.column!r} is not valid text") from error


def _settled(market: MarketArrays, times: np.ndarray) -> MarketArrays:
    if times.shape[0] != market.close.shape[0]:
        raise InputError("market_data has not one candle time per candle")
    selection, last = _times_window(times)
    return MarketArrays.from_prices(np.ascontiguousarray(market.prices[:, selection]), last)


def _reads_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def settle_markets(
    markets: Sequence[MarketArrays | None],
) -> tuple[list[MarketArrays | None], list[str | None]]:
    """``settle_market`` of each market (writer thread, start of a batch), and per market the
    reason it could not be settled: then its market is None (the row has no market data and
    the time of the call) and its message says what ``extract_market_data`` would have raised.

    The text of the whole batch is read as ISO 8601 in one parse (its cost is mostly per
    call); a column that is not wholly read so, or starts with an epoch number, then goes
    through ``settle_market`` alone, which gives the same times (the parse is per value).
    """
    settled: list[MarketArrays | None] = list(markets)
    errors: list[str | None] = [None] * len(settled)
    together: list[tuple[int, int, int]] = []  # position, first and end value in ``strings``
    strings: list[str] = []
    for position, market in enumerate(settled):
        if market is None or market.text_times is None:
            continue
        try:
            column = _text_strings(market.text_times)
        except InputError as error:
            settled[position], errors[position] = None, str(error)
            continue
        if column and not _reads_as_number(column[0]):
            together.append((position, len(strings), len(strings) + len(column)))
            strings.extend(column)
        else:
            together.append((position, -1, -1))
    parsed = np.empty(0, dtype=np.int64)
    if strings:
        times = pd.to_datetime(pd.Series(strings), utc=True, format="ISO8601", errors="coerce")
        parsed = times.to_numpy(dtype="datetime64[us]").view(np.int64)
    for position, start, end in together:
        market = settled[position]
        assert market is not None
        try:
            segment = parsed[start:end]
            if start >= 0 and not (segment == _NAT).any():
                settled[position] = _settled(market, segment)
            else:
                settled[position] = settle_market(market)
        except InputError as error:
            settled[position], errors[position] = None, str(error)
    return settled, errors


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

    A None entry (no market data) gives None in every column, so does an unsettled market
    whose times cannot be read (``settle_markets`` first tells why). Candle stacks of equal
    length are computed together, one set of numpy calls per length (in chunks of a few
    hundred).
    """
    markets = [_settled_or_none(market) for market in markets]
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
    indicator has too few candles or non-finite inputs. An unsettled market is settled first
    (InputError when its times cannot be read)."""
    market = settle_market(market)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        arrays = _indicator_arrays(
            market.high[None], market.low[None], market.close[None], market.volume[None]
        )
    return {name: values[0] for name, values in _columns_or_none(arrays).items()}


def _settled_or_none(market: MarketArrays | None) -> MarketArrays | None:
    if market is None or market.text_times is None:
        return market
    try:
        return settle_market(market)
    except InputError:
        return None
