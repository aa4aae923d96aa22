"""Benchmark of history at scale: rollups, partitioned storage, backfill ticks and archive.

Run:  .venv/bin/python bench/bench_scale.py [--rows 2000000] [--symbols 100] [--days 365]
                                             [--ticks 6] [--reps 5] [--keep]
                                             [--pg-url postgresql://postgres@127.0.0.1/postgres]

Two throw-away PostgreSQL databases migrated to head, one with ``ml_predictions`` as a single
table, one partitioned by day (every day's partition created before loading), receive the
same seeded data by COPY (not through the logger): ``--rows`` predictions spread evenly over
``--days`` days of 15-minute slots for ``--symbols`` symbols (model versions v1 and v2), with
outcomes computed from the random-walk 15-minute ``market_candles`` loaded beside them, except
the last 12 h 15 min of predictions, left pending for the backfill. Then VACUUM ANALYZE.

Measured in the same run on both layouts, each against its baseline:

1. ``rebuild_rollups`` of the whole history (seconds, raw rows/s);
2. ``accuracy_table`` by symbol and by day over the whole history from the rollups versus the
   raw GROUP BY it replaced (``read_accuracy_counts`` + the same accuracy columns): median ms
   after a warm-up, the ratio raw/rollups (target >= 100x) and rollups < 100 ms, and whether
   both give the same figures;
3. a first backfill (fills the pending 12 h; not a target), then ``--ticks`` cron ticks, each
   inserting the next 15 minutes of predictions and candles and running ``backfill_actuals``:
   median seconds and the share of rollup maintenance (``rollup_s`` / ``elapsed_s``, target
   <= 10 %), partitioned versus unpartitioned; odd ticks keep the rollups by deltas (the
   default), even ticks by recomputing the touched keys (the baseline), so use ``--ticks 6``
   or more for three of each;
4. ``archive_predictions`` of the first 30 days: rows/s and Parquet bytes per row, beside the
   table's on-disk bytes per row (pg_total_relation_size, indexes included) as the baseline.

JIT is off on the benchmark's databases unless ``--jit server``: the rollup SQL has ~900
aggregates and on a partitioned table PostgreSQL JIT-compiles them for every partition scan
(thousands of functions; minutes per statement); mlpred turns it off for its own rollup SQL.

A step whose library function is missing or fails is reported and the others still run. The
databases are dropped at the end unless ``--keep``; ``--reuse TAG`` measures the reads
again on the databases of such a run (after migrating them to head), without reloading.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy.engine import URL, Connection, Engine
from throwaway import admin_execute

from mlpred_cli.config import DEFAULT_DIRECTION_THRESHOLDS, HORIZON_DELTAS, HORIZONS
from mlpred_cli.store.database import create_engine, normalize_url
from mlpred_cli.store.migrations import upgrade_to_head

T = TypeVar("T")
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

STEP = timedelta(minutes=15)
SLOTS_PER_DAY = 96
HORIZON_STEPS = {h: int(HORIZON_DELTAS[h] / STEP) for h in HORIZONS}
LONGEST = max(HORIZON_STEPS.values())
CHUNK_SLOTS = 2_000  # slots of predictions per COPY chunk (x symbols rows)
DATE_FORMAT = "%Y-%m-%d %H:%M:%S+00"
LAYOUTS = ("unpartitioned", "partitioned")
ROLLUP_TARGET_RATIO = 100.0
ROLLUP_TARGET_MS = 100.0
ROLLUP_SHARE_TARGET = 0.10
ARCHIVE_DAYS = 30

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
COPY_TRAILER = b"\xff\xff"
#: The float columns generated per prediction (outcomes: NaN while pending).
STAGE_FLOATS: tuple[str, ...] = (
    "close_price",
    "volume",
    "rsi",
    "macd",
    "bb_position",
    "atr_pct",
    "volume_ratio",
    "trend_strength",
    "features_mean",
    "features_std",
    "risk_score",
    "max_drawdown_predicted",
    "max_rally_predicted",
    "inference_time_ms",
    *(f"predicted_return_{h}" for h in HORIZONS),
    *(f"direction_{h}_confidence" for h in HORIZONS),
    *(f"actual_return_{h}" for h in HORIZONS),
    *(f"return_error_{h}" for h in HORIZONS),
)


# ---------------------------------------------------------------- sizes and data


@dataclass(frozen=True)
class Sizes:
    """The generated history: ``per_symbol`` predictions for each symbol, spread evenly over
    ``slots`` 15-minute slots ending at ``end`` (exclusive; candles exist up to it)."""

    requested_rows: int
    symbols: int
    days: int
    ticks: int
    end: datetime

    @property
    def slots(self) -> int:
        return self.days * SLOTS_PER_DAY

    @property
    def per_symbol(self) -> int:
        return max(1, self.requested_rows // self.symbols)

    @property
    def rows(self) -> int:
        return self.per_symbol * self.symbols

    @property
    def start(self) -> datetime:
        return self.end - STEP * self.slots

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def tick_rows_per_symbol(self) -> int:
        """Predictions per symbol in one 15-minute tick: the history's rate, at least one."""
        return max(1, math.ceil(self.per_symbol / self.slots))

    def slot_time(self, slot: int) -> datetime:
        return self.start + STEP * slot

    def symbol_name(self, index: int) -> str:
        return f"SYM{index:03d}USDT"


