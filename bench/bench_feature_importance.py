"""Benchmark of ``mlpred feature-importance compute`` on PostgreSQL.

Creates a throw-away database, COPYs N predictions with a stored feature vector (JSONB,
full float64 precision as the logger writes it) and a backfilled 1h return (feature 7 drives
the return), then times ``compute_feature_importance`` end to end (read, parse, score, write
the snapshot). Baselines measured in the same run:

* read floor: ``SELECT features_array::text, actual_return_1h`` fetched with psycopg (just
  getting the JSON to the client, no parsing, no maths);
* naive: that fetch, ``json.loads`` per row and ``scipy.stats.spearmanr`` per feature.

    .venv/bin/python bench/bench_feature_importance.py                 # 100,000 x 240
    .venv/bin/python bench/bench_feature_importance.py --rows 20000 --skip-naive
    .venv/bin/python bench/bench_feature_importance.py --sqlite     # also on a SQLite copy

Target (issue 5): 100,000 predictions x 240 features in <= 10 s.
"""

from __future__ import annotations

import argparse
import io
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
from scipy import stats
from sqlalchemy.engine import URL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from throwaway import throwaway_database

from mlpred_cli.analysis.feature_importance import compute_feature_importance
from mlpred_cli.store.database import create_engine
from mlpred_cli.store.migrations import upgrade_to_head

DRIVER = 7
CHUNK_ROWS = 10_000
TARGET_S = 10.0


def load(url: str, rows: int, features: int, seed: int) -> float:
    """COPY ``rows`` predictions with feature vectors and 1h returns; returns seconds."""
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    started = time.perf_counter()
    columns = ("prediction_id, symbol, timestamp, datetime, model_version, features_count, "
               "actual_return_1h, features_array")  # fmt: skip
    with (
        psycopg.connect(url) as conn,
        conn.cursor().copy(f"COPY ml_predictions ({columns}) FROM STDIN") as copy,
    ):
        for start in range(0, rows, CHUNK_ROWS):
            count = min(CHUNK_ROWS, rows - start)
            matrix = rng.normal(size=(count, features))
            returns = 0.01 * matrix[:, DRIVER] + rng.normal(scale=0.01, size=count)
            buffer = io.StringIO()
            for index in range(count):
                moment = now - timedelta(minutes=15 * ((start + index) % 2800) + 1)
                buffer.write(
                    f"{uuid.uuid4()}\tBTCUSDT\t{int(moment.timestamp() * 1000)}\t"
                    f"{moment.isoformat()}\tbench\t{features}\t{float(returns[index])!r}\t"
                    f"{json.dumps(matrix[index].tolist())}\n"
                )
            copy.write(buffer.getvalue())
    return time.perf_counter() - started


def read_floor(url: str) -> float:
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        conn.execute("SELECT features_array::text, actual_return_1h FROM ml_predictions").fetchall()
    return time.perf_counter() - started


def naive(url: str) -> tuple[float, int]:
    """Fetch, json.loads per row, scipy.stats.spearmanr per feature; (seconds, best index)."""
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT features_array::text, actual_return_1h FROM ml_predictions")
        fetched = rows.fetchall()
    matrix = np.array([json.loads(text) for text, _ in fetched], dtype=float)
    returns = np.array([value for _, value in fetched], dtype=float)
    scores = [abs(stats.spearmanr(matrix[:, i], returns).statistic) for i in range(matrix.shape[1])]
    return time.perf_counter() - started, int(np.argmax(scores))


def sqlite_compute(pg_url: str, repeat: int, pg_best: float) -> None:
    """Copy the predictions into a temporary SQLite file and time compute there."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        engine = create_engine(f"sqlite:///{path}")
        try:
            upgrade_to_head(engine)
            names = ("prediction_id, symbol, timestamp, datetime, model_version, features_count, "
                     "actual_return_1h, features_array")  # fmt: skip
            with psycopg.connect(pg_url) as source:
                rows = source.execute(
                    "SELECT prediction_id::text, symbol, timestamp, "
                    "to_char(datetime AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), "
                    "model_version, features_count, actual_return_1h, features_array::text "
                    "FROM ml_predictions"
                ).fetchall()
            with sqlite3.connect(path) as target:
                target.executemany(
                    f"INSERT INTO ml_predictions ({names}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(uuid.UUID(r[0]).hex, *r[1:]) for r in rows],
                )
            timings = []
            for _ in range(repeat):
                started = time.perf_counter()
                result = compute_feature_importance(engine, days=30, horizon="1h", write=False)
                timings.append(time.perf_counter() - started)
            assert result.predictions == len(rows), result.predictions
            best = min(timings)
            print(
                f"feature-importance compute on SQLite:     {best:6.2f} s best "
                f"({best / pg_best:.2f}x PostgreSQL)"
            )
        finally:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=240)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--skip-naive", action="store_true", help="skip the slow naive baseline")
    parser.add_argument(
        "--sqlite", action="store_true", help="also time compute on a SQLite copy of the data"
    )
    parser.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="admin URL used to create and drop the throw-away database",
    )
    args = parser.parse_args()
    with throwaway_database(args.pg_admin_url, "mlpred_bench_fi") as bench_url:
        measure(bench_url, args)


def measure(bench_url: URL, args: argparse.Namespace) -> None:
    """Load the data into the throw-away database and print every figure."""
    plain_url = bench_url.set(drivername="postgresql").render_as_string(hide_password=False)
    engine = create_engine(bench_url)
    try:
        seconds = load(plain_url, args.rows, args.features, args.seed)
        with psycopg.connect(plain_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE ml_predictions")
        print(f"loaded {args.rows:,} predictions x {args.features} features in {seconds:.1f} s")

        floor = min(read_floor(plain_url) for _ in range(args.repeat))
        timings = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            result = compute_feature_importance(engine, days=30, horizon="1h")
            timings.append(time.perf_counter() - started)
        best_feature = result.ranked()[0]["feature_name"]
        assert result.predictions == args.rows, result.predictions
        assert best_feature == f"f{DRIVER}", best_feature
        best, median = min(timings), statistics.median(timings)
        print(f"read floor (features_array::text fetch):  {floor:6.2f} s")
        print(
            f"feature-importance compute:               {best:6.2f} s best, {median:.2f} s median "
            f"of {args.repeat}  ({best / floor:.2f}x the read floor; target <= {TARGET_S:g} s: "
            f"{'met' if best <= TARGET_S else 'MISSED'})"
        )
        print(f"  top feature {best_feature} (planted f{DRIVER}), {result.written} rows written")
        if not args.skip_naive:
            naive_s, naive_best = naive(plain_url)
            assert naive_best == DRIVER
            print(
                f"naive (json.loads + spearmanr/feature):   {naive_s:6.2f} s  "
                f"(compute is {naive_s / best:.1f}x faster)"
            )
        if args.sqlite:
            sqlite_compute(plain_url, args.repeat, best)
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
