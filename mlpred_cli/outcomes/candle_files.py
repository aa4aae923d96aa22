"""Importing OHLCV candle files (CSV or Parquet) into ``market_candles``, in bounded memory.

The file is read in chunks (``outcomes/candle_chunks.py``) and each chunk is checked
(``outcomes/candle_rules.py``) and staged in the database as it comes, so memory does not
grow with the file. What needs more than one chunk carries over: the way times are written
(one epoch unit or date-time text per file), the interval (inferred from, or checked
against, the first ``INTERVAL_SAMPLE_ROWS`` valid rows, whatever the chunk size), and the
keys seen (a (symbol, datetime) repeated anywhere in the file: the last row wins).

The time column and its unit follow ``derive/market_time.py``, the rule ``log_prediction``
applies to ``market_data`` too. All times returned are timezone-aware UTC. The SQL of the
staging and upsert is in ``store/candle_writes.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlpred_cli.config import CANDLE_IMPORT_BATCH_ROWS
from mlpred_cli.errors import InputError
from mlpred_cli.outcomes.candle_chunks import FILE_FORMATS, check_candle_path, detect_format
from mlpred_cli.outcomes.candle_chunks import read_chunks as _read_chunks
from mlpred_cli.outcomes.candle_rules import (
    PRICE_COLUMNS,
    InvalidRow,
    check_chunk,
    check_declared_interval,
    check_same_kind,
    find_columns,
    infer_interval,
    off_grid,
    parse_interval,
    time_kind,
    time_source,
)
from mlpred_cli.store.candle_writes import CANDLE_COLUMNS, Progress, staged_candles
from mlpred_cli.store.source import DatabaseSource, opened

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = [
    "FILE_FORMATS",
    "PRICE_COLUMNS",
    "CandleBatch",
    "ImportReport",
    "InvalidRow",
    "SymbolRange",
    "detect_format",
    "import_candles",
    "infer_interval",
    "parse_interval",
    "read_candle_file",
]

#: The interval is inferred from (or a declared one checked against) this many valid rows.
INTERVAL_SAMPLE_ROWS = 100_000
#: An import's report keeps the invalid rows with the lowest lines, this many, and a count.
INVALID_ROWS_KEPT = 1_000


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
    """Outcome of ``import_candles``: counts of inserted, updated and unchanged candles.

    ``invalid`` lists the first ``INVALID_ROWS_KEPT`` invalid rows; ``invalid_count`` counts
    them all."""

    inserted: int
    updated: int
    unchanged: int
    invalid: list[InvalidRow]
    interval_minutes: int
    total_rows: int
    duplicates: int
    symbols: list[SymbolRange] = field(default_factory=list)
    invalid_count: int = 0


class _InvalidRows:
    """The invalid rows with the lowest lines (at most ``keep``, None: all) and their count."""

    def __init__(self, keep: int | None) -> None:
        self.keep = keep
        self.count = 0
        self._rows: list[InvalidRow] = []

    def add(self, rows: list[InvalidRow]) -> None:
        self.count += len(rows)
        self._rows.extend(rows)
        if self.keep is not None and len(self._rows) > 2 * self.keep:
            self._rows = self.first()

    def first(self) -> list[InvalidRow]:
        rows = sorted(self._rows, key=lambda row: row.line)
        return rows if self.keep is None else rows[: self.keep]


class _CandleStream:
    """Valid, interval-checked candles of a file, chunk by chunk, and what was rejected."""

    def __init__(
        self,
        path: Path,
        *,
        file_format: str | None,
        symbol: str | None,
        interval: str | None,
        chunk_rows: int,
        keep_invalid: int | None,
    ) -> None:
        self.path = path
        self.format = detect_format(path, file_format)
        self.symbol = symbol
        self.interval = interval
        self.interval_minutes = parse_interval(interval) if interval else None
        self.chunk_rows = chunk_rows
        self.invalid = _InvalidRows(keep_invalid)
        self.total_rows = 0
        self.valid_rows = 0
        self.duplicates = 0
        self.overlapping = False  # a key may repeat one of an earlier chunk
        self._newest: dict[str, int] = {}  # per symbol, the latest open time staged (ns)
        self._kind: str | None = None
        self._columns: dict[str, Any] | None = None

    def chunks(self) -> Iterator[pd.DataFrame]:
        """Valid candles (columns CANDLE_COLUMNS and line), a chunk at a time."""
        pending: list[tuple[pd.DataFrame, list[InvalidRow]]] = []
        sampled = 0
        settled = False
        for raw in _read_chunks(self.path, self.format, self.chunk_rows):
            frame, invalid = self._check(raw.frame, raw.first_line)
            if settled:
                yield self._on_grid(frame, invalid)
                continue
            pending.append((frame, invalid))
            sampled += len(frame)
            if sampled >= INTERVAL_SAMPLE_ROWS:
                self._settle(pending)
                settled = True
                for frame, invalid in pending:
                    yield self._on_grid(frame, invalid)
                pending = []
        if not settled:
            self._settle(pending)
            for frame, invalid in pending:
                yield self._on_grid(frame, invalid)
        if self.valid_rows == 0:
            raise self._nothing_valid()

    def _check(self, raw: pd.DataFrame, first_line: int) -> tuple[pd.DataFrame, list[InvalidRow]]:
        if self._columns is None:
            self._columns = find_columns(raw)
            if self._columns["symbol"] is None and not self.symbol:
                raise InputError("the file has no symbol column: pass symbol")
        kind = time_kind(time_source(raw, self._columns))
        if kind is not None:
            if self._kind is None:
                self._kind = kind[0]
            check_same_kind(self._kind, kind[0], kind[1] + first_line)
        checked = check_chunk(raw, first_line, symbol=self.symbol, columns=self._columns)
        self.total_rows += checked.rows
        self.duplicates += checked.duplicates
        return checked.frame, checked.invalid

    def _settle(self, pending: list[tuple[pd.DataFrame, list[InvalidRow]]]) -> None:
        """Infer the interval from, or check the declared one against, the first rows."""
        sample = pd.concat([frame for frame, _ in pending]) if pending else None
        if sample is None or sample.empty:
            return  # no valid row at all: _nothing_valid says so
        sample = sample.drop_duplicates(subset=["symbol", "datetime"], keep="last")
        if self.interval_minutes is None:
            self.interval_minutes = infer_interval(sample)
        elif self.interval is not None:
            check_declared_interval(sample, self.interval, self.interval_minutes)

    def _on_grid(self, frame: pd.DataFrame, invalid: list[InvalidRow]) -> pd.DataFrame:
        """Rows off the interval's grid become invalid; the rest get the interval."""
        if self.interval_minutes is not None and not frame.empty:
            wrong = off_grid(frame, self.interval_minutes)
            if wrong.any():
                reason = f"time not on the {self.interval_minutes} min grid"
                lines = frame["line"].to_numpy()[wrong]
                invalid = sorted(
                    [*invalid, *(InvalidRow(int(line), reason) for line in lines)],
                    key=lambda row: row.line,
                )
                frame = frame[~wrong]
        self.invalid.add(invalid)
        frame = frame.assign(interval_minutes=self.interval_minutes or 0)
        self._note_keys(frame)
        self.valid_rows += len(frame)
        return frame

    def _note_keys(self, frame: pd.DataFrame) -> None:
        """Notice when a chunk's times reach back to a symbol's earlier ones (possible repeats)."""
        if frame.empty:
            return
        grouped = frame.groupby("symbol")["datetime"].agg(["min", "max"])
        for name, row in grouped.iterrows():
            low, high = row["min"].value, row["max"].value
            newest = self._newest.get(str(name))
            if newest is not None and low <= newest:
                self.overlapping = True
            self._newest[str(name)] = high if newest is None else max(newest, high)

    def _nothing_valid(self) -> InputError:
        if self.total_rows == 0:
            return InputError(f"no candles in {self.path.name}: the file has no data rows")
        first = self.invalid.first()[0]
        return InputError(
            f"no valid candles in {self.path.name}: {self.invalid.count} rows invalid "
            f"(first: line {first.line}: {first.reason})"
        )

    def strict_error(self) -> InputError:
        first = self.invalid.first()[0]
        return InputError(
            f"{self.invalid.count} invalid row(s), nothing imported; "
            f"first at line {first.line}: {first.reason}"
        )