def random_walk(sizes: Sizes, seed: int) -> FloatArray:
    """Close prices per (symbol, slot), including the slots of the ticks and 12 h beyond."""
    rng = np.random.default_rng(seed)
    columns = sizes.slots + sizes.ticks + LONGEST + 2
    steps = rng.normal(0.0, 0.003, (sizes.symbols, columns))
    base = 10.0 * (1.0 + np.arange(sizes.symbols, dtype=np.float64))[:, None]
    closes: FloatArray = base * np.exp(np.cumsum(steps, axis=1))
    return closes


def _micros(sizes: Sizes, slots: IntArray) -> IntArray:
    """PostgreSQL's binary timestamptz of each slot: microseconds since 2000-01-01 UTC."""
    start = int((sizes.start - PG_EPOCH) / timedelta(microseconds=1))
    micros: IntArray = start + slots * int(STEP / timedelta(microseconds=1))
    return micros


def _direction_codes(values: FloatArray, level: float) -> npt.NDArray[np.int16]:
    """0 LONG, 1 SHORT, 2 NEUTRAL (the order of DIRECTIONS)."""
    codes: npt.NDArray[np.int16] = np.where(
        values > level, 0, np.where(values < -level, 1, 2)
    ).astype(np.int16)
    return codes


def binary_copy(fields: Sequence[tuple[str, str]], values: dict[str, Any], rows: int) -> bytes:
    """One PostgreSQL binary COPY stream of ``rows`` rows of fixed-width, non-null ``fields``
    (name, big-endian numpy type), built with numpy: no per-value formatting."""
    layout: list[tuple[str, str]] = [("_count", ">i2")]
    for name, kind in fields:
        layout += [(f"_{name}_len", ">i4"), (name, kind)]
    records = np.zeros(rows, dtype=np.dtype(layout))
    records["_count"] = len(fields)
    for name, kind in fields:
        records[f"_{name}_len"] = np.dtype(kind).itemsize
        records[name] = values[name]
    return COPY_HEADER + records.tobytes() + COPY_TRAILER


#: The staging row: what numpy generates, fixed width (codes for labels, NaN for pending).
STAGE_FIELDS: tuple[tuple[str, str], ...] = (
    ("ord", ">i8"),
    ("prediction_id", "V16"),
    ("symbol_index", ">i2"),
    ("at", ">i8"),
    ("features_hash", ">i8"),
    ("model_code", ">i2"),
    ("filled", "?"),
    *((name, ">f8") for name in STAGE_FLOATS),
    *((f"direction_code_{h}", ">i2") for h in HORIZONS),
    *((f"actual_code_{h}", ">i2") for h in HORIZONS),
)
_STAGE_TYPES = {">i8": "bigint", "V16": "uuid", ">i2": "smallint", "?": "boolean", ">f8": "float8"}
STAGE_DDL = (
    "CREATE TEMP TABLE bench_stage ("
    + ", ".join(f"{name} {_STAGE_TYPES[kind]}" for name, kind in STAGE_FIELDS)
    + ")"
)
_LABEL = "(ARRAY['LONG','SHORT','NEUTRAL'])[s.{code} + 1]"
_NULLABLE = "NULLIF(s.{name}, 'NaN'::float8)"
_CORRECT = "CASE WHEN s.filled THEN s.direction_code_{h} = s.actual_code_{h} END"
STAGE_TO_PREDICTIONS = f"""
INSERT INTO ml_predictions (
    prediction_id, symbol, timestamp, datetime, features_count, features_hash,
    lookback_periods, {", ".join(STAGE_FLOATS[:10])}, features_min, features_max,
    nan_count, inf_count, is_duplicate,
    {", ".join(f"predicted_return_{h}" for h in HORIZONS)},
    {", ".join(f"direction_{h}" for h in HORIZONS)},
    {", ".join(f"direction_{h}_confidence" for h in HORIZONS)},
    risk_score, max_drawdown_predicted, max_rally_predicted,
    signal_type, signal_confidence, signal_timeframe, model_version, inference_time_ms,
    {", ".join(f"actual_return_{h}" for h in HORIZONS)},
    {", ".join(f"actual_direction_{h}" for h in HORIZONS)},
    {", ".join(f"accuracy_{h}" for h in HORIZONS)},
    {", ".join(f"return_error_{h}" for h in HORIZONS)},
    actuals_filled_at)
SELECT s.prediction_id, 'SYM' || lpad(s.symbol_index::text, 3, '0') || 'USDT',
    (s.at / 1000) + {int((PG_EPOCH - UNIX_EPOCH) / timedelta(milliseconds=1))},
    timestamptz '2000-01-01 00:00:00+00' + s.at * interval '1 microsecond',
    240, s.features_hash, 1, {", ".join(f"s.{name}" for name in STAGE_FLOATS[:10])},
    -3, 3, 0, 0, false,
    {", ".join(f"s.predicted_return_{h}" for h in HORIZONS)},
    {", ".join(_LABEL.format(code=f"direction_code_{h}") for h in HORIZONS)},
    {", ".join(f"s.direction_{h}_confidence" for h in HORIZONS)},
    s.risk_score, s.max_drawdown_predicted, s.max_rally_predicted,
    {_LABEL.format(code="direction_code_1h")}, s.direction_1h_confidence, '1h',
    (ARRAY['v1','v2'])[s.model_code + 1], s.inference_time_ms,
    {", ".join(_NULLABLE.format(name=f"actual_return_{h}") for h in HORIZONS)},
    {", ".join(_LABEL.format(code=f"actual_code_{h}") for h in HORIZONS)},
    {", ".join(_CORRECT.format(h=h) for h in HORIZONS)},
    {", ".join(_NULLABLE.format(name=f"return_error_{h}") for h in HORIZONS)},
    CASE WHEN s.filled THEN timestamptz '2000-01-01 00:00:00+00'
        + s.at * interval '1 microsecond' + interval '12 hours 17 minutes' END
FROM bench_stage AS s ORDER BY s.ord
"""


