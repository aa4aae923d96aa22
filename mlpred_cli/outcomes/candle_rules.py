"""The rules a candle row must pass, applied to one chunk of a candle file at a time.

A row is invalid when its time is missing, unreadable, before ``EARLIEST_CANDLE`` or more
than ``FUTURE_SLACK`` after now (an epoch number in the wrong unit lands there), or not on
the interval's grid (its UTC epoch time is not a multiple of the interval: 15m candles open
at :00, :15, :30, :45; 1d candles at 00:00 UTC); when its symbol is missing; when a price or
the volume is not a number, a price is missing or <= 0, high < low, or open or close lies
outside [low, high]. The first reason found is reported with the row's line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from mlpred_cli.config import CANDLE_INTERVALS
from mlpred_cli.derive.market_time import (
    EPOCH_UNIT_LIMITS,
    EPOCH_UNITS,
    find_time_source,
    parse_times,
)
from mlpred_cli.errors import InputError

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
#: Candles opening before this are implausible (an epoch number misread, a 1970 default).
EARLIEST_CANDLE = datetime(2000, 1, 1, tzinfo=UTC)
#: Candles opening more than this after now are implausible (no candle opens in the future).
FUTURE_SLACK = timedelta(days=1)
#: Spacings needed before candles all further apart than a declared interval contradict it.
CONTRADICTION_MIN_SPACINGS = 10
_UNIT_NAMES: dict[str, str] = {
    "s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds",
}  # fmt: skip
_WHAT = "the time column"


@dataclass(frozen=True)
class InvalidRow:
    """A row of the file that was skipped; ``line`` is the 1-based line (CSV) or row (Parquet)."""

    line: int
    reason: str


@dataclass(frozen=True)
class CheckedChunk:
    """The rows of a chunk that passed (columns symbol, datetime, prices, volume, line; the
    last row of a repeated (symbol, datetime) only) and those that did not."""

    frame: pd.DataFrame
    invalid: list[InvalidRow]
    rows: int
    duplicates: int


def parse_interval(interval: str) -> int:
    """Minutes of a candle interval such as ``15m`` or ``1h``."""
    minutes = CANDLE_INTERVALS.get(interval.strip().lower())
    if minutes is None:
        choices = ", ".join(CANDLE_INTERVALS)
        raise InputError(f"unknown interval '{interval}': use one of {choices}")
    return minutes


def find_columns(frame: pd.DataFrame) -> dict[str, Any]:
    """Labels of the price, volume and symbol columns (symbol None when absent) and where
    the times are: a column's position or the frame's DatetimeIndex (``derive/market_time.py``)."""
    by_lower = {str(name).strip().lower(): name for name in frame.columns}
    found: dict[str, Any] = {
        "time": find_time_source(tuple(frame.columns.tolist()), frame.index, subject="the file")
    }
    for name in (*PRICE_COLUMNS, "volume"):
        if name not in by_lower:
            raise InputError(f"no '{name}' column (columns found: {', '.join(map(str, frame))})")
        found[name] = by_lower[name]
    found["symbol"] = by_lower.get("symbol")
    return found


def _numeric(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Float values and a mask of cells that were present but not numbers."""
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    values = values.where(np.isfinite(values))
    return values, values.isna() & raw.notna()


def time_kind(raw: pd.Series) -> tuple[str, int] | None:
    """How the first present time of a chunk is written and its position: ``datetime``,
    ``text`` or an epoch unit (``s``, ``ms``, ``us``, ``ns``); None when no time is present.
    ``parse_times`` holds a chunk to its first time's kind; this holds a file to its first."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(raw.dtype):
        return "datetime", 0
    present = np.flatnonzero(raw.notna().to_numpy())
    if present.size == 0:
        return None
    position = int(present[0])
    value = raw.iat[position]
    try:
        number = abs(float(str(value).strip()))
    except ValueError:
        return "text", position
    unit = int(np.searchsorted(np.asarray(EPOCH_UNIT_LIMITS), number, side="right"))
    return EPOCH_UNITS[unit], position


def check_same_kind(first: str, kind: str, line: int) -> None:
    """Raise ``InputError`` when a chunk's times (first at ``line``) are written otherwise
    than the file's first time, as ``parse_times`` does within one chunk."""
    if kind == first or "datetime" in (kind, first):
        return
    if kind in _UNIT_NAMES and first in _UNIT_NAMES:
        a, b = _UNIT_NAMES[first], _UNIT_NAMES[kind]
        raise InputError(f"{_WHAT} mixes epoch {a} and {b}: line {line} is in {b}")
    raise InputError(f"{_WHAT} mixes epoch numbers and ISO text (line {line})")


def time_source(raw: pd.DataFrame, columns: dict[str, Any]) -> pd.Series:
    """The chunk's raw time values, positionally indexed."""
    if isinstance(columns["time"], pd.DatetimeIndex):  # a Parquet file written from such a frame
        return pd.Series(columns["time"])
    values: pd.Series = raw.iloc[:, columns["time"]]
    return values.reset_index(drop=True)