def read_candle_file(
    path: str | Path,
    *,
    file_format: str | None = None,
    symbol: str | None = None,
    interval: str | None = None,
    chunk_rows: int = CANDLE_IMPORT_BATCH_ROWS,
) -> CandleBatch:
    """Parse and validate a whole candle file into memory; invalid rows are reported, not
    raised (the rules: ``outcomes/candle_rules.py``). ``import_candles`` streams instead.

    ``symbol`` fills in the symbol when the file has no ``symbol`` column (or an empty
    cell); with a symbol column whose values differ from it, ``InputError``. ``interval``
    (``15m``, ``1h``, ...) is inferred from the data when ``None``, else checked against
    the spacing of the candles. Raises ``InputError`` for an unreadable file, missing
    columns, mixed time units, a contradicted interval, or a file without valid candles.
    """
    stream = _CandleStream(
        Path(path),
        file_format=file_format,
        symbol=symbol,
        interval=interval,
        chunk_rows=chunk_rows,
        keep_invalid=None,
    )
    frames = list(stream.chunks())
    frame = pd.concat(frames, ignore_index=True)
    before = len(frame)
    frame = frame.sort_values("line").drop_duplicates(subset=["symbol", "datetime"], keep="last")
    frame = frame.sort_values(["symbol", "datetime"]).reset_index(drop=True)
    return CandleBatch(
        frame=frame[list(CANDLE_COLUMNS)],
        invalid=stream.invalid.first(),
        interval_minutes=int(stream.interval_minutes or 0),
        total_rows=stream.total_rows,
        duplicates=stream.duplicates + before - len(frame),
    )