def prediction_stage(
    sizes: Sizes,
    closes: FloatArray,
    rng: np.random.Generator,
    slots: IntArray,
    symbols: IntArray,
    last_candle: int,
    first_ord: int = 0,
) -> bytes:
    """Binary COPY rows for ``bench_stage``: predictions at ``slots`` for ``symbols``, outcomes
    (from ``closes``, as the backfill computes them) where the 12 h candle (slot + 48) is at
    most ``last_candle``, the rest pending."""
    count = len(slots)
    entry = closes[symbols, slots]
    filled = slots + LONGEST <= last_candle
    values: dict[str, Any] = {
        "ord": first_ord + np.arange(count, dtype=np.int64),
        "prediction_id": rng.bytes(16 * count),
        "symbol_index": symbols,
        "at": _micros(sizes, slots),
        "features_hash": rng.integers(0, 2**59, count),
        "model_code": (rng.uniform(0.0, 1.0, count) < 0.5).astype(np.int16),
        "filled": filled,
        "close_price": entry,
        "volume": rng.uniform(1.0, 1000.0, count),
        "rsi": rng.uniform(0.0, 100.0, count),
        "macd": rng.normal(0.0, 0.5, count),
        "bb_position": rng.uniform(0.0, 1.0, count),
        "atr_pct": rng.uniform(0.0, 0.02, count),
        "volume_ratio": rng.uniform(0.0, 3.0, count),
        "trend_strength": rng.normal(0.0, 0.3, count),
        "features_mean": rng.normal(0.0, 0.1, count),
        "features_std": rng.uniform(0.5, 1.5, count),
        "risk_score": rng.uniform(0.0, 1.0, count),
        "max_drawdown_predicted": -rng.uniform(0.0, 0.02, count),
        "max_rally_predicted": rng.uniform(0.0, 0.02, count),
        "inference_time_ms": rng.uniform(2.0, 12.0, count),
    }
    values["prediction_id"] = np.frombuffer(values["prediction_id"], dtype="V16")
    for horizon in HORIZONS:
        steps = HORIZON_STEPS[horizon]
        level = DEFAULT_DIRECTION_THRESHOLDS[horizon]
        actual = closes[symbols, slots + steps] / entry - 1.0
        predicted = 0.3 * actual + rng.normal(0.0, 0.003 * math.sqrt(steps), count)
        values[f"predicted_return_{horizon}"] = predicted
        values[f"direction_code_{horizon}"] = _direction_codes(predicted, 0.5 * level)
        values[f"direction_{horizon}_confidence"] = 0.34 + 0.62 * rng.beta(2.0, 3.0, count)
        values[f"actual_return_{horizon}"] = np.where(filled, actual, np.nan)
        values[f"return_error_{horizon}"] = np.where(filled, predicted - actual, np.nan)
        codes = _direction_codes(actual, level + 1e-12)
        values[f"actual_code_{horizon}"] = np.where(filled, codes, -1).astype(np.int16)
    return binary_copy(STAGE_FIELDS, values, count)


