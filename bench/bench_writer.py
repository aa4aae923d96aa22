"""Benchmark of the prediction logger against the drivers' own bulk paths, in one run.

Run:  python bench/bench_writer.py [--calls 20000] [--rows 40000] [--rounds 4] [--baseline-reps 3]
                                   [--pg-url postgresql://postgres@127.0.0.1/postgres]
                                   [--skip-sqlite] [--skip-postgresql]

It prints, first, the ``mlpred_cli`` package it imported (a worktree on ``PYTHONPATH`` wins),
then for each backend (PostgreSQL, SQLite):

* **caller overhead** p50/p99 (and the min..max of the per-block p50s) of
  ``log_prediction_sync`` (240 features), the writer thread running as in production
  (batch_size 10), for: journal on (fsync="none", the default), journal off (``journal=False``,
  memory-only) and journal on with fsync="interval", without market data (``--calls`` calls
  each); a 300-candle OHLCV DataFrame in three forms, journal on and off (an eighth of the
  calls each): (a) a DatetimeIndex (what ``random_walk_candles`` returns), (b) a ``time``
  column of ISO 8601 text, (c) a datetime64 ``time`` column; and 5,000 text-time candles,
  journal on (1/200 of the calls). The cases run side by side, one logger each, their
  calls interleaved in blocks (the order rotating) so that a load that comes and goes on a
  shared machine falls on every case alike; each block is flushed untimed;
* **sustained** predictions/s end to end (log ``--rows`` as fast as possible, then flush;
  batch_size 1000), journal on and off in alternating rounds on an emptied table: each
  round, the medians, the ratio on/off (median and per round pair) and the mean batch time;
* **baselines, the same rows**: after the first round, the rows our logger wrote are read
  back (untimed); after each of the first ``--baseline-reps`` rounds, each baseline is timed
  once, batches of 1000 rows, one transaction each, and its median is printed with the ratios
  ours/baseline, journal on and off:
    - PostgreSQL *pre-encoded COPY* (what the server can ingest): the rows dumped with
      ``COPY ml_predictions (<written columns>) TO STDOUT (FORMAT BINARY)``, split into per-row
      chunks, loaded into ``ml_predictions_clone`` (``LIKE ml_predictions INCLUDING ALL``: the
      same indexes; its fillfactor too) with ``copy.write(header + rows + trailer)`` per batch;
    - PostgreSQL *write_row COPY*: the same rows as Python tuples (``SELECT ... ORDER BY id``)
      written into the clone with ``copy.write_row`` after ``copy.set_types`` (the table's own
      column types, from ``pg_attribute``);
    - SQLite: the rows as sqlite3 read them back, ``executemany`` into the emptied
      ``ml_predictions`` (the same schema and indexes) on a sqlite3 connection set to the
      PRAGMAs (journal_mode, synchronous, foreign_keys, busy_timeout, ...) an engine
      connection of ours has;
* bytes per row on PostgreSQL (table + indexes + TOAST / rows, after the last round);
* journal record bytes: the bytes the journal appended over 200 predictions /
  the records journaled, without market data and with 300 candles;
* the check line: saved of logged, lost, dead-lettered, journal errors over the sustained
  rounds;
* targets, each ``met`` or ``MISSED``: caller p50 without market data <= 10 us journal off
  (memory-only) and <= 15 us journal on; caller p50 with 300 candles <= 25 us (every form,
  journal on and off); sustained journal on >= 0.9x journal off; ours (journal on) /
  pre-encoded COPY >= 0.8 on PostgreSQL; ours (journal on) / executemany >= 0.8 on SQLite;
  PostgreSQL bytes per row <= 603.

It creates and drops its own PostgreSQL database (``bench/throwaway.py``) and SQLite file;
both backends take about 60-90 s on the project's 2-core machine.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import psycopg
import sqlalchemy as sa
from throwaway import throwaway_database

import mlpred_cli
from mlpred_cli import MLPredictionLogger
from mlpred_cli.capture.synthetic_market import random_walk_candles, raw_model_outputs
from mlpred_cli.store.database import create_engine, normalize_url
from mlpred_cli.store.migrations import upgrade_to_head
from mlpred_cli.store.prediction_row import WRITE_COLUMNS

COPY_BATCH = 1000
BLOCKS = 10  # caller-overhead calls of each case are interleaved in this many blocks
WARMUP_CALLS = 200
JOURNAL_SAMPLE = 200  # predictions whose journal records are measured
CANDLES_END = datetime(2026, 1, 1, tzinfo=UTC)
TARGET_P50_MEMORY_US = 10.0
TARGET_P50_JOURNAL_US = 15.0
TARGET_P50_MARKET_US = 25.0
TARGET_THROUGHPUT_RATIO = 0.9
TARGET_BASELINE_RATIO = 0.8
TARGET_BYTES_PER_ROW = 603
TABLE = "ml_predictions"
CLONE = "ml_predictions_clone"
PG_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
PG_TRAILER = struct.pack("!h", -1)
SQLITE_PRAGMAS = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "cache_size",
                  "temp_store", "mmap_size")  # fmt: skip
MARKET_FORMS = {"index": "DatetimeIndex", "text": "text time", "datetime64": "datetime64 time"}


@dataclass(frozen=True)
class CallerCase:
    """One configuration whose caller overhead is measured: ``calls // divisor`` calls."""

    label: str
    journal: bool
    fsync: str = "none"
    form: str = "none"  # market data: "none" or a key of MARKET_FORMS
    candles: int = 0
    divisor: int = 1