# ---------------------------------------------------------------- writing


class _Ranges:
    """Per symbol: candles, first and last open time, summed over chunks."""

    def __init__(self) -> None:
        self.by_symbol: dict[str, list[Any]] = {}

    def add(self, frame: pd.DataFrame) -> None:
        grouped = frame.groupby("symbol")["datetime"].agg(["count", "min", "max"])
        for name, row in grouped.iterrows():
            entry = self.by_symbol.get(str(name))
            if entry is None:
                self.by_symbol[str(name)] = [int(row["count"]), row["min"], row["max"]]
            else:
                entry[0] += int(row["count"])
                entry[1], entry[2] = min(entry[1], row["min"]), max(entry[2], row["max"])

    def ranges(self) -> list[SymbolRange]:
        return [
            SymbolRange(symbol, rows, first.to_pydatetime(), last.to_pydatetime())
            for symbol, (rows, first, last) in sorted(self.by_symbol.items())
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
    chunk_rows: int = CANDLE_IMPORT_BATCH_ROWS,
) -> ImportReport:
    """Read, validate and upsert a candle file into ``market_candles`` of ``database`` (a URL,
    a SQLite ``Path`` or an ``Engine``; the database must be migrated), ``chunk_rows`` rows
    at a time, in one transaction.

    Invalid rows are skipped and reported (the first ``INVALID_ROWS_KEPT`` and a count); with
    ``strict`` any invalid row raises ``InputError`` (naming its line) and nothing is
    written. So does a file without a valid candle, a contradicted ``interval`` or a
    ``symbol`` other than the file's. ``progress`` is called with the rows of each batch
    staged.
    """
    stream = _CandleStream(
        Path(path),
        file_format=file_format,
        symbol=symbol,
        interval=interval,
        chunk_rows=chunk_rows,
        keep_invalid=INVALID_ROWS_KEPT,
    )
    check_candle_path(stream.path)
    with opened(database) as engine:
        return _import(engine, stream, strict, progress)


def _import(
    engine: Engine, stream: _CandleStream, strict: bool, progress: Progress | None
) -> ImportReport:
    ranges = _Ranges()
    with staged_candles(engine) as staging:
        for frame in stream.chunks():
            if strict and stream.invalid.count:
                continue  # read on to count the invalid rows; nothing will be written
            staging.stage(frame, progress)
            ranges.add(frame)
        if strict and stream.invalid.count:
            raise stream.strict_error()
        duplicates = stream.duplicates
        symbols = ranges.ranges()
        if stream.overlapping:
            duplicates += staging.drop_superseded()
            symbols = [SymbolRange(*entry) for entry in staging.ranges()]
        inserted, updated = staging.upsert()
        staged = staging.rows
    return ImportReport(
        inserted=inserted,
        updated=updated,
        unchanged=staged - inserted - updated,
        invalid=stream.invalid.first(),
        interval_minutes=int(stream.interval_minutes or 0),
        total_rows=stream.total_rows,
        duplicates=duplicates,
        symbols=symbols,
        invalid_count=stream.invalid.count,
    )