def history_stages(sizes: Sizes, closes: FloatArray, seed: int) -> Iterator[bytes]:
    """The history's predictions in time order, ``CHUNK_SLOTS`` per-symbol steps at a time."""
    rng = np.random.default_rng(seed)
    per_symbol = sizes.per_symbol
    for first in range(0, per_symbol, CHUNK_SLOTS):
        steps = np.arange(first, min(first + CHUNK_SLOTS, per_symbol), dtype=np.int64)
        slots = (steps * sizes.slots) // per_symbol
        yield prediction_stage(
            sizes,
            closes,
            rng,
            np.repeat(slots, sizes.symbols),
            np.tile(np.arange(sizes.symbols, dtype=np.int64), len(slots)),
            last_candle=sizes.slots - 1,
            first_ord=first * sizes.symbols,
        )


CANDLE_FIELDS: tuple[tuple[str, str], ...] = (
    ("symbol", "S10"),
    ("interval_minutes", ">i4"),
    ("datetime", ">i8"),
    ("open", ">f8"),
    ("high", ">f8"),
    ("low", ">f8"),
    ("close", ">f8"),
    ("volume", ">f8"),
)


def candle_copy(sizes: Sizes, closes: FloatArray, symbols: IntArray, slots: IntArray) -> bytes:
    """Binary COPY rows of 15-minute candles (open = the previous close)."""
    close = closes[symbols, slots]
    opened = closes[symbols, np.maximum(slots - 1, 0)]
    names = np.array([sizes.symbol_name(i).encode() for i in range(sizes.symbols)], dtype="S10")
    values = {
        "symbol": names[symbols],
        "interval_minutes": 15,
        "datetime": _micros(sizes, slots),
        "open": opened,
        "high": np.maximum(opened, close) * 1.001,
        "low": np.minimum(opened, close) * 0.999,
        "close": close,
        "volume": 100.0 + slots % 50,
    }
    return binary_copy(CANDLE_FIELDS, values, len(slots))


def _copy(conn: Connection, statement: str, data: bytes) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(data)


def copy_candles(engine: Engine, data: bytes) -> None:
    with engine.begin() as conn:
        columns = ", ".join(name for name, _ in CANDLE_FIELDS)
        _copy(conn, f"COPY market_candles ({columns}) FROM STDIN (FORMAT binary)", data)


def copy_predictions(engine: Engine, data: bytes) -> None:
    """COPY the staged rows into a temporary table, then into ml_predictions in order."""
    with engine.begin() as conn:
        conn.exec_driver_sql(STAGE_DDL + " ON COMMIT DROP")
        columns = ", ".join(name for name, _ in STAGE_FIELDS)
        _copy(conn, f"COPY bench_stage ({columns}) FROM STDIN (FORMAT binary)", data)
        conn.exec_driver_sql(STAGE_TO_PREDICTIONS)


def load_history(engines: Sequence[Engine], sizes: Sizes, closes: FloatArray, seed: int) -> None:
    """The same candles and predictions into every database, then VACUUM ANALYZE."""
    every_slot = np.arange(sizes.slots, dtype=np.int64)
    for first in range(0, sizes.symbols, 10):
        symbols = np.arange(first, min(first + 10, sizes.symbols), dtype=np.int64)
        data = candle_copy(
            sizes, closes, np.repeat(symbols, sizes.slots), np.tile(every_slot, len(symbols))
        )
        for engine in engines:
            copy_candles(engine, data)
    for stage in history_stages(sizes, closes, seed):
        for engine in engines:
            copy_predictions(engine, stage)
    for engine in engines:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE ml_predictions")
            conn.exec_driver_sql("VACUUM ANALYZE market_candles")


def load_tick(engine: Engine, sizes: Sizes, closes: FloatArray, slot: int, seed: int) -> int:
    """One cron tick's new data: every symbol's candle of ``slot`` and its predictions made
    at ``slot`` (pending). Returns the predictions inserted."""
    rng = np.random.default_rng(seed)
    every_symbol = np.arange(sizes.symbols, dtype=np.int64)
    copy_candles(
        engine,
        candle_copy(sizes, closes, every_symbol, np.full(sizes.symbols, slot, dtype=np.int64)),
    )
    symbols = np.tile(every_symbol, sizes.tick_rows_per_symbol)
    slots = np.full(len(symbols), slot, dtype=np.int64)
    copy_predictions(engine, prediction_stage(sizes, closes, rng, slots, symbols, slot))
    return len(symbols)


# ---------------------------------------------------------------- figures


