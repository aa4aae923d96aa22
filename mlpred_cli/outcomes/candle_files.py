"""Reading OHLCV candle files (CSV or Parquet) and upserting them into ``market_candles``.

Times in a file may be ISO 8601 strings (naive ones are taken as UTC) or epoch seconds or
milliseconds (told apart by magnitude). All times returned are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlpred_cli.config import CANDLE_IMPORT_BATCH_ROWS, CANDLE_INTERVALS
from mlpred_cli.errors import InputError
from mlpred_cli.store.column_types import UTCDateTime
from mlpred_cli.store.database import SQLITE_BEGIN_OPTION, connection_errors, is_sqlite

#: Time column names recognised, in order of preference (matched case-insensitively).
TIME_COLUMNS: tuple[str, ...] = ("datetime", "timestamp", "time", "date", "open_time")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
FILE_FORMATS: tuple[str, ...] = ("csv", "parquet")
CANDLE_COLUMNS: tuple[str, ...] = (
    "symbol", "interval_minutes", "datetime", "open", "high", "low", "close", "volume",
)  # fmt: skip

#: Epoch values at or above this are milliseconds; below, seconds (1e11 s is the year 5138,
#: 1e11 ms is March 1973).
EPOCH_MS_THRESHOLD = 1e11

Progress = Callable[[int], None]


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
    raise InputError(f"cannot tell the format of {path.name}: pass --format csv|parquet")


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
    by_lower = {str(name).strip().lower(): name for name in frame.columns}
    found: dict[str, Any] = {}
    time_name = next((by_lower[n] for n in TIME_COLUMNS if n in by_lower), None)
    if time_name is None and len(frame.columns) and str(frame.columns[0]).startswith("Unnamed: 0"):
        time_name = frame.columns[0]  # the index column of a pandas-written CSV
    if time_name is None:
        names = ", ".join(TIME_COLUMNS)
        raise InputError(f"no time column: expected one of {names} (any case)")
    found["time"] = time_name
    for name in (*PRICE_COLUMNS, "volume"):
        if name not in by_lower:
            raise InputError(f"no '{name}' column (columns found: {', '.join(map(str, frame))})")
        found[name] = by_lower[name]
    found["symbol"] = by_lower.get("symbol")
    return found


def _parse_times(raw: pd.Series, line_offset: int) -> tuple[pd.Series, pd.Series]:
    """UTC times and a mask of unparseable cells; raises on a file mixing seconds and ms."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        times = raw.dt.tz_convert("UTC")
        return times, times.isna() & raw.notna()
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        times = raw.dt.tz_localize("UTC")
        return times, times.isna() & raw.notna()
    text = raw.astype("string").str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    is_epoch = numbers.notna().to_numpy()
    present = text.notna().to_numpy()
    is_text = present & ~is_epoch
    if is_epoch.any() and is_text.any():
        first_epoch = int(np.argmax(is_epoch))
        first_text = int(np.argmax(is_text))
        line = max(first_epoch, first_text) + line_offset
        raise InputError(f"the time column mixes epoch numbers and ISO text (line {line})")
    if is_epoch.any():
        values = numbers.to_numpy(dtype="float64")
        in_ms = np.abs(values) >= EPOCH_MS_THRESHOLD
        valid_epoch = ~np.isnan(values)
        if in_ms[valid_epoch].any() and (~in_ms[valid_epoch]).any():
            first_unit = in_ms[valid_epoch][0]
            offending = int(np.argmax(valid_epoch & (in_ms != first_unit)))
            units = ("milliseconds", "seconds") if first_unit else ("seconds", "milliseconds")
            raise InputError(
                f"the time column mixes epoch {units[0]} and {units[1]}: "
                f"line {offending + line_offset} is in {units[1]}"
            )
        unit: Literal["ms", "s"] = "ms" if in_ms[valid_epoch].any() else "s"
        times = pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")
        return times, times.isna() & text.notna()
    times = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    return times, times.isna() & text.notna()


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
    path: Path,
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
    chosen_format = detect_format(path, file_format)
    interval_minutes = parse_interval(interval) if interval else None
    raw, line_offset = _load(path, chosen_format)
    raw = raw.reset_index(drop=True)
    columns = _find_columns(raw)
    if columns["symbol"] is None and not symbol:
        raise InputError("the file has no symbol column: pass --symbol")

    times, bad_time = _parse_times(raw[columns["time"]], line_offset)
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

    flag(raw[columns["time"]].isna(), "missing time")
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

_staging_metadata = sa.MetaData()
_staging = sa.Table(
    "candle_staging",
    _staging_metadata,
    sa.Column("symbol", sa.String(20)),
    sa.Column("interval_minutes", sa.Integer),
    sa.Column("datetime", UTCDateTime),
    *(sa.Column(name, sa.Double()) for name in (*PRICE_COLUMNS, "volume")),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)

