"""Benchmark of the prediction logger: caller overhead, sustained throughput, bytes per row.

Run:  python bench/bench_writer.py [--rows 100000] [--pg-url postgresql://postgres@127.0.0.1/postgres]

For each backend it measures, in one run:
  * caller overhead p50/p99 of log_prediction_sync (240 features; without and with a
    300-candle DataFrame), with the writer thread running as in production;
  * sustained predictions/s end to end (log N as fast as possible, then flush);
  * the baseline: the same rows written by the driver directly (psycopg binary COPY on
    PostgreSQL, sqlite3 executemany on SQLite) in batches of 1000, and the ratio ours/baseline;
  * bytes per row on PostgreSQL (table + indexes + TOAST / rows).
It creates and drops its own PostgreSQL database and SQLite file.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
import sqlalchemy as sa
from throwaway import throwaway_database

from mlpred_cli import MLPredictionLogger
from mlpred_cli.capture.pending_prediction import PendingPrediction
from mlpred_cli.capture.prediction_rows import DuplicateTracker, build_rows
from mlpred_cli.capture.synthetic_market import random_walk_candles, raw_model_outputs
from mlpred_cli.store.database import create_engine, normalize_url
from mlpred_cli.store.migrations import upgrade_to_head
from mlpred_cli.store.prediction_row import WRITE_COLUMNS
from mlpred_cli.store.prediction_writes import _PG_COPY_TYPES, _sqlite_values

COPY_BATCH = 1000


def _percentiles(samples_ns: list[int]) -> tuple[float, float]:
    values = np.array(samples_ns) / 1000.0
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def caller_overhead(url: str, spool: Path, calls: int, with_market: bool) -> tuple[float, float]:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(1000, 240))
    outputs = raw_model_outputs(rng)
    market = (
        random_walk_candles(rng, 300, end=datetime(2026, 1, 1, tzinfo=UTC)) if with_market else None
    )
    samples: list[int] = []
    with MLPredictionLogger(url, spool_dir=spool, batch_size=10) as logger:
        for i in range(calls):
            vector = vectors[i % 1000]
            before = time.perf_counter_ns()
            logger.log_prediction_sync(
                symbol="BTCUSDT", features=vector, model_outputs=outputs, market_data=market
            )
            samples.append(time.perf_counter_ns() - before)
        logger.flush_sync(timeout=300)
    return _percentiles(samples)


def sustained(url: str, spool: Path, rows: int) -> tuple[float, dict[str, object]]:
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(5000, 240))
    outputs = raw_model_outputs(rng)
    symbols = [f"SYM{i}" for i in range(10)]
    with MLPredictionLogger(url, spool_dir=spool, batch_size=1000, flush_interval_s=0.05) as logger:
        started = time.perf_counter()
        for i in range(rows):
            logger.log_prediction_sync(
                symbol=symbols[i % 10], features=vectors[i % 5000], model_outputs=outputs
            )
        logger.flush_sync(timeout=600)
        elapsed = time.perf_counter() - started
        stats = logger.stats()
    return rows / elapsed, stats


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


def run_backend(name: str, url_text: str, rows: int, calls: int, workdir: Path) -> None:
    url = normalize_url(url_text)
    engine = create_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    spool = workdir / f"spool-{name}"
    p50, p99 = caller_overhead(url_text, spool, calls, with_market=False)
    p50m, p99m = caller_overhead(url_text, spool, calls // 4, with_market=True)
    _clear(url)
    reference = prebuilt_rows(rows)
    if name == "postgresql":
        baseline = baseline_pg_copy(url, reference)
        baseline_label = "raw psycopg binary COPY, batches of 1000"
    else:
        baseline = baseline_sqlite(Path(url.database or ""), reference)
        baseline_label = "raw sqlite3 executemany, batches of 1000"
    _clear(url)
    ours, stats = sustained(url_text, spool, rows)
    print(f"\n== {name} ({rows:,} predictions, 240 features)")
    print(f"caller overhead, no market data : p50 {p50:7.1f} us   p99 {p99:7.1f} us")
    print(f"caller overhead, 300 candles    : p50 {p50m:7.1f} us   p99 {p99m:7.1f} us")
    print(
        f"sustained end to end (ours)     : {ours:10,.0f} predictions/s "
        f"(batches: {stats['batches']}, mean {stats['mean_batch_ms']:.1f} ms)"
    )
    print(f"baseline ({baseline_label}) : {baseline:10,.0f} rows/s")
    print(f"ratio ours / baseline           : {ours / baseline:10.2f}")
    if name == "postgresql":
        print(f"bytes per row (table+indexes)   : {bytes_per_row(url):10.0f}")
    print(
        f"saved {stats['saved']:,}  spooled {stats['spooled']}  "
        f"dead-lettered {stats['dead_lettered']}"
    )


def _clear(url: sa.engine.URL) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM ml_predictions")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgresql", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if not args.skip_postgresql:
            with throwaway_database(args.pg_url) as bench_url:
                url_text = bench_url.render_as_string(hide_password=False)
                run_backend("postgresql", url_text, args.rows, args.calls, workdir)
        if not args.skip_sqlite:
            run_backend(
                "sqlite", f"sqlite:///{workdir / 'bench.db'}", args.rows, args.calls, workdir
            )


if __name__ == "__main__":
    main()