@dataclass
class Figures:
    """The rows of the final table: figure -> layout -> text, in insertion order."""

    rows: dict[str, dict[str, str]] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def put(self, figure: str, layout: str, text: str, target: str = "") -> None:
        self.rows.setdefault(figure, {})[layout] = text
        if target:
            self.targets[figure] = target

    def attempt(self, label: str, action: Callable[[], T]) -> T | None:
        """Run one step; on any failure print and record which, and return None."""
        try:
            return action()
        except Exception as error:  # a failed step must not stop the other figures
            message = f"{label}: {type(error).__name__}: {error}".splitlines()[0][:300]
            print(f"  FAILED {message}")
            if os.environ.get("BENCH_TRACEBACK"):
                traceback.print_exc()
            self.failures.append(message)
            return None

    def print_table(self, layouts: Sequence[str]) -> None:
        width = max([len(name) for name in self.rows] + [10])
        cells = [max(16, *(len(v) for v in row.values())) for row in self.rows.values()]
        cell = max(cells, default=16)
        header = f"{'figure':<{width}}  " + "  ".join(f"{name:>{cell}}" for name in layouts)
        print(header + "  target")
        print("-" * (len(header) + 8))
        for figure, row in self.rows.items():
            values = "  ".join(f"{row.get(name, '-'):>{cell}}" for name in layouts)
            print(f"{figure:<{width}}  {values}  {self.targets.get(figure, '')}")
        if self.failures:
            print("failed steps:")
            for failure in self.failures:
                print(f"  {failure}")


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def median_ms(action: Callable[[], object], reps: int) -> float:
    """Median wall time in ms of ``reps`` runs after one warm-up run."""
    action()
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def table_bytes(engine: Engine) -> tuple[int, int]:
    """(on-disk bytes of ml_predictions with its indexes and TOAST, over all partitions; rows)."""
    with engine.connect() as conn:
        size = conn.exec_driver_sql(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_partitioned_table "
            "WHERE partrelid = 'ml_predictions'::regclass) "
            "THEN (SELECT sum(pg_total_relation_size(relid)) "
            "      FROM pg_partition_tree('ml_predictions')) "
            "ELSE pg_total_relation_size('ml_predictions') END"
        ).scalar_one()
        rows = conn.exec_driver_sql("SELECT count(*) FROM ml_predictions").scalar_one()
    return int(size), int(rows)


# ---------------------------------------------------------------- steps


def step_rebuild(figures: Figures, layout: str, engine: Engine, rows: int) -> None:
    from mlpred_cli.outcomes.rollups import rebuild_rollups

    started = time.perf_counter()
    shown = [0]
    first_chunk: list[tuple[int, float]] = []

    def progress(done: int, total: int) -> None:
        if not first_chunk:
            first_chunk.append((done, time.perf_counter() - started))
        if done * 4 // max(total, 1) > shown[0]:
            shown[0] = done * 4 // max(total, 1)
            print(f"    {layout}: {done}/{total} days, {time.perf_counter() - started:.0f} s")

    report = rebuild_rollups(engine, progress=progress)
    figures.put("rollup rebuild, whole history (s)", layout, f"{report.elapsed_s:.1f}")
    figures.put("rollup rebuild (raw rows/s)", layout, f"{rows / report.elapsed_s:,.0f}")
    figures.put("rollup rows written", layout, f"{report.rows:,} ({report.days} days)")
    if first_chunk:
        days, seconds = first_chunk[0]
        figures.put(
            f"  of which until the first {days} days were done (s)", layout, f"{seconds:.1f}"
        )
    print(
        f"  {layout}: rebuild {report.status} in {report.elapsed_s:.1f} s, "
        f"{report.days} days, {report.rows:,} rollup rows"
    )


def _same_figures(rollup: pd.DataFrame, raw: pd.DataFrame, by: str) -> str:
    """Whether the rollup answer equals the raw one (counts exact, accuracy to 1e-9)."""
    columns = ["total", *(f"n_{h}" for h in HORIZONS), *(f"accuracy_{h}" for h in HORIZONS)]
    left = rollup.assign(_key=rollup[by].astype(str)).set_index("_key")[columns].sort_index()
    right = raw.assign(_key=raw[by].astype(str)).set_index("_key")[columns].sort_index()
    if list(left.index) != list(right.index):
        return f"NO ({len(left)} vs {len(right)} groups)"
    difference = (left.astype(float) - right.astype(float)).abs().fillna(0.0).to_numpy().max()
    return "yes" if difference <= 1e-9 else f"NO (max diff {difference:.3g})"


