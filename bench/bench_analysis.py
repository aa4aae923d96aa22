"""Benchmark of the analysis commands on PostgreSQL.

Creates a throw-away database, loads N synthetic predictions (10 symbols, 3 model versions,
one year up to now, outcomes filled) with COPY, then times the library calls behind
``accuracy --by symbol``, ``analyze --symbol S --days 30``, ``high-confidence`` and
``recent`` against the DESIGN.md SQL run directly in the same session as the baseline.

    .venv/bin/python bench/bench_analysis.py            # 1,000,000 rows
    .venv/bin/python bench/bench_analysis.py --rows 200000 --repeat 3

Targets (issue 4): accuracy <= 2x its baseline; analyze of one symbol over 30 days <= 3 s;
high-confidence and recent <= 0.5 s.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from sqlalchemy.engine import URL, Engine
from throwaway import throwaway_database

from mlpred_cli.analysis.prediction_views import (
    accuracy_table,
    analyze,
    high_confidence,
    recent_predictions,
)
from mlpred_cli.config import DEFAULT_DIRECTION_THRESHOLDS, HORIZONS
from mlpred_cli.store.database import create_engine

SYMBOLS = [f"SYM{i}USDT" for i in range(10)]
VERSIONS = ["v1.0", "v1.1", "v2.0"]
DIRECTIONS = np.array(["LONG", "SHORT", "NEUTRAL"])
CHUNK_ROWS = 200_000

DESIGN_ACCURACY_SQL = """SELECT symbol, COUNT(*) as total, AVG(CASE WHEN accuracy_15m THEN 1 ELSE 0 END) as accuracy_15m,
       AVG(signal_confidence) as avg_confidence
