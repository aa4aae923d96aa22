"""Reading OHLCV candle files (CSV or Parquet) and upserting them into ``market_candles``.

The time column and its unit follow ``derive/market_time.py``, the rule ``log_prediction``
applies to ``market_data`` too: ISO 8601 strings (naive ones are taken as UTC) or epoch
seconds, milliseconds, microseconds or nanoseconds (told apart by magnitude), or datetime64
values. All times returned are timezone-aware UTC. Validation is pandas work here; the SQL
of the upsert is in ``store/candle_writes.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlpred_cli.config import CANDLE_INTERVALS
from mlpred_cli.derive.market_time import find_time_source, parse_times
from mlpred_cli.errors import InputError
from mlpred_cli.store.candle_writes import (
    CANDLE_COLUMNS,
    VALUE_COLUMNS,
    CandleRecord,
    Progress,
    write_candles,
)
from mlpred_cli.store.source import DatabaseSource, opened

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
FILE_FORMATS: tuple[str, ...] = ("csv", "parquet")


@dataclass(frozen=True)
class InvalidRow:
    """A row of the file that was skipped; ``line`` is the 1-based line (CSV) or row (Parquet)."""

    line: int
    reason: str


@dataclass(frozen=True)
class CandleBatch:
    """Valid candles of one file, ready to write, plus what was rejected."""

    frame: pd.DataFrame  # columns CANDLE_COLUMNS; datetime aware UTC; volume may be NaN
    invalid: list[InvalidRow]
    interval_minutes: int
    total_rows: int
    duplicates: int  # rows repeating an earlier (symbol, datetime) of the file; last one wins


@dataclass(frozen=True)
class SymbolRange:
    """How many candles of one symbol the file held, and their first and last open time (UTC)."""

    symbol: str
    rows: int
    first: datetime
    last: datetime


@dataclass(frozen=True)
class ImportReport:
    """Outcome of ``import_candles``: counts of inserted, updated and unchanged candles."""

    inserted: int
    updated: int
    unchanged: int
    invalid: list[InvalidRow]
    interval_minutes: int
    total_rows: int
    duplicates: int
    symbols: list[SymbolRange] = field(default_factory=list)


# ---------------------------------------------------------------- reading


def detect_format(path: Path, file_format: str | None) -> str:
    """``csv`` or ``parquet``: the explicit choice, else from the file extension."""
    if file_format:
        chosen = file_format.lower()
        if chosen not in FILE_FORMATS:
            raise InputError(f"unknown file format '{file_format}': use csv or parquet")
        return chosen
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if ".csv" in suffixes or ".txt" in suffixes:
        return "csv"
    raise InputError(f"cannot tell the format of {path.name}: pass file_format 'csv' or 'parquet'")


def parse_interval(interval: str) -> int:
    """Minutes of a candle interval such as ``15m`` or ``1h``."""
    minutes = CANDLE_INTERVALS.get(interval.strip().lower())
    if minutes is None:
        choices = ", ".join(CANDLE_INTERVALS)
        raise InputError(f"unknown interval '{interval}': use one of {choices}")
    return minutes


def _load(path: Path, file_format: str) -> tuple[pd.DataFrame, int]:
    """The raw table and the offset from a row position to its reported line number."""
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    try:
        if file_format == "csv":
            # Everything as text, so that non-numeric cells can be reported, not coerced.
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
            return frame, 2  # line 1 is the header
        return pd.read_parquet(path), 1
    except (OSError, ValueError, UnicodeDecodeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"cannot read {path.name} as {file_format}: {first}") from None


def _find_columns(frame: pd.DataFrame) -> dict[str, Any]:
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


def infer_interval(frame: pd.DataFrame) -> int:
    """The candle interval in minutes, from the spacing of open times per symbol.

    Unambiguous when the smallest positive spacing is also the most common one and is a
    known interval; raises ``InputError`` otherwise.
    """
    spacings: list[pd.Series] = []
    for _, times in frame.groupby("symbol")["datetime"]:
        diffs = times.drop_duplicates().sort_values().diff().dropna()
        spacings.append(diffs[diffs > pd.Timedelta(0)])
    steps = pd.concat(spacings) if spacings else pd.Series(dtype="timedelta64[ns]")
    if steps.empty:
        raise InputError("cannot infer the candle interval from one candle: pass --interval")
    smallest = steps.min()
    most_common = steps.mode().iloc[0]
    minutes = smallest.total_seconds() / 60
    if smallest != most_common or minutes not in CANDLE_INTERVALS.values():
        raise InputError("cannot infer the candle interval unambiguously: pass --interval")
    return int(minutes)


def read_candle_file(
    path: str | Path,
    *,
    file_format: str | None = None,
    symbol: str | None = None,
    interval: str | None = None,
) -> CandleBatch:
    """Parse and validate a candle file; invalid rows are reported, not raised.

    A row is invalid when its time or symbol is missing or unreadable, a price or the volume
    is not a number, a price is missing or <= 0, high < low, or open or close lies outside
    [low, high]; the first reason found is reported with the row's line.

    ``symbol`` fills in the symbol when the file has no ``symbol`` column (or an empty cell).
    ``interval`` (``15m``, ``1h``, ...) is inferred from the data when ``None``.
    Raises ``InputError`` for an unreadable file, missing columns, or mixed time units.
    """
    path = Path(path)
    chosen_format = detect_format(path, file_format)
    interval_minutes = parse_interval(interval) if interval else None
    raw, line_offset = _load(path, chosen_format)
    columns = _find_columns(raw)
    if isinstance(columns["time"], pd.DatetimeIndex):  # a Parquet file written from such a frame
        raw_times = pd.Series(columns["time"])
    else:
        raw_times = raw.iloc[:, columns["time"]].reset_index(drop=True)
    raw = raw.reset_index(drop=True)
    if columns["symbol"] is None and not symbol:
        raise InputError("the file has no symbol column: pass symbol")

    times, bad_time = parse_times(
        raw_times, what="the time column", locate=lambda position: f"line {position + line_offset}"
    )
    if columns["symbol"] is not None:
        symbols = raw[columns["symbol"]].astype("string").str.strip().replace("", pd.NA)
        if symbol:
            symbols = symbols.fillna(symbol)
    else:
        symbols = pd.Series(symbol, index=raw.index, dtype="string")
    prices: dict[str, pd.Series] = {}
    non_numeric: dict[str, pd.Series] = {}
    for name in (*PRICE_COLUMNS, "volume"):
        prices[name], non_numeric[name] = _numeric(raw[columns[name]])

    reasons = pd.Series("", index=raw.index, dtype=object)

    def flag(mask: pd.Series | np.ndarray, reason: str) -> None:
        target = pd.Series(np.asarray(mask, dtype=bool), index=raw.index) & (reasons == "")
        reasons[target] = reason

    flag(raw_times.isna(), "missing time")
    flag(bad_time, "unreadable time")
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

    invalid_mask = reasons != ""
    invalid = [
        InvalidRow(line=int(position) + line_offset, reason=str(reasons.iat[int(position)]))
        for position in np.flatnonzero(invalid_mask.to_numpy())
    ]
    keep = ~invalid_mask
    frame = pd.DataFrame(
        {
            "symbol": symbols[keep].astype(str),
            "datetime": times[keep],
            **{name: prices[name][keep] for name in (*PRICE_COLUMNS, "volume")},
        }
    )
    before = len(frame)
    frame = frame.drop_duplicates(subset=["symbol", "datetime"], keep="last")
    if interval_minutes is None:
        interval_minutes = infer_interval(frame)
    frame.insert(1, "interval_minutes", interval_minutes)
    frame = frame.sort_values(["symbol", "datetime"]).reset_index(drop=True)
    return CandleBatch(
        frame=frame[list(CANDLE_COLUMNS)],
        invalid=invalid,
        interval_minutes=interval_minutes,
        total_rows=len(raw),
        duplicates=before - len(frame),
    )


# ---------------------------------------------------------------- writing


def candle_records(frame: pd.DataFrame) -> list[CandleRecord]:
    """Rows as plain Python tuples: aware datetimes, floats, and None for a missing volume."""
    times = pd.DatetimeIndex(frame["datetime"]).to_pydatetime()
    values = [frame[name].to_numpy(dtype="float64") for name in VALUE_COLUMNS]
    volume = [None if np.isnan(v) else float(v) for v in values[-1]]
    return list(
        zip(
            frame["symbol"].tolist(),
            frame["interval_minutes"].astype(int).tolist(),
            times,
            values[0].tolist(),
            values[1].tolist(),
            values[2].tolist(),
            values[3].tolist(),
            volume,
            strict=True,
        )
    )


def upsert_candles(
    engine: Engine, frame: pd.DataFrame, *, progress: Progress | None = None
) -> tuple[int, int]:
    """Insert new candles and update changed ones in one transaction; returns (inserted, updated).

    Keyed on (symbol, interval_minutes, datetime); a candle identical to the stored one is left
    untouched, so importing the same data twice writes nothing. PostgreSQL stages the rows
    with COPY, SQLite with executemany; then one set-based upsert (``store/candle_writes.py``).
    """
    return write_candles(engine, candle_records(frame), progress=progress)


def symbol_ranges(frame: pd.DataFrame) -> list[SymbolRange]:
    """Per symbol: number of candles and first/last open time (UTC)."""
    grouped = frame.groupby("symbol")["datetime"].agg(["count", "min", "max"])
    return [
        SymbolRange(
            symbol=str(name),
            rows=int(row["count"]),
            first=row["min"].to_pydatetime(),
            last=row["max"].to_pydatetime(),
        )
        for name, row in grouped.iterrows()
    ]


def import_candles(
    database: DatabaseSource,
    path: str | Path,
    *,
    file_format: str | None = None,
    symbol: str | None = None,
    interval: str | None = None,
    strict: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Read, validate and upsert a candle file into ``market_candles`` of ``database`` (a URL,
    a SQLite ``Path`` or an ``Engine``; the database must be migrated).

    Invalid rows are skipped and listed in the report; with ``strict`` any invalid row raises
    ``InputError`` (naming its line) before anything is written. ``progress`` is called with
    the number of rows written in each batch.
    """
    with opened(database) as engine:
        batch = read_candle_file(path, file_format=file_format, symbol=symbol, interval=interval)
        if strict and batch.invalid:
            first = batch.invalid[0]
            raise InputError(
                f"{len(batch.invalid)} invalid row(s), nothing imported; "
                f"first at line {first.line}: {first.reason}"
            )
        inserted, updated = upsert_candles(engine, batch.frame, progress=progress)
    return ImportReport(
        inserted=inserted,
        updated=updated,
        unchanged=len(batch.frame) - inserted - updated,
        invalid=batch.invalid,
        interval_minutes=batch.interval_minutes,
        total_rows=batch.total_rows,
        duplicates=batch.duplicates,
        symbols=symbol_ranges(batch.frame),
    )