def step_accuracy(
    figures: Figures, layout: str, engine: Engine, since: datetime, reps: int
) -> None:
    from mlpred_cli.analysis.accuracy import add_accuracy_columns
    from mlpred_cli.analysis.prediction_views import accuracy_table
    from mlpred_cli.store.prediction_queries import make_filter
    from mlpred_cli.store.prediction_reads import read_accuracy_counts

    def from_rollups(by: str) -> pd.DataFrame:
        return accuracy_table(engine, by=by, since=since)

    def from_raw(by: str) -> pd.DataFrame:
        counts = read_accuracy_counts(engine, make_filter(since=since), by, HORIZONS)
        return add_accuracy_columns(counts, HORIZONS)

    for by in ("symbol", "day"):
        rollup_ms = median_ms(partial(from_rollups, by), reps)
        raw_ms = median_ms(partial(from_raw, by), max(1, reps // 2))
        ratio = raw_ms / rollup_ms
        same = _same_figures(from_rollups(by), from_raw(by), by)
        figures.put(f"accuracy --by {by}: rollups (ms)", layout, f"{rollup_ms:.1f}")
        figures.put(f"accuracy --by {by}: raw SQL (ms)", layout, f"{raw_ms:.0f}")
        figures.put(
            f"accuracy --by {by}: raw/rollups",
            layout,
            f"{ratio:,.0f}x {verdict(ratio >= ROLLUP_TARGET_RATIO)}",
            f">= {ROLLUP_TARGET_RATIO:.0f}x",
        )
        figures.put(
            f"accuracy --by {by}: rollups < {ROLLUP_TARGET_MS:.0f} ms",
            layout,
            verdict(rollup_ms < ROLLUP_TARGET_MS),
            f"< {ROLLUP_TARGET_MS:.0f} ms",
        )
        figures.put(f"accuracy --by {by}: same figures", layout, same)
        print(
            f"  {layout} --by {by}: rollups {rollup_ms:.1f} ms, raw {raw_ms:.0f} ms, "
            f"ratio {ratio:,.0f}x, same figures: {same}"
        )


def step_backfill(
    figures: Figures, layout: str, engine: Engine, sizes: Sizes, closes: FloatArray
) -> float | None:
    """The first backfill, then the cron ticks; returns the median tick in seconds."""
    from mlpred_cli.outcomes.backfill import backfill_actuals

    first = backfill_actuals(engine, now=sizes.end + timedelta(seconds=5))
    figures.put(
        "first backfill: pending 12 h (s)",
        layout,
        f"{first.elapsed_s:.2f} ({first.rows_updated:,} rows)",
    )
    print(
        f"  {layout}: first backfill {first.elapsed_s:.2f} s, {first.rows_updated:,} rows, "
        f"{first.candidates:,} candidates, rollups {first.rollup_s:.3f} s"
    )
    # Ticks alternate between the two ways the backfill keeps the rollups (odd ticks: deltas
    # of the changed rows, the default; even ticks: recomputing the touched keys), so both
    # are measured on the same history in the same run.
    from mlpred_cli.store import outcome_updates

    runs: dict[bool, list[tuple[float, float, int]]] = {True: [], False: []}
    inserted = 0
    default = outcome_updates.ROLLUP_DELTAS
    try:
        for tick in range(1, sizes.ticks + 1):
            deltas = tick % 2 == 1
            outcome_updates.ROLLUP_DELTAS = deltas
            slot = sizes.slots + tick - 1
            inserted = load_tick(engine, sizes, closes, slot, seed=1000 + tick)
            report = backfill_actuals(engine, now=sizes.slot_time(slot + 1) + timedelta(seconds=5))
            runs[deltas].append((report.elapsed_s, report.rollup_s, report.rows_updated))
            print(
                f"    tick {tick} ({'deltas' if deltas else 'recompute'}): +{inserted} "
                f"predictions, {report.rows_updated} rows filled, "
                f"{report.elapsed_s * 1000:.0f} ms (rollups {report.rollup_s * 1000:.0f} ms)"
            )
    finally:
        outcome_updates.ROLLUP_DELTAS = default
    if not runs[True]:
        return None
    for deltas, label in ((True, "deltas"), (False, "recompute keys")):
        if not runs[deltas]:
            continue
        elapsed = [e for e, _, _ in runs[deltas]]
        rollup = [r for _, r, _ in runs[deltas]]
        updated = [u for _, _, u in runs[deltas]]
        share = statistics.median(r / e for e, r, _ in runs[deltas] if e > 0)
        figures.put(
            f"cron tick (+{inserted} predictions), {label}: median ms",
            layout,
            f"{statistics.median(elapsed) * 1000:.0f} ({statistics.median(updated):.0f} rows)",
        )
        figures.put(
            f"cron tick, {label}: rollup maintenance (ms)",
            layout,
            f"{statistics.median(rollup) * 1000:.0f}",
        )
        target = f"<= {ROLLUP_SHARE_TARGET:.0%}" if deltas else ""
        mark = f" {verdict(share <= ROLLUP_SHARE_TARGET)}" if deltas else ""
        figures.put(
            f"cron tick, {label}: rollup share of backfill", layout, f"{share:.1%}{mark}", target
        )
    return statistics.median(e for e, _, _ in runs[True])


def step_archive(
    figures: Figures, layout: str, engine: Engine, sizes: Sizes, directory: Path
) -> None:
    from mlpred_cli.history.archive import archive_predictions

    on_disk, rows = table_bytes(engine)
    figures.put("table on disk, with indexes (B/row)", layout, f"{on_disk / max(rows, 1):,.0f}")
    before = sizes.first_day + timedelta(days=ARCHIVE_DAYS)
    started = time.perf_counter()
    report = archive_predictions(engine, before=before, to=directory / layout)
    seconds = time.perf_counter() - started
    per_row = report.bytes_per_row
    figures.put(
        f"archive {ARCHIVE_DAYS} days: rows",
        layout,
        f"{report.rows:,} ({report.days_archived} days)",
    )
    figures.put("archive throughput (rows/s)", layout, f"{report.rows / seconds:,.0f}")
    figures.put("archive Parquet (B/row)", layout, "-" if per_row is None else f"{per_row:,.1f}")
    if per_row:
        figures.put(
            "on-disk / Parquet bytes per row",
            layout,
            f"{on_disk / max(rows, 1) / per_row:.1f}x",
        )
    dropped = sum(1 for day in report.days if day.partition_dropped)
    print(
        f"  {layout}: archived {report.rows:,} rows of {report.days_archived} days in "
        f"{seconds:.1f} s ({dropped} partitions dropped, {len(report.skipped)} days skipped), "
        f"{report.bytes_written / 2**20:.1f} MiB Parquet"
    )


# ---------------------------------------------------------------- main


def server_facts(engine: Engine) -> str:
    with engine.connect() as conn:
        version = str(conn.exec_driver_sql("SHOW server_version").scalar_one())
        buffers = str(conn.exec_driver_sql("SHOW shared_buffers").scalar_one())
        jit = str(conn.exec_driver_sql("SHOW jit").scalar_one())
    return f"PostgreSQL {version}, shared_buffers {buffers}, jit {jit}"


def set_up(
    figures: Figures, admin: URL, sizes: Sizes, tag: str, jit_off: bool
) -> dict[str, Engine]:
    """Create and migrate the databases; partition the second one (a partition per day)."""
    engines: dict[str, Engine] = {}
    for layout in LAYOUTS:
        name = f"mlpred_bench_scale_{tag}_{layout[:5]}"
        admin_execute(admin, f'CREATE DATABASE "{name}"')
        if jit_off:
            admin_execute(admin, f'ALTER DATABASE "{name}" SET jit = off')
        engine = create_engine(admin.set(database=name))
        upgrade_to_head(engine)
        engines[layout] = engine
        print(f"  {layout}: database {name}")
    partitioned = engines["partitioned"]

    def partition() -> None:
        from mlpred_cli.history.partitioning import partition_database

        started = time.perf_counter()
        report = partition_database(partitioned, days_ahead=sizes.days + 10, now=sizes.start)
        print(
            f"  partitioned: {len(report.partitions)} day partitions created in "
            f"{time.perf_counter() - started:.1f} s ({report.layout})"
        )

    if figures.attempt("partition_database", partition) is None and not _is_partitioned(
        partitioned
    ):
        print("  partitioned: not partitioned; its figures are left out")
        engines.pop("partitioned").dispose()
    return engines


def _is_partitioned(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.exec_driver_sql(
                "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table "
                "WHERE partrelid = 'ml_predictions'::regclass)"
            ).scalar_one()
        )


def reuse(args: argparse.Namespace) -> None:
    """``--reuse TAG``: migrate the kept databases of an earlier run to head (a new revision
    fills what it adds: the next backfill fills the rollup tiers) and measure the reads
    again, over every day still in ``ml_predictions`` (an archived start is left out, so raw
    and rollups cover the same rows)."""
    from mlpred_cli.outcomes.backfill import backfill_actuals

    admin = normalize_url(args.pg_url)
    figures = Figures()
    engines = {
        layout: create_engine(admin.set(database=f"mlpred_bench_scale_{args.reuse}_{layout[:5]}"))
        for layout in LAYOUTS
    }
    try:
        for layout, engine in engines.items():
            upgrade_to_head(engine)
            started = time.perf_counter()
            backfill_actuals(engine)  # fills the tiers when the revision just added them
            _, rows = table_bytes(engine)
            print(
                f"  {layout}: {rows:,} rows; migrated and backfilled in "
                f"{time.perf_counter() - started:.1f} s"
            )
            with engine.connect() as conn:
                first = conn.exec_driver_sql("SELECT MIN(datetime) FROM ml_predictions").scalar()
            since = datetime.combine(first.date(), datetime.min.time(), UTC)
            figures.attempt(
                f"accuracy ({layout})",
                partial(step_accuracy, figures, layout, engine, since, args.reps),
            )
        print()
        facts = server_facts(engines["unpartitioned"])
        print(f"reused databases mlpred_bench_scale_{args.reuse}_*; {facts}")
        figures.print_table(LAYOUTS)
    finally:
        for engine in engines.values():
            engine.dispose()


def run(args: argparse.Namespace) -> None:
    if args.reuse:
        reuse(args)
        return
    admin = normalize_url(args.pg_url)
    now = datetime.now(UTC)
    # The history ends two hours ago, on a quarter-hour, so the ticks stay in the past.
    end = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    sizes = Sizes(args.rows, args.symbols, args.days, args.ticks, end - timedelta(hours=2))
    figures = Figures()
    tag = uuid.uuid4().hex[:8]
    print(
        f"bench_scale: {sizes.rows:,} predictions ({sizes.per_symbol:,} per symbol), "
        f"{sizes.symbols} symbols, {sizes.days} days from {sizes.start:%Y-%m-%d %H:%M} UTC, "
        f"{sizes.symbols * sizes.slots:,} candles; machine: {os.cpu_count()} CPUs"
    )
    engines: dict[str, Engine] = {}
    try:
        engines = set_up(figures, admin, sizes, tag, args.jit == "off")
        print(f"  server: {server_facts(engines['unpartitioned'])}")
        closes = random_walk(sizes, seed=args.seed)
        started = time.perf_counter()
        load_history(list(engines.values()), sizes, closes, seed=args.seed + 1)
        print(
            f"  loaded both databases (COPY, VACUUM ANALYZE) in "
            f"{time.perf_counter() - started:.1f} s"
        )
        for layout, engine in engines.items():
            size, rows = table_bytes(engine)
            print(f"  {layout}: {rows:,} rows, ml_predictions {size / 2**20:,.0f} MiB")

        since = datetime.combine(sizes.first_day, datetime.min.time(), UTC)
        print("rollup rebuild:")
        for layout, engine in engines.items():
            figures.attempt(
                f"rebuild_rollups ({layout})",
                partial(step_rebuild, figures, layout, engine, sizes.rows),
            )
        print("accuracy over the whole history:")
        for layout, engine in engines.items():
            figures.attempt(
                f"accuracy ({layout})",
                partial(step_accuracy, figures, layout, engine, since, args.reps),
            )
        print("backfill cron ticks:")
        tick_s: dict[str, float | None] = {}
        for layout, engine in engines.items():
            tick_s[layout] = figures.attempt(
                f"backfill_actuals ({layout})",
                partial(step_backfill, figures, layout, engine, sizes, closes),
            )
        flat, split = tick_s.get("unpartitioned"), tick_s.get("partitioned")
        if flat and split:
            figures.put(
                "cron tick: partitioned/unpartitioned", "partitioned", f"{split / flat:.2f}"
            )
        print("archive:")
        with tempfile.TemporaryDirectory(prefix="mlpred_bench_archive_") as directory:
            for layout, engine in engines.items():
                figures.attempt(
                    f"archive_predictions ({layout})",
                    partial(step_archive, figures, layout, engine, sizes, Path(directory)),
                )
        print()
        print(
            f"sizes: {sizes.rows:,} predictions, {sizes.symbols} symbols, {sizes.days} days, "
            f"{sizes.ticks} ticks of {sizes.tick_rows_per_symbol * sizes.symbols} predictions; "
            f"machine: {os.cpu_count()} CPUs; {server_facts(next(iter(engines.values())))}"
        )
        figures.print_table(LAYOUTS)
    finally:
        for engine in engines.values():
            engine.dispose()
        if args.keep:
            print(f"kept databases mlpred_bench_scale_{tag}_*")
        else:
            admin_execute(
                admin,
                *(
                    f'DROP DATABASE IF EXISTS "mlpred_bench_scale_{tag}_{layout[:5]}" WITH (FORCE)'
                    for layout in LAYOUTS
                ),
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="predictions generated")
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument(
        "--ticks",
        type=int,
        default=6,
        help="cron ticks measured (alternating deltas and recompute)",
    )
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions of each read")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "MLPRED_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="admin URL; the benchmark creates its own databases",
    )
    parser.add_argument("--keep", action="store_true", help="do not drop the databases")
    parser.add_argument(
        "--reuse",
        metavar="TAG",
        help="measure the reads again on the databases a --keep run left (its printed tag)",
    )
    parser.add_argument(
        "--jit",
        choices=("off", "server"),
        default="off",
        help="off: jit = off on the benchmark databases; server: the server's setting",
    )
    args = parser.parse_args()
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    if args.rows < 1 or args.symbols < 1 or args.days < 2 or args.ticks < 0 or args.reps < 1:
        parser.error("rows, symbols, reps must be positive, days at least 2, ticks >= 0")
    run(args)


if __name__ == "__main__":
    main()
