"""Benchmark of the prediction logger, write-ahead journal on and off, in one run.

Caller overhead and sustained throughput, each against a baseline measured in the same run.

Run:  python bench/bench_writer.py [--calls 20000] [--rows 40000] [--rounds 4]
                                   [--pg-url postgresql://postgres@127.0.0.1/postgres]

For each backend (PostgreSQL, SQLite) it measures:
  * caller overhead p50/p99 of ``log_prediction_sync`` (240 features), with the writer thread
    running as in production (batch_size 10): journal on (fsync="none", the default) and off
    (``journal=False``), without market data and with a 300-candle DataFrame; and journal on
    with fsync="interval", without market data. The cases run side by side: one logger each,
    their calls interleaved in blocks (the order rotating), so a load that comes and goes on
    a shared machine falls on every case alike;
  * sustained predictions/s end to end (log N as fast as possible, then flush), journal on
    and off in alternating rounds, their medians and the ratio on/off;
  * the baseline: the same rows written by the driver directly (psycopg binary COPY on
    PostgreSQL, sqlite3 executemany on SQLite) in batches of 1000, and the ratios
    ours/baseline;
  * bytes per row on PostgreSQL (table + indexes + TOAST / rows) and bytes per journal record.
Targets checked (journal on): caller p50 <= 15 us without market data, sustained >= 0.9x
journal off. It creates and drops its own PostgreSQL database and SQLite file; both backends
take about 70-90 s on the project's 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import sqlalchemy as sa
from throwaway import throwaway_database

import mlpred_cli
from mlpred_cli import MLPredictionLogger
from mlpred_cli.capture.journal_records import encode_prediction
from mlpred_cli.capture.pending_prediction import PendingPrediction
from mlpred_cli.capture.prediction_rows import DuplicateTracker, build_rows
from mlpred_cli.capture.synthetic_market import random_walk_candles, raw_model_outputs
from mlpred_cli.derive.indicators import extract_market_data
from mlpred_cli.store.database import create_engine, normalize_url
from mlpred_cli.store.migrations import upgrade_to_head
from mlpred_cli.store.prediction_row import WRITE_COLUMNS
from mlpred_cli.store.prediction_writes import _PG_COPY_TYPES, _sqlite_values

COPY_BATCH = 1000
BLOCKS = 10  # caller-overhead calls of each case are interleaved in this many blocks
WARMUP_CALLS = 200
TARGET_CALLER_P50_US = 15.0
TARGET_THROUGHPUT_RATIO = 0.9


@dataclass(frozen=True)
class CallerCase:
    """One configuration whose caller overhead is measured."""

    label: str
    journal: bool
    fsync: str
    market: bool


CALLER_CASES = (
    CallerCase("journal on,  no market data", True, "none", False),
    CallerCase("journal off, no market data", False, "none", False),
    CallerCase("journal on,  300 candles", True, "none", True),
    CallerCase("journal off, 300 candles", False, "none", True),
    CallerCase("journal on,  fsync=interval, no market", True, "interval", False),
)


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


def caller_overhead(url: str, workdir: Path, calls: int) -> dict[CallerCase, CallerResult]:
    """Every case of ``CALLER_CASES`` side by side: ``calls`` calls each (a quarter of that
    with market data), interleaved in ``BLOCKS`` blocks; each block is flushed untimed."""
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(1000, 240))
    outputs = raw_model_outputs(rng)
    market = random_walk_candles(rng, 300, end=datetime(2026, 1, 1, tzinfo=UTC))
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
        data = market if case.market else None
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
        logger.flush_sync(timeout=300)
        if record is not None:
            record.samples_ns.extend(samples)
            record.block_p50s.append(float(np.percentile(samples, 50)) / 1000.0)

    try:
        for case in CALLER_CASES:
            run(case, WARMUP_CALLS, None)
        for block in range(BLOCKS):
            shift = block % len(CALLER_CASES)
            for case in CALLER_CASES[shift:] + CALLER_CASES[:shift]:
                per_block = (calls // 4 if case.market else calls) // BLOCKS
                run(case, per_block, results[case])
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
    url: sa.engine.URL, url_text: str, workdir: Path, rows: int, rounds: int
) -> dict[bool, SustainedResult]:
    """Journal on and off in alternating rounds (on/off, off/on, ...) on an emptied table."""
    results = {True: SustainedResult(), False: SustainedResult()}
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
    return results


def prebuilt_rows(count: int) -> list[tuple[object, ...]]:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(5000, 240))
    outputs = raw_model_outputs(rng)
    now = time.time()
    pending = [
        PendingPrediction(uuid.uuid4(), f"SYM{i % 10}", "bench", vectors[i % 5000], outputs,
                          None, None, None, now)
        for i in range(count)
    ]  # fmt: skip
    rows: list[tuple[object, ...]] = []
    for start in range(0, count, 5000):
        built = build_rows(pending[start : start + 5000], DuplicateTracker(10), on_duplicate="mark",
                           store_features=False)  # fmt: skip
        rows.extend(built.rows)
    return rows


def baseline_pg_copy(url: sa.engine.URL, rows: list[tuple[object, ...]]) -> float:
    columns = ", ".join(f'"{name}"' for name in WRITE_COLUMNS)
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn:
        conn.execute("TRUNCATE ml_predictions")
        conn.commit()
        started = time.perf_counter()
        for start in range(0, len(rows), COPY_BATCH):
            with (
                conn.cursor() as cursor,
                cursor.copy(f"COPY ml_predictions ({columns}) FROM STDIN (FORMAT BINARY)") as copy,
            ):
                copy.set_types(_PG_COPY_TYPES)
                for row in rows[start : start + COPY_BATCH]:
                    copy.write_row(row)
            conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("TRUNCATE ml_predictions")
        conn.commit()
    return len(rows) / elapsed


def baseline_sqlite(path: Path, rows: list[tuple[object, ...]]) -> float:
    import sqlite3

    values = _sqlite_values(rows)
    sql = (
        f"INSERT INTO ml_predictions ({', '.join(WRITE_COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in WRITE_COLUMNS)})"
    )
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("DELETE FROM ml_predictions")
    started = time.perf_counter()
    for start in range(0, len(values), COPY_BATCH):
        conn.execute("BEGIN")
        conn.executemany(sql, values[start : start + COPY_BATCH])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.execute("DELETE FROM ml_predictions")
    conn.close()
    return len(values) / elapsed


def bytes_per_row(url: sa.engine.URL) -> float:
    engine = create_engine(url)
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE ml_predictions")
        size, count = conn.exec_driver_sql(
            "SELECT pg_total_relation_size('ml_predictions'), count(*) FROM ml_predictions"
        ).one()
    engine.dispose()
    return float(size) / max(int(count), 1)


def journal_record_bytes() -> tuple[int, int]:
    """Size of one journal record without and with a 300-candle window."""
    rng = np.random.default_rng(4)
    market = extract_market_data(
        random_walk_candles(rng, 300, end=datetime(2026, 1, 1, tzinfo=UTC))
    )

    def record(with_market: bool) -> int:
        item = PendingPrediction(uuid.uuid4(), "BTCUSDT", "unknown", rng.normal(size=240),
                                 raw_model_outputs(rng), None, market if with_market else None,
                                 None, time.time())  # fmt: skip
        return len(encode_prediction(item))

    return record(False), record(True)


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _rates(values: list[float], fmt: Callable[[float], str]) -> str:
    return " ".join(fmt(value) for value in values)


def run_backend(
    name: str, url_text: str, rows: int, calls: int, rounds: int, workdir: Path
) -> dict[str, float]:
    url = normalize_url(url_text)
    engine = create_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    backend_dir = workdir / name
    caller = caller_overhead(url_text, backend_dir, calls)
    _clear(url)
    reference = prebuilt_rows(rows)
    if name == "postgresql":
        baseline = baseline_pg_copy(url, reference)
        baseline_label = "raw psycopg binary COPY, batches of 1000"
    else:
        baseline = baseline_sqlite(Path(url.database or ""), reference)
        baseline_label = "raw sqlite3 executemany, batches of 1000"
    del reference
    flows = sustained(url, url_text, backend_dir, rows, rounds)
    on, off = flows[True], flows[False]
    ratio = on.median / off.median
    paired = [a / b for a, b in zip(on.rates, off.rates, strict=True)]

    print(f"\n== {name} (240 features; caller: {calls:,} calls per case without market data, "
          f"{calls // 4:,} with, {BLOCKS} interleaved blocks; sustained: {rounds} rounds of "
          f"{rows:,} per mode)")  # fmt: skip
    print(f"{'caller overhead of log_prediction_sync':42s}{'p50 us':>9s}{'p99 us':>9s}"
          "   block p50s min..max")  # fmt: skip
    for case in CALLER_CASES:
        result = caller[case]
        print(f"  {case.label:40s}{result.percentile(50):9.1f}{result.percentile(99):9.1f}"
              f"   {min(result.block_p50s):5.1f}..{max(result.block_p50s):5.1f}")  # fmt: skip
    on_p50 = caller[CALLER_CASES[0]].percentile(50)
    off_p50 = caller[CALLER_CASES[1]].percentile(50)
    on_p50m = caller[CALLER_CASES[2]].percentile(50)
    off_p50m = caller[CALLER_CASES[3]].percentile(50)
    print(f"  journal's cost at p50: {on_p50 - off_p50:+.1f} us without market data, "
          f"{on_p50m - off_p50m:+.1f} us with 300 candles")  # fmt: skip
    print(f"{'sustained end to end, predictions/s':42s}{'median':>9s}   rounds")
    print(f"  {'journal on':40s}{on.median:9,.0f}   {_rates(on.rates, '{:,.0f}'.format)}")
    print(f"  {'journal off':40s}{off.median:9,.0f}   {_rates(off.rates, '{:,.0f}'.format)}")
    print(f"  {'ratio on / off':40s}{ratio:9.2f}   {_rates(paired, '{:.2f}'.format)} (paired)")
    print(f"  mean batch: {statistics.mean(on.batch_ms):.0f} ms on, "
          f"{statistics.mean(off.batch_ms):.0f} ms off")  # fmt: skip
    print(f"baseline ({baseline_label}): {baseline:,.0f} rows/s")
    print(f"ratio ours / baseline: {on.median / baseline:.2f} journal on, "
          f"{off.median / baseline:.2f} journal off")  # fmt: skip
    if name == "postgresql":
        print(f"bytes per row (table+indexes): {bytes_per_row(url):.0f}")
    plain, with_market = journal_record_bytes()
    print(f"journal record: {plain:,} bytes (no market data), {with_market:,} (300 candles)")
    total = on.logged + off.logged
    saved = on.saved + off.saved
    print(f"check: saved {saved:,} of {total:,} logged; lost {on.lost + off.lost}, "
          f"dead-lettered {on.dead_lettered + off.dead_lettered}, "
          f"journal errors {on.journal_errors}")  # fmt: skip
    print(f"target caller p50 (journal on, no market data) <= {TARGET_CALLER_P50_US:g} us: "
          f"{on_p50:.1f} us, {_verdict(on_p50 <= TARGET_CALLER_P50_US)}")  # fmt: skip
    print(f"target sustained journal on >= {TARGET_THROUGHPUT_RATIO:g}x off: {ratio:.2f}x, "
          f"{_verdict(ratio >= TARGET_THROUGHPUT_RATIO)}")  # fmt: skip
    return {"caller_p50_on": on_p50, "throughput_ratio": ratio}


def _clear(url: sa.engine.URL) -> None:
    engine = create_engine(url)
    sqlite = url.get_backend_name() == "sqlite"
    statement = "DELETE FROM ml_predictions" if sqlite else "TRUNCATE ml_predictions"
    with engine.begin() as conn:
        conn.exec_driver_sql(statement)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40_000, help="predictions per sustained round")
    parser.add_argument("--rounds", type=int, default=4, help="sustained rounds per mode")
    parser.add_argument("--calls", type=int, default=20_000, help="timed calls per caller case")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgresql", action="store_true")
    args = parser.parse_args()
    print(f"mlpred_cli from {Path(mlpred_cli.__file__).parent}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if not args.skip_postgresql:
            with throwaway_database(args.pg_url) as bench_url:
                url_text = bench_url.render_as_string(hide_password=False)
                run_backend("postgresql", url_text, args.rows, args.calls, args.rounds, workdir)
        if not args.skip_sqlite:
            run_backend("sqlite", f"sqlite:///{workdir / 'bench.db'}", args.rows, args.calls,
                        args.rounds, workdir)  # fmt: skip
    print(f"\n(ran {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