FROM ml_predictions WHERE actual_direction_15m IS NOT NULL GROUP BY symbol ORDER BY total DESC"""  # noqa: E501
DESIGN_RECENT_SQL = (
    "SELECT * FROM ml_predictions WHERE datetime >= NOW() - INTERVAL '1 hour' "
    "ORDER BY datetime DESC"
)
DESIGN_HIGH_CONFIDENCE_SQL = """SELECT * FROM ml_predictions WHERE signal_confidence > 0.8 AND signal_type != 'NEUTRAL'
ORDER BY datetime DESC LIMIT 100"""  # noqa: E501


def _direction(returns: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(returns > threshold, "LONG", np.where(returns < -threshold, "SHORT", "NEUTRAL"))


def synthetic_chunk(rng: np.random.Generator, start: int, count: int, total: int) -> pd.DataFrame:
    """Rows ``start .. start+count`` of ``total``, spread evenly over the year up to now."""
    now = datetime.now(UTC)
    span = timedelta(days=365).total_seconds()
    offsets = (total - 1 - np.arange(start, start + count)) * (span / total)
    moments = pd.to_datetime(now.timestamp() - offsets, unit="s", utc=True)
    frame = pd.DataFrame(
        {
            "prediction_id": [str(uuid.uuid4()) for _ in range(count)],
            "symbol": rng.choice(SYMBOLS, count),
            "timestamp": (moments.asi8 // 1_000_000).astype(np.int64),
            "datetime": moments,
            "features_count": 240,
            "features_hash": rng.integers(0, 2**59, count),
            "lookback_periods": 1,
            "features_mean": rng.normal(0, 0.1, count),
            "features_std": rng.normal(1, 0.05, count),
            "nan_count": rng.poisson(0.01, count),
            "inf_count": 0,
            "is_duplicate": rng.random(count) < 0.001,
            "close_price": rng.uniform(10, 60_000, count),
            "volume": rng.uniform(0, 1e6, count),
            "signal_type": rng.choice(DIRECTIONS, count, p=[0.4, 0.4, 0.2]),
            "signal_confidence": rng.beta(5, 3, count),
            "signal_timeframe": rng.choice(np.array(HORIZONS), count),
            "model_version": rng.choice(VERSIONS, count),
            "inference_time_ms": rng.gamma(2.0, 3.0, count),
        }
    )
    for horizon in HORIZONS:
        threshold = DEFAULT_DIRECTION_THRESHOLDS[horizon]
        predicted = rng.normal(0, 2 * threshold, count)
        actual = 0.3 * predicted + rng.normal(0, 2 * threshold, count)
        direction = _direction(predicted, threshold / 2)
        actual_direction = _direction(actual, threshold)
        frame[f"predicted_return_{horizon}"] = predicted
        frame[f"direction_{horizon}"] = direction
        frame[f"direction_{horizon}_confidence"] = rng.uniform(0.34, 1.0, count)
        frame[f"actual_return_{horizon}"] = actual
        frame[f"actual_direction_{horizon}"] = actual_direction
        frame[f"accuracy_{horizon}"] = direction == actual_direction
        frame[f"return_error_{horizon}"] = predicted - actual
    frame["actuals_filled_at"] = now
    return frame


def load(pg_url: str, rows: int, seed: int) -> float:
    """COPY ``rows`` synthetic predictions into ``ml_predictions``; returns seconds taken."""
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    with psycopg.connect(pg_url) as conn:
        for start in range(0, rows, CHUNK_ROWS):
            frame = synthetic_chunk(rng, start, min(CHUNK_ROWS, rows - start), rows)
            buffer = io.StringIO()
            frame.to_csv(buffer, index=False, header=False)
            columns = ", ".join(frame.columns)
            with conn.cursor().copy(
                f"COPY ml_predictions ({columns}) FROM STDIN WITH (FORMAT csv)"
            ) as copy:
                copy.write(buffer.getvalue())
            print(f"  loaded {start + len(frame):,} rows", flush=True)
        conn.commit()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE ml_predictions")
    return time.perf_counter() - started


def timed(action: Callable[[], Any], repeat: int) -> float:
    """Median wall time of ``repeat`` runs after one warm-up run, in seconds."""
    action()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="admin URL used to create and drop the throw-away database",
    )
    args = parser.parse_args()

    with throwaway_database(args.pg_admin_url) as bench_url:
        engine = create_engine(bench_url)
        try:
            figures = run_figures(engine, bench_url, args)
        finally:
            engine.dispose()
    report(figures, args)


def run_figures(engine: Engine, bench_url: URL, args: argparse.Namespace) -> dict[str, float]:
    """Load the data, then time every command and its baseline."""
    plain_url = bench_url.set(drivername="postgresql").render_as_string(hide_password=False)
    print(f"Loading {args.rows:,} predictions into {bench_url.database} ...")
    load_s = load(plain_url, args.rows, args.seed)
    print(f"  load + VACUUM ANALYZE: {load_s:.1f} s")

    def sql(text: str) -> Callable[[], Any]:
        def run() -> Any:
            with engine.connect() as conn:
                return conn.exec_driver_sql(text).all()

        return run

    return {
        "baseline: DESIGN accuracy-by-symbol SQL": timed(sql(DESIGN_ACCURACY_SQL), args.repeat),
        "accuracy --by symbol (all horizons)": timed(
            lambda: accuracy_table(engine, by="symbol"), args.repeat
        ),
        "accuracy --by symbol --horizon 15m": timed(
            lambda: accuracy_table(engine, by="symbol", horizons=["15m"]), args.repeat
        ),
        "analyze --symbol SYM0USDT --days 30": timed(
            lambda: analyze(engine, symbol="SYM0USDT", days=30), args.repeat
        ),
        "baseline: DESIGN high-confidence SQL": timed(sql(DESIGN_HIGH_CONFIDENCE_SQL), args.repeat),
        "high-confidence": timed(lambda: high_confidence(engine), args.repeat),
        "baseline: DESIGN recent SQL": timed(sql(DESIGN_RECENT_SQL), args.repeat),
        "recent --hours 1": timed(lambda: recent_predictions(engine), args.repeat),
    }


def report(figures: dict[str, float], args: argparse.Namespace) -> None:
    """Print the figures with their ratios to the baselines."""
    baseline = figures["baseline: DESIGN accuracy-by-symbol SQL"]
    print(f"\nmedian of {args.repeat} runs, {args.rows:,} rows, PostgreSQL")
    width = max(map(len, figures))
    for label, seconds in figures.items():
        print(f"  {label:<{width}}  {seconds * 1000:9.1f} ms")
    ratio_all = figures["accuracy --by symbol (all horizons)"] / baseline
    ratio_one = figures["accuracy --by symbol --horizon 15m"] / baseline
    checks = [
        ("accuracy (all horizons) / baseline", ratio_all, 2.0, "x"),
        ("accuracy (15m) / baseline", ratio_one, 2.0, "x"),
        ("analyze one symbol, 30 days", figures["analyze --symbol SYM0USDT --days 30"], 3.0, "s"),
        ("high-confidence", figures["high-confidence"], 0.5, "s"),
        ("recent", figures["recent --hours 1"], 0.5, "s"),
    ]
    print("\ntargets")
    for label, value, limit, unit in checks:
        verdict = "ok" if value <= limit else "MISSED"
        print(f"  {label:<36} {value:7.3f} {unit}  (target <= {limit:g} {unit})  {verdict}")
    high_ratio = figures["high-confidence"] / figures["baseline: DESIGN high-confidence SQL"]
    recent_ratio = figures["recent --hours 1"] / figures["baseline: DESIGN recent SQL"]
    print(f"  high-confidence / its SQL: {high_ratio:.2f}x; recent / its SQL: {recent_ratio:.2f}x")


if __name__ == "__main__":
    main()