CALLER_CASES = (
    CallerCase("journal on,  no market data", True),
    CallerCase("journal off, no market data", False),
    CallerCase("journal on,  fsync=interval, no market data", True, "interval"),
    *(
        CallerCase(f"journal {'on, ' if journal else 'off,'} 300 candles, {name}", journal,
                   form=form, candles=300, divisor=8)
        for form, name in MARKET_FORMS.items()
        for journal in (True, False)
    ),
    CallerCase("journal on,  5,000 candles, text time", True, form="text", candles=5000,
               divisor=200),
)  # fmt: skip


@dataclass
class CallerResult:
    """Per-call samples (ns) of one case and the p50 of each of its blocks (us)."""

    samples_ns: list[int] = field(default_factory=list)
    block_p50s: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.array(self.samples_ns) / 1000.0, q))


@dataclass
class SustainedResult:
    """Predictions/s of each round, and the writer's counters summed over the rounds."""

    rates: list[float] = field(default_factory=list)
    saved: int = 0
    logged: int = 0
    lost: int = 0
    dead_lettered: int = 0
    journal_errors: int = 0
    batches: int = 0
    batch_ms: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


class Baseline(Protocol):
    """Driver-level writes of the rows our logger wrote, timed between our rounds."""

    labels: tuple[str, ...]

    def capture(self) -> int:
        """Read the rows of ``ml_predictions`` (untimed); how many."""
        ...

    def measure(self, repetition: int) -> dict[str, float]:
        """Time each baseline once; rows/s by label."""
        ...

    def close(self) -> None: ...