def check_chunk(
    raw: pd.DataFrame, first_line: int, *, symbol: str | None, columns: dict[str, Any]
) -> CheckedChunk:
    """Apply the rules (all but the interval grid, see ``off_grid``) to one chunk."""
    raw_times = time_source(raw, columns)
    raw = raw.reset_index(drop=True)
    times, bad_time = parse_times(
        raw_times, what=_WHAT, locate=lambda position: f"line {position + first_line}"
    )
    if columns["symbol"] is not None:
        symbols = raw[columns["symbol"]].astype("string").str.strip().replace("", pd.NA)
        if symbol:
            _check_symbol(symbols, symbol, first_line)
            symbols = symbols.fillna(symbol)
    else:
        symbols = pd.Series(symbol, index=raw.index, dtype="string")
    prices: dict[str, pd.Series] = {}
    non_numeric: dict[str, pd.Series] = {}
    for name in (*PRICE_COLUMNS, "volume"):
        prices[name], non_numeric[name] = _numeric(raw[columns[name]])

    reasons = np.full(len(raw), "", dtype=object)
    unflagged = np.ones(len(raw), dtype=bool)

    def flag(mask: pd.Series | np.ndarray, reason: str) -> None:
        target = np.asarray(mask, dtype=bool) & unflagged
        reasons[target] = reason
        unflagged[target] = False

    latest = pd.Timestamp(datetime.now(UTC) + FUTURE_SLACK)
    flag(raw_times.isna(), "missing time")
    flag(bad_time, "unreadable time")
    flag(times < pd.Timestamp(EARLIEST_CANDLE), f"time before {EARLIEST_CANDLE.date()}")
    flag(times > latest, "time in the future")
    flag(symbols.isna(), "missing symbol")
    for name in (*PRICE_COLUMNS, "volume"):
        flag(non_numeric[name], f"non-numeric {name}")
    for name in PRICE_COLUMNS:
        flag(prices[name].isna(), f"missing {name}")
    for name in PRICE_COLUMNS:
        flag(prices[name] <= 0, f"{name} <= 0")
    flag(prices["high"] < prices["low"], "high < low")
    for name in ("open", "close"):
        flag(
            (prices[name] < prices["low"]) | (prices[name] > prices["high"]),
            f"{name} not between low and high",
        )

    invalid = [
        InvalidRow(line=int(position) + first_line, reason=str(reasons[position]))
        for position in np.flatnonzero(~unflagged)
    ]
    keep = unflagged
    frame = pd.DataFrame(
        {
            "symbol": symbols[keep].astype(str),
            "datetime": times[keep].dt.as_unit("ns"),
            **{name: prices[name][keep] for name in (*PRICE_COLUMNS, "volume")},
            "line": np.flatnonzero(keep).astype(np.int64) + first_line,
        }
    )
    before = len(frame)
    frame = frame.drop_duplicates(subset=["symbol", "datetime"], keep="last")
    return CheckedChunk(frame=frame, invalid=invalid, rows=len(raw), duplicates=before - len(frame))


def _check_symbol(symbols: pd.Series, symbol: str, first_line: int) -> None:
    """A symbol passed for a file with a symbol column must be the one the column says."""
    other = (symbols.notna() & (symbols != symbol)).to_numpy(dtype=bool)
    if other.any():
        position = int(np.argmax(other))
        raise InputError(
            f"the file's symbol column says {symbols.iat[position]} at line "
            f"{position + first_line}, not {symbol}: leave out symbol"
        )


def off_grid(frame: pd.DataFrame, interval_minutes: int) -> np.ndarray:
    """Mask of rows whose open time is not a multiple of the interval in UTC epoch time."""
    nanoseconds = pd.DatetimeIndex(frame["datetime"]).as_unit("ns").asi8
    result: np.ndarray = nanoseconds % (interval_minutes * 60 * 1_000_000_000) != 0
    return result


def spacings(frame: pd.DataFrame) -> pd.Series:
    """Positive spacings between consecutive distinct open times, per symbol."""
    parts: list[pd.Series] = []
    for _, times in frame.groupby("symbol")["datetime"]:
        diffs = times.drop_duplicates().sort_values().diff().dropna()
        parts.append(diffs[diffs > pd.Timedelta(0)])
    return pd.concat(parts) if parts else pd.Series(dtype="timedelta64[ns]")


def infer_interval(frame: pd.DataFrame) -> int:
    """The candle interval in minutes, from the spacing of open times per symbol.

    Unambiguous when the smallest positive spacing is also the most common one and is a
    known interval; raises ``InputError`` otherwise.
    """
    steps = spacings(frame)
    if steps.empty:
        raise InputError("cannot infer the candle interval from one candle: pass --interval")
    smallest = steps.min()
    most_common = steps.mode().iloc[0]
    minutes = smallest.total_seconds() / 60
    if smallest != most_common or minutes not in CANDLE_INTERVALS.values():
        raise InputError("cannot infer the candle interval unambiguously: pass --interval")
    return int(minutes)


def check_declared_interval(frame: pd.DataFrame, interval: str, minutes: int) -> None:
    """Raise ``InputError`` when the candles contradict the declared interval ``minutes``.

    They do when more than half of them are off its grid (shorter candles labelled longer:
    15m candles as 1h are 3/4 off the hourly grid; a few stray times are invalid rows
    instead), or when all of at least ``CONTRADICTION_MIN_SPACINGS`` spacings are longer
    than ``minutes`` (longer candles labelled shorter; a few candles with gaps prove nothing).
    """
    steps = spacings(frame)
    most_common = steps.mode().iloc[0].total_seconds() / 60 if not steps.empty else None
    apart = f", most {most_common:g} min apart" if most_common is not None else ""
    share = float(off_grid(frame, minutes).mean()) if len(frame) else 0.0
    if share > 0.5:
        raise InputError(
            f"interval {interval} contradicts the file: {share:.0%} of its candles are off "
            f"the {minutes} min grid{apart}"
        )
    if len(steps) >= CONTRADICTION_MIN_SPACINGS and steps.min().total_seconds() / 60 > minutes:
        raise InputError(
            f"interval {interval} contradicts the file: its candles are never {minutes} min "
            f"apart{apart}"
        )