_VALUE_COLUMNS = (*PRICE_COLUMNS, "volume")
_KEY = "symbol, interval_minutes, datetime"
_ALL = ", ".join(CANDLE_COLUMNS)
_SET = ", ".join(f"{name} = excluded.{name}" for name in _VALUE_COLUMNS)

_PG_UPSERT = f"""
WITH upserted AS (
    INSERT INTO market_candles AS t ({_ALL})
    SELECT {_ALL} FROM candle_staging
    ON CONFLICT ({_KEY}) DO UPDATE SET {_SET}
    WHERE (t.open, t.high, t.low, t.close, t.volume)
          IS DISTINCT FROM (excluded.open, excluded.high, excluded.low, excluded.close,
                            excluded.volume)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
"""

_SQLITE_MATCH = (
    "t.symbol = s.symbol AND t.interval_minutes = s.interval_minutes AND t.datetime = s.datetime"
)
_SQLITE_CHANGED = " OR ".join(f"t.{name} IS NOT s.{name}" for name in _VALUE_COLUMNS)
_SQLITE_COUNT_NEW = f"""
SELECT count(*) FROM candle_staging s
WHERE NOT EXISTS (SELECT 1 FROM market_candles t WHERE {_SQLITE_MATCH})
"""
_SQLITE_COUNT_CHANGED = f"""
SELECT count(*) FROM candle_staging s JOIN market_candles t ON {_SQLITE_MATCH}
WHERE {_SQLITE_CHANGED}
"""
_SQLITE_UPSERT = f"""
INSERT INTO market_candles AS t ({_ALL})
SELECT {_ALL} FROM candle_staging AS s WHERE true
ON CONFLICT ({_KEY}) DO UPDATE SET {_SET}
WHERE {" OR ".join(f"t.{name} IS NOT excluded.{name}" for name in _VALUE_COLUMNS)}
"""


def _records(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Rows as plain Python tuples: aware datetimes, floats, and None for a missing volume."""
    times = pd.DatetimeIndex(frame["datetime"]).to_pydatetime()
    values = [frame[name].to_numpy(dtype="float64") for name in _VALUE_COLUMNS]
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


def _stage_postgres(conn: Connection, records: list[tuple[Any, ...]], progress: Progress) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE candle_staging "
            "(LIKE market_candles INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        with cursor.copy(f"COPY candle_staging ({_ALL}) FROM STDIN") as copy:
            for start in range(0, len(records), CANDLE_IMPORT_BATCH_ROWS):
                batch = records[start : start + CANDLE_IMPORT_BATCH_ROWS]
                for record in batch:
                    copy.write_row(record)
                progress(len(batch))


def _stage_sqlite(conn: Connection, records: list[tuple[Any, ...]], progress: Progress) -> None:
    _staging.drop(conn, checkfirst=True)
    _staging.create(conn)
    insert = _staging.insert()
    for start in range(0, len(records), CANDLE_IMPORT_BATCH_ROWS):
        batch = records[start : start + CANDLE_IMPORT_BATCH_ROWS]
        conn.execute(insert, [dict(zip(CANDLE_COLUMNS, record, strict=True)) for record in batch])
        progress(len(batch))


def upsert_candles(
    engine: Engine, frame: pd.DataFrame, *, progress: Progress | None = None
) -> tuple[int, int]:
    """Insert new candles and update changed ones in one transaction; returns (inserted, updated).

    Keyed on (symbol, interval_minutes, datetime); a candle identical to the stored one is left
    untouched, so importing the same data twice writes nothing. PostgreSQL stages the rows
    with COPY, SQLite with executemany; then one set-based upsert.
    """
    report = progress or (lambda _rows: None)
    records = _records(frame)
    if not records:
        return 0, 0
    with connection_errors(engine.url), engine.connect() as conn:
        if is_sqlite(conn):
            conn = conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        with conn.begin():
            if is_sqlite(conn):
                _stage_sqlite(conn, records, report)
                inserted = int(conn.exec_driver_sql(_SQLITE_COUNT_NEW).scalar_one())
                updated = int(conn.exec_driver_sql(_SQLITE_COUNT_CHANGED).scalar_one())
                conn.exec_driver_sql(_SQLITE_UPSERT)
                _staging.drop(conn)
            else:
                _stage_postgres(conn, records, report)
                row = conn.exec_driver_sql(_PG_UPSERT).one()
                inserted, updated = int(row[0]), int(row[1])
    return inserted, updated


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
    engine: Engine,
    path: Path,
    *,
    file_format: str | None = None,
    symbol: str | None = None,
    interval: str | None = None,
    strict: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Read, validate and upsert a candle file into ``market_candles``.

    Invalid rows are skipped and listed in the report; with ``strict`` any invalid row raises
    ``InputError`` (naming its line) before anything is written. ``progress`` is called with
    the number of rows written so far in each batch.
    """
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
