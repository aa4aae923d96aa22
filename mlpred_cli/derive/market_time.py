"""Candle open times: which column holds them and what unit an epoch number is in.

One rule for the candles a caller passes with a prediction (``extract_market_data`` in
``derive/indicators.py``) and for candle files (``read_candle_file`` in
``outcomes/candle_files.py``), so a frame one accepts the other accepts too:

* The time is the first column named (case-insensitively, surrounding spaces ignored) one of
  ``TIME_COLUMNS``; else the frame's DatetimeIndex; else a ``date`` column (after the index,
  so a frame indexed by candle time keeps that time when it also carries a day label); else
  the index column of a pandas-written CSV (a first column named ``Unnamed: 0``).
* datetime64 values: naive ones are UTC, aware ones are converted to UTC.
* Numbers, or text that is all numbers, are epoch times whose unit is told by magnitude:
  below 1e11 seconds, below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds
  (1e11 s is the year 5138, 1e11 ms is March 1973). One column holds one unit: mixing units
  is an error naming the first value in a second unit.
* Any other text is a date-time: ISO 8601 first (naive times are UTC); cells that are not
  ISO 8601 are read by pandas' format inference (``03/01/2026 00:00``, ``2026-03-01 00:00
  UTC``), as ``log_prediction`` always did. Text mixing epoch numbers and date-times is an
  error.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np
import pandas as pd

from mlpred_cli.errors import InputError

#: Time column names recognised, in order of preference (matched case-insensitively).
TIME_COLUMNS: tuple[str, ...] = ("datetime", "timestamp", "time", "open_time")
#: A day label: the time only when there is neither a TIME_COLUMNS column nor a DatetimeIndex.
DATE_COLUMN = "date"
#: Name pandas gives the unnamed index column when it reads a CSV it wrote.
PANDAS_INDEX_COLUMN = "Unnamed: 0"

#: Epoch units, smallest magnitude first, and the magnitude at which the next one starts.
EpochUnit = Literal["s", "ms", "us", "ns"]
EPOCH_UNITS: tuple[EpochUnit, ...] = ("s", "ms", "us", "ns")
EPOCH_UNIT_LIMITS: tuple[float, ...] = (1e11, 1e14, 1e17)
_UNIT_NAMES: dict[str, str] = {
    "s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds",
}  # fmt: skip
#: Microseconds per unit of EPOCH_UNITS.
_MICROSECONDS: tuple[float, ...] = (1e6, 1e3, 1.0, 1e-3)

#: Where times may come from, for messages.
TIME_SOURCES = (
    f"a column named {', '.join(TIME_COLUMNS)} or {DATE_COLUMN} (any case) or a DatetimeIndex"
)

Locate = Callable[[int], str]


def _row(position: int) -> str:
    return f"the value at position {position}"


def column_positions(names: tuple[object, ...]) -> dict[str, int]:
    """Lower-cased, stripped column name -> position of the first column with that name."""
    positions: dict[str, int] = {}
    for position, name in enumerate(names):
        positions.setdefault(str(name).strip().lower(), position)
    return positions


def find_time_source(
    names: tuple[object, ...],
    index: pd.Index,
    *,
    subject: str,
    positions: Mapping[str, int] | None = None,
) -> int | pd.DatetimeIndex:
    """Where a frame's open times are: the position of its time column, or ``index`` itself
    when that is a DatetimeIndex and no column is named for times.

    ``names`` are the frame's column labels (``positions``: their ``column_positions``, when
    the caller has them already); ``subject`` names the frame in the ``InputError`` raised
    when there are no times.
    """
    if positions is None:
        positions = column_positions(names)
    for name in TIME_COLUMNS:
        if name in positions:
            return positions[name]
    if isinstance(index, pd.DatetimeIndex):
        return index
    if DATE_COLUMN in positions:
        return positions[DATE_COLUMN]
    if names and str(names[0]).startswith(PANDAS_INDEX_COLUMN):
        return 0
    raise InputError(f"{subject} needs candle times: {TIME_SOURCES}")


def _unit_index(magnitude: float) -> int:
    for position, limit in enumerate(EPOCH_UNIT_LIMITS):
        if magnitude < limit:
            return position
    return len(EPOCH_UNIT_LIMITS)


def single_epoch_unit(values: np.ndarray, *, what: str, locate: Locate = _row) -> EpochUnit:
    """The unit (``s``, ``ms``, ``us`` or ``ns``) of epoch numbers, NaN ignored.

    Raises ``InputError`` when they mix units, naming the first value (``locate(position)``)
    whose unit differs from the first value's.
    """
    numbers = np.asarray(values, dtype=np.float64)
    valid = ~np.isnan(numbers)
    units = np.searchsorted(np.asarray(EPOCH_UNIT_LIMITS), np.abs(numbers), side="right")
    present = units[valid]
    if present.size == 0:
        return EPOCH_UNITS[0]
    first = int(present[0])
    if (present != first).any():
        offending = int(np.argmax(valid & (units != first)))
        other = int(units[offending])
        first_name, other_name = _UNIT_NAMES[EPOCH_UNITS[first]], _UNIT_NAMES[EPOCH_UNITS[other]]
        raise InputError(
            f"{what} mixes epoch {first_name} and {other_name}: "
            f"{locate(offending)} is in {other_name}"
        )
    return EPOCH_UNITS[first]


def epoch_microseconds(values: np.ndarray, *, what: str) -> np.ndarray:
    """Epoch numbers without NaN (one unit, told by magnitude) as int64 microseconds.

    Raises ``InputError`` when they mix units. Two reductions, no per-value Python work.
    """
    low, high = values.min(), values.max()
    if low < 0:
        magnitudes = np.abs(values)
        low, high = magnitudes.min(), magnitudes.max()
    unit = _unit_index(float(high))
    if _unit_index(float(low)) != unit:
        single_epoch_unit(values, what=what)  # raises, naming the value
    factor = _MICROSECONDS[unit]
    if values.dtype.kind in "iu" and factor >= 1.0:
        result: np.ndarray = values.astype(np.int64) * int(factor)
        return result
    return np.rint(values.astype(np.float64) * factor).astype(np.int64)


def parse_times(raw: pd.Series, *, what: str, locate: Locate = _row) -> tuple[pd.Series, pd.Series]:
    """Aware UTC times of a column and a mask of cells present but not a time.

    Raises ``InputError`` when the column mixes epoch units or epoch numbers and ISO text
    (``what`` names the column, ``locate`` a position).
    """
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        times = raw.dt.tz_convert("UTC")
        return times, times.isna() & raw.notna()
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        times = raw.dt.tz_localize("UTC")
        return times, times.isna() & raw.notna()
    if raw.dtype.kind in "iuf":
        numbers = pd.Series(raw.to_numpy(dtype=np.float64, na_value=np.nan), index=raw.index)
        present = raw.notna()
    elif not _starts_with_number(raw):
        return _datetime_text(raw, what=what, locate=locate)
    else:
        text = raw.astype("string").str.strip()
        numbers = pd.to_numeric(text, errors="coerce")
        is_epoch = numbers.notna().to_numpy()
        is_text = text.notna().to_numpy() & ~is_epoch
        if is_text.any():
            position = int(np.argmax(is_text))
            raise InputError(f"{what} mixes epoch numbers and ISO text ({locate(position)})")
        present = text.notna()
    values = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    unit = single_epoch_unit(values, what=what, locate=locate)
    times = pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")
    return times, times.isna() & present


def _starts_with_number(raw: pd.Series) -> bool:
    """True when the first present cell of a text column reads as a number (an epoch)."""
    present = raw.dropna()
    if present.empty:
        return False
    try:
        float(str(present.iloc[0]))
    except ValueError:
        return False
    return True


def _datetime_text(raw: pd.Series, *, what: str, locate: Locate) -> tuple[pd.Series, pd.Series]:
    """Date-time text: ISO 8601 first (the common case costs one parse), then pandas' format
    inference for the cells ISO 8601 cannot read. An epoch number among them is an error."""
    present = raw.notna()
    times = pd.to_datetime(raw, utc=True, format="ISO8601", errors="coerce")
    unread = times.isna() & present
    if unread.any():
        whole = bool(unread.sum() == present.sum())  # no cell is ISO 8601: skip the subset
        text = (raw if whole else raw[unread]).astype("string").str.strip()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "could not infer format"
            inferred = pd.to_datetime(text, utc=True, errors="coerce")
        still = inferred.isna() & text.notna()
        if still.any() and pd.to_numeric(text[still], errors="coerce").notna().any():
            numeric = pd.to_numeric(text, errors="coerce").notna().to_numpy()
            first = int(np.argmax(numeric))
            position = first if whole else int(np.flatnonzero(unread.to_numpy())[first])
            raise InputError(f"{what} mixes epoch numbers and ISO text ({locate(position)})")
        times = inferred if whole else times.where(~unread, inferred)
    return times, times.isna() & present