def market_frame(form: str, candles: int) -> pd.DataFrame | None:
    """The candles as a caller hands them over: a DatetimeIndex, or a ``time`` column of ISO
    8601 text or of datetime64; None for ``form == "none"``."""
    if form == "none":
        return None
    frame = random_walk_candles(np.random.default_rng(candles), candles, end=CANDLES_END)
    if form == "index":
        return frame
    frame = frame.reset_index().rename(columns={"datetime": "time"})
    if form == "text":
        frame["time"] = frame["time"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return frame


def caller_overhead(url: str, workdir: Path, calls: int) -> dict[CallerCase, CallerResult]:
    """Every case of ``CALLER_CASES`` side by side, interleaved in ``BLOCKS`` blocks; each
    block is flushed untimed."""
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(1000, 240))
    outputs = raw_model_outputs(rng)
    markets = {case: market_frame(case.form, case.candles) for case in CALLER_CASES}
    loggers = {
        case: MLPredictionLogger(
            url,
            spool_dir=workdir / f"caller-{index}",
            batch_size=10,
            journal=case.journal,
            fsync=case.fsync,  # type: ignore[arg-type]
        )
        for index, case in enumerate(CALLER_CASES)
    }
    results = {case: CallerResult() for case in CALLER_CASES}
    counter = 0

    def run(case: CallerCase, count: int, record: CallerResult | None) -> None:
        nonlocal counter
        logger = loggers[case]
        data = markets[case]
        samples: list[int] = []
        clock = time.perf_counter_ns
        for _ in range(count):
            vector = vectors[counter % 1000]
            counter += 1
            before = clock()
            logger.log_prediction_sync(
                symbol="BTCUSDT", features=vector, model_outputs=outputs, market_data=data
            )
            samples.append(clock() - before)
        if not logger.flush_sync(timeout=300):
            raise RuntimeError(f"{case.label}: the logger did not flush within 300 s")
        if record is not None:
            record.samples_ns.extend(samples)
            record.block_p50s.append(float(np.percentile(samples, 50)) / 1000.0)

    try:
        for case in CALLER_CASES:
            run(case, min(WARMUP_CALLS, calls // case.divisor // BLOCKS), None)
        for block in range(BLOCKS):
            shift = block % len(CALLER_CASES)
            for case in CALLER_CASES[shift:] + CALLER_CASES[:shift]:
                run(case, max(calls // case.divisor // BLOCKS, 1), results[case])
    finally:
        for logger in loggers.values():
            logger.close_sync(timeout=60)
    return results


def sustained_round(url: str, spool: Path, rows: int, journal: bool) -> tuple[float, Any]:
    """Log ``rows`` predictions as fast as possible and flush; predictions/s end to end."""
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(5000, 240))
    outputs = raw_model_outputs(rng)
    symbols = [f"SYM{i}" for i in range(10)]
    logger = MLPredictionLogger(
        url, spool_dir=spool, batch_size=1000, flush_interval_s=0.05, journal=journal
    )
    try:
        log = logger.log_prediction_sync
        started = time.perf_counter()
        for i in range(rows):
            log(symbol=symbols[i % 10], features=vectors[i % 5000], model_outputs=outputs)
        if not logger.flush_sync(timeout=600):
            raise RuntimeError("the logger did not flush within 600 s")
        elapsed = time.perf_counter() - started
        stats = logger.stats()
    finally:
        logger.close_sync(timeout=60)
    return rows / elapsed, stats


def sustained(
    url: sa.engine.URL,
    url_text: str,
    workdir: Path,
    rows: int,
    rounds: int,
    baseline: Baseline,
    baseline_reps: int,
) -> tuple[dict[bool, SustainedResult], dict[str, list[float]], int]:
    """Journal on and off in alternating rounds (on/off, off/on, ...) on an emptied table;
    after each of the first ``baseline_reps`` rounds, one repetition of the baselines on the
    rows the first round left. Returns our results, the baselines' rates by label and the
    number of rows the baselines wrote."""
    results = {True: SustainedResult(), False: SustainedResult()}
    rates: dict[str, list[float]] = {label: [] for label in baseline.labels}
    captured = 0
    for round_number in range(rounds):
        order = (True, False) if round_number % 2 == 0 else (False, True)
        for journal in order:
            _clear(url)
            rate, stats = sustained_round(
                url_text, workdir / f"sustained-{int(journal)}", rows, journal
            )
            result = results[journal]
            result.rates.append(rate)
            result.logged += int(stats["logged"])
            result.saved += int(stats["saved"])
            result.lost += int(stats["lost"])
            result.dead_lettered += int(stats["dead_lettered"])
            result.journal_errors += int(stats["journal_errors"])
            result.batches += int(stats["batches"])
            if stats["mean_batch_ms"] is not None:
                result.batch_ms.append(float(stats["mean_batch_ms"]))
        if round_number == 0:
            captured = baseline.capture()
        if round_number < baseline_reps:
            for label, value in baseline.measure(round_number).items():
                rates[label].append(value)
    return results, rates, captured


# ---------------------------------------------------------------- PostgreSQL baselines


def split_binary_copy(data: bytes) -> tuple[bytes, list[bytes]]:
    """PostgreSQL's binary COPY format cut into its header (signature, flags, header
    extension) and one byte chunk per tuple (field count, then length + bytes per field)."""
    if not data.startswith(PG_SIGNATURE):
        raise ValueError("not a binary COPY stream: the signature is missing")
    offset = len(PG_SIGNATURE) + 4  # the int32 flags
    (extension,) = struct.unpack_from("!i", data, offset)
    offset += 4 + extension
    header = data[:offset]
    read_short = struct.Struct("!h").unpack_from
    read_int = struct.Struct("!i").unpack_from
    chunks: list[bytes] = []
    while True:
        (fields,) = read_short(data, offset)
        if fields == -1:
            break
        start = offset
        offset += 2
        for _ in range(fields):
            (length,) = read_int(data, offset)
            offset += 4 + max(length, 0)  # -1: NULL, no bytes
        chunks.append(data[start:offset])
    if offset + len(PG_TRAILER) != len(data):
        raise ValueError("binary COPY stream: bytes after the trailer")
    return header, chunks


class PostgresBaselines:
    """Pre-encoded COPY (``copy.write``) and ``copy.write_row`` COPY into a clone table."""

    labels: tuple[str, ...] = ("pre-encoded", "write_row")

    def __init__(self, url: sa.engine.URL) -> None:
        self.conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.columns = ", ".join(f'"{name}"' for name in WRITE_COLUMNS)
        self.payloads: list[bytes] = []
        self.rows: list[tuple[Any, ...]] = []
        self.types: list[int] = []
        self.clone_created = False

    def capture(self) -> int:
        with psycopg.connect(self.conninfo) as conn:
            attributes: dict[str, int] = dict(
                conn.execute(
                    "SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid = %s::regclass"
                    " AND attnum > 0 AND NOT attisdropped",
                    (TABLE,),
                ).fetchall()
            )
            missing = [name for name in WRITE_COLUMNS if name not in attributes]
            if missing:
                raise RuntimeError(f"{TABLE} has no column {', '.join(missing)}")
            self.types = [attributes[name] for name in WRITE_COLUMNS]
            blocks: list[bytes] = []
            with (
                conn.cursor() as cursor,
                cursor.copy(f"COPY {TABLE} ({self.columns}) TO STDOUT (FORMAT BINARY)") as copy,
            ):
                blocks.extend(bytes(block) for block in copy)
            header, chunks = split_binary_copy(b"".join(blocks))
            self.payloads = [
                b"".join([header, *chunks[start : start + COPY_BATCH], PG_TRAILER])
                for start in range(0, len(chunks), COPY_BATCH)
            ]
            self.rows = conn.execute(f"SELECT {self.columns} FROM {TABLE} ORDER BY id").fetchall()
            if len(self.rows) != len(chunks):
                raise RuntimeError(f"{len(chunks)} rows dumped, {len(self.rows)} read back")
            conn.execute(f"DROP TABLE IF EXISTS {CLONE}")
            options = conn.execute(
                "SELECT coalesce(array_to_string(reloptions, ', '), '') FROM pg_class "
                "WHERE oid = %s::regclass",
                (TABLE,),
            ).fetchone()
            storage = f" WITH ({options[0]})" if options and options[0] else ""
            # the same storage parameters (fillfactor) as the table: the same pages to write
            conn.execute(f"CREATE TABLE {CLONE} (LIKE {TABLE} INCLUDING ALL){storage}")
            self.clone_created = True
        return len(self.rows)

    def measure(self, repetition: int) -> dict[str, float]:
        runs: list[tuple[str, Callable[[psycopg.Connection[Any]], None]]] = [
            ("pre-encoded", self._write_pre_encoded),
            ("write_row", self._write_rows),
        ]
        if repetition % 2:
            runs.reverse()
        rates: dict[str, float] = {}
        with psycopg.connect(self.conninfo) as conn:
            for label, write in runs:
                conn.execute(f"TRUNCATE {CLONE}")
                conn.commit()
                started = time.perf_counter()
                write(conn)
                elapsed = time.perf_counter() - started
                count = conn.execute(f"SELECT count(*) FROM {CLONE}").fetchone()
                conn.commit()
                if count is None or count[0] != len(self.rows):
                    raise RuntimeError(f"{label}: {count} rows in {CLONE}, not {len(self.rows)}")
                rates[label] = len(self.rows) / elapsed
            conn.execute(f"TRUNCATE {CLONE}")
        return rates

    def _write_pre_encoded(self, conn: psycopg.Connection[Any]) -> None:
        # In binary format copy.write() sends the bytes as they are: each payload carries
        # its own header and trailer (psycopg adds them only around write_row()).
        statement = f"COPY {CLONE} ({self.columns}) FROM STDIN (FORMAT BINARY)"
        for payload in self.payloads:
            with conn.cursor() as cursor, cursor.copy(statement) as copy:
                copy.write(payload)
            conn.commit()

    def _write_rows(self, conn: psycopg.Connection[Any]) -> None:
        statement = f"COPY {CLONE} ({self.columns}) FROM STDIN (FORMAT BINARY)"
        for start in range(0, len(self.rows), COPY_BATCH):
            with conn.cursor() as cursor, cursor.copy(statement) as copy:
                copy.set_types(self.types)
                for row in self.rows[start : start + COPY_BATCH]:
                    copy.write_row(row)
            conn.commit()

    def close(self) -> None:
        if self.clone_created:
            with psycopg.connect(self.conninfo) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {CLONE}")


# ---------------------------------------------------------------- SQLite baseline


def engine_pragmas(url: sa.engine.URL) -> dict[str, object]:
    """The PRAGMAs an engine connection of ours has (set by ``create_engine``'s hooks)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            read = conn.exec_driver_sql
            return {name: read(f"PRAGMA {name}").scalar() for name in SQLITE_PRAGMAS}
    finally:
        engine.dispose()


class SqliteBaseline:
    """sqlite3 ``executemany`` of the rows our logger wrote, into the emptied table."""

    labels: tuple[str, ...] = ("executemany",)

    def __init__(self, url: sa.engine.URL) -> None:
        self.path = url.database or ""
        self.pragmas = engine_pragmas(url)
        self.rows: list[tuple[Any, ...]] = []
        self.columns = ", ".join(f'"{name}"' for name in WRITE_COLUMNS)
        marks = ", ".join("?" for _ in WRITE_COLUMNS)
        self.insert = f"INSERT INTO {TABLE} ({self.columns}) VALUES ({marks})"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)
        for name, value in self.pragmas.items():
            conn.execute(f"PRAGMA {name}={value}")
        return conn

    def capture(self) -> int:
        conn = self._connect()
        try:
            self.rows = conn.execute(f"SELECT {self.columns} FROM {TABLE} ORDER BY id").fetchall()
        finally:
            conn.close()
        return len(self.rows)

    def measure(self, repetition: int) -> dict[str, float]:
        conn = self._connect()
        try:
            conn.execute(f"DELETE FROM {TABLE}")
            started = time.perf_counter()
            for start in range(0, len(self.rows), COPY_BATCH):
                conn.execute("BEGIN")
                conn.executemany(self.insert, self.rows[start : start + COPY_BATCH])
                conn.execute("COMMIT")
            elapsed = time.perf_counter() - started
            (count,) = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
            if count != len(self.rows):
                raise RuntimeError(f"executemany: {count} rows in {TABLE}, not {len(self.rows)}")
            conn.execute(f"DELETE FROM {TABLE}")
        finally:
            conn.close()
        return {"executemany": len(self.rows) / elapsed}

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- sizes


def bytes_per_row(url: sa.engine.URL) -> float:
    engine = create_engine(url)
    with engine.connect() as conn:
        conn.exec_driver_sql(f"ANALYZE {TABLE}")
        size, count = conn.exec_driver_sql(
            f"SELECT pg_total_relation_size('{TABLE}'), count(*) FROM {TABLE}"
        ).one()
    engine.dispose()
    return float(size) / max(int(count), 1)


def _counter(stats: dict[str, object], name: str) -> int:
    value = stats[name]
    return value if isinstance(value, int) else 0


def _journaled_bytes(logger: MLPredictionLogger) -> int:
    """Bytes of records the logger's journal appended (its own counter: file sizes would
    also count records that were resolved and their segments deleted)."""
    return int(logger._writer._journal.counters.bytes)  # a benchmark may look inside


def journal_record_bytes(url: str, workdir: Path) -> tuple[float, float]:
    """Bytes the journal's segment files grow by per prediction, without market data and
    with 300 candles: ``JOURNAL_SAMPLE`` predictions logged after a first one (which opens
    the segment), nothing written to the database until close."""
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(JOURNAL_SAMPLE + 1, 240))
    outputs = raw_model_outputs(rng)

    def measure(name: str, market: pd.DataFrame | None) -> float:
        spool = workdir / f"journal-size-{name}"
        logger = MLPredictionLogger(url, spool_dir=spool, batch_size=10 * JOURNAL_SAMPLE,
                                    flush_interval_s=3600, journal=True)  # fmt: skip
        try:

            def log(vector: np.ndarray) -> None:
                logger.log_prediction_sync(symbol="BTCUSDT", features=vector,
                                           model_outputs=outputs, market_data=market)  # fmt: skip

            def journaled(expected: int) -> int:
                deadline = time.monotonic() + 10
                while (count := _counter(logger.stats(), "journaled")) < expected:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
                return count

            log(vectors[0])
            first, size = journaled(1), _journaled_bytes(logger)
            for vector in vectors[1:]:
                log(vector)
            records = journaled(first + JOURNAL_SAMPLE) - first
            grown = _journaled_bytes(logger) - size
        finally:
            logger.close_sync(timeout=60)
        if records != JOURNAL_SAMPLE:
            print(f"  (journal size, {name}: {records} of {JOURNAL_SAMPLE} records journaled)")
        return grown / max(records, 1)

    return measure("plain", None), measure("market", market_frame("index", 300))


# ---------------------------------------------------------------- report


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _rates(values: list[float], fmt: Callable[[float], str]) -> str:
    return " ".join(fmt(value) for value in values)


def _case(form: str, journal: bool, candles: int) -> CallerCase:
    return next(
        case
        for case in CALLER_CASES
        if case.form == form and case.journal == journal and case.candles == candles
        and case.fsync == "none"
    )  # fmt: skip


def run_backend(
    name: str, url_text: str, rows: int, calls: int, rounds: int, baseline_reps: int, workdir: Path
) -> None:
    url = normalize_url(url_text)
    engine = create_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    backend_dir = workdir / name
    caller = caller_overhead(url_text, backend_dir, calls)
    baseline: Baseline = PostgresBaselines(url) if name == "postgresql" else SqliteBaseline(url)
    try:
        flows, baselines, captured = sustained(url, url_text, backend_dir, rows, rounds,
                                               baseline, baseline_reps)  # fmt: skip
    finally:
        baseline.close()
    on, off = flows[True], flows[False]
    ratio = on.median / off.median
    paired = [a / b for a, b in zip(on.rates, off.rates, strict=True)]

    counts = sorted({calls // case.divisor for case in CALLER_CASES}, reverse=True)
    print(f"\n== {name} (240 features; caller: {' / '.join(f'{c:,}' for c in counts)} calls per "
          f"case (no market data / 300 candles / 5,000 candles), {BLOCKS} interleaved blocks; "
          f"sustained: {rounds} rounds of {rows:,} per mode)")  # fmt: skip
    print(f"{'caller overhead of log_prediction_sync':48s}{'p50 us':>9s}{'p99 us':>9s}"
          "   block p50s min..max")  # fmt: skip
    for case in CALLER_CASES:
        result = caller[case]
        print(f"  {case.label:46s}{result.percentile(50):9.1f}{result.percentile(99):9.1f}"
              f"   {min(result.block_p50s):5.1f}..{max(result.block_p50s):5.1f}")  # fmt: skip

    def p50(form: str, journal: bool, candles: int = 0) -> float:
        return caller[_case(form, journal, candles)].percentile(50)

    costs = ", ".join(f"{p50(form, True, 300) - p50(form, False, 300):+.1f} us {label}"
                      for form, label in MARKET_FORMS.items())  # fmt: skip
    print(f"  journal's cost at p50: {p50('none', True) - p50('none', False):+.1f} us without "
          f"market data;\n    with 300 candles: {costs}")  # fmt: skip

    print(f"{'sustained end to end, predictions/s':48s}{'median':>9s}   rounds")
    print(f"  {'journal on':46s}{on.median:9,.0f}   {_rates(on.rates, '{:,.0f}'.format)}")
    print(f"  {'journal off (memory-only)':46s}{off.median:9,.0f}   "
          f"{_rates(off.rates, '{:,.0f}'.format)}")  # fmt: skip
    print(f"  {'ratio on / off':46s}{ratio:9.2f}   {_rates(paired, '{:.2f}'.format)} (paired)")
    print(f"  mean batch: {statistics.mean(on.batch_ms):.0f} ms on, "
          f"{statistics.mean(off.batch_ms):.0f} ms off")  # fmt: skip

    descriptions = {
        "pre-encoded": "pre-encoded binary COPY (copy.write)",
        "write_row": "binary COPY, copy.write_row of tuples",
        "executemany": "sqlite3 executemany, our PRAGMAs",
    }
    print(f"{'baselines (the same rows), rows/s':48s}{'median':>9s}   repetitions")
    print(f"  ({captured:,} rows our logger wrote, read back untimed; batches of {COPY_BATCH}, "
          "one transaction each)")  # fmt: skip
    medians = {label: statistics.median(values) for label, values in baselines.items()}
    for label, values in baselines.items():
        print(f"  {descriptions[label]:46s}{medians[label]:9,.0f}   "
              f"{_rates(values, '{:,.0f}'.format)}")  # fmt: skip
    for label in baselines:
        print(f"  ours / {label}: {on.median / medians[label]:.2f} journal on, "
              f"{off.median / medians[label]:.2f} journal off")  # fmt: skip
    if isinstance(baseline, SqliteBaseline):
        pragmas = ", ".join(f"{key}={value}" for key, value in baseline.pragmas.items())
        print(f"  (sqlite3 PRAGMAs, as on our engine's connections: {pragmas})")

    size = bytes_per_row(url) if name == "postgresql" else None
    if size is not None:
        print(f"bytes per row (table+indexes+TOAST / rows): {size:.0f}")
    plain, with_market = journal_record_bytes(url_text, backend_dir)
    print(f"journal record: {plain:,.0f} bytes (no market data), {with_market:,.0f} "
          f"(300 candles), bytes appended / records over {JOURNAL_SAMPLE}")  # fmt: skip
    total = on.logged + off.logged
    saved = on.saved + off.saved
    print(f"check: saved {saved:,} of {total:,} logged; lost {on.lost + off.lost}, "
          f"dead-lettered {on.dead_lettered + off.dead_lettered}, "
          f"journal errors {on.journal_errors}")  # fmt: skip

    def target(text: str, value: str, met: bool) -> None:
        print(f"target {text}: {value}, {_verdict(met)}")

    for journal, limit in ((False, TARGET_P50_MEMORY_US), (True, TARGET_P50_JOURNAL_US)):
        value = p50("none", journal)
        mode = "journal on" if journal else "journal off (memory-only)"
        target(f"caller p50, {mode}, no market data <= {limit:g} us", f"{value:.1f} us",
               value <= limit)  # fmt: skip
    for form, label in MARKET_FORMS.items():
        for journal in (True, False):
            value = p50(form, journal, 300)
            target(f"caller p50, journal {'on' if journal else 'off'}, 300 candles ({label}) "
                   f"<= {TARGET_P50_MARKET_US:g} us", f"{value:.1f} us",
                   value <= TARGET_P50_MARKET_US)  # fmt: skip
    target(f"sustained journal on >= {TARGET_THROUGHPUT_RATIO:g}x off", f"{ratio:.2f}x",
           ratio >= TARGET_THROUGHPUT_RATIO)  # fmt: skip
    reference = "pre-encoded" if name == "postgresql" else "executemany"
    versus = on.median / medians[reference]
    target(f"ours (journal on) / {reference} >= {TARGET_BASELINE_RATIO:g}", f"{versus:.2f}",
           versus >= TARGET_BASELINE_RATIO)  # fmt: skip
    if size is not None:
        target(f"bytes per row <= {TARGET_BYTES_PER_ROW}", f"{size:.0f}",
               size <= TARGET_BYTES_PER_ROW)  # fmt: skip


def _clear(url: sa.engine.URL) -> None:
    engine = create_engine(url)
    sqlite = url.get_backend_name() == "sqlite"
    statement = f"DELETE FROM {TABLE}" if sqlite else f"TRUNCATE {TABLE}"
    with engine.begin() as conn:
        conn.exec_driver_sql(statement)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40_000, help="predictions per sustained round")
    parser.add_argument("--rounds", type=int, default=4, help="sustained rounds per mode")
    parser.add_argument("--baseline-reps", type=int, default=3,
                        help="repetitions of each baseline (after the first rounds)")  # fmt: skip
    parser.add_argument("--calls", type=int, default=20_000, help="timed calls per caller case")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgresql", action="store_true")
    args = parser.parse_args()
    reps = max(1, min(args.baseline_reps, args.rounds))
    print(f"mlpred_cli from {Path(mlpred_cli.__file__).parent}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if not args.skip_postgresql:
            with throwaway_database(args.pg_url) as bench_url:
                url_text = bench_url.render_as_string(hide_password=False)
                run_backend("postgresql", url_text, args.rows, args.calls, args.rounds, reps,
                            workdir)  # fmt: skip
        if not args.skip_sqlite:
            run_backend("sqlite", f"sqlite:///{workdir / 'bench.db'}", args.rows, args.calls,
                        args.rounds, reps, workdir)  # fmt: skip
    print(f"\n(ran {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
