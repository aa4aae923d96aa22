"""Benchmark of ``backfill-actuals``: all four horizons versus a one-horizon UPDATE baseline.

Run:  .venv/bin/python bench/bench_backfill.py [--rows 1000000] [--sqlite-rows 100000]
                                               [--pg-url postgresql://postgres@127.0.0.1/postgres]

PostgreSQL: ``--rows`` predictions across 10 symbols (every 15 minutes, all horizons due) and
matching 15-minute candles are loaded once (candles generated with numpy, loaded with COPY;
predictions derived server-side), then the database is cloned (CREATE DATABASE .. TEMPLATE,
an identical physical copy). On the clone the baseline runs: one hand-written
``UPDATE .. FROM`` join filling a single horizon (15m) for every row. On the original, the
full four-horizon ``backfill_actuals`` runs end to end. Reported: seconds, the ratio
ours/baseline (target <= 1.5), WAL bytes (pg_current_wal_lsn difference; cluster-wide, so
other activity on the server inflates it; for the one-statement baseline also the exact figure
from EXPLAIN (ANALYZE, WAL)) and HOT updates (pg_stat_user_tables).

SQLite: ``--sqlite-rows`` predictions, the same comparison (target: <= 20 s for 100,000).

Then, on both, what cron pays once the history is filled: a rerun with nothing new, and
``--ticks`` cron ticks (each inserts one new prediction per symbol, then runs a plain
backfill; median seconds reported), and a journal replay: one prediction per symbol for each
of the 100 quarter-hours from 30 days (at most half the history) before the newest one,
inserted late, then one plain run (how many it filled, how many it left ``outside_window``).

It creates and drops its own PostgreSQL databases and SQLite file.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from throwaway import admin_execute

from mlpred_cli.outcomes.backfill import BackfillReport, backfill_actuals
from mlpred_cli.store.database import create_engine, is_sqlite, normalize_url
from mlpred_cli.store.migrations import upgrade_to_head
from mlpred_cli.store.tables import candles_table, predictions_table

SYMBOLS = 10
START = datetime(2024, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)
CANDLES_AHEAD = 48  # 12 h of 15-minute candles after the last prediction

_RETURN_15M = "(c.close / p.close_price - 1)"
_DIRECTION_15M = (
    f"CASE WHEN {_RETURN_15M} > 0.0015 THEN 'LONG' "
    f"WHEN {_RETURN_15M} < -0.0015 THEN 'SHORT' ELSE 'NEUTRAL' END"
)
_BASELINE_SET = f"""
UPDATE ml_predictions AS p SET
    actual_return_15m = {_RETURN_15M},
    actual_direction_15m = {_DIRECTION_15M},
    accuracy_15m = p.direction_15m = {_DIRECTION_15M},
    return_error_15m = p.predicted_return_15m - {_RETURN_15M},
    updated_at = CURRENT_TIMESTAMP
"""

#: The baseline: one hand-written UPDATE .. FROM join filling one horizon (15m) of every row.
PG_BASELINE_SQL = (
    _BASELINE_SET
    + """FROM market_candles AS c
WHERE c.symbol = p.symbol AND c.interval_minutes = 15
  AND c.datetime = p.datetime + interval '15 minutes'"""
)

#: SQLite plans "UPDATE .. FROM market_candles" with the candles as the outer loop (quadratic),
#: so its idiomatic form joins in a derived table keyed by rowid.
SQLITE_BASELINE_SQL = (
    _BASELINE_SET
    + """FROM (SELECT q.id, c.close FROM ml_predictions AS q JOIN market_candles AS c
      ON c.symbol = q.symbol AND c.interval_minutes = 15
      AND c.datetime = strftime('%Y-%m-%d %H:%M:%S', q.datetime, '+900 seconds')
                       || substr(q.datetime, 20)) AS c
WHERE p.id = c.id"""
)


def candle_frame(rows: int, seed: int = 7) -> pd.DataFrame:
    """Random-walk 15-minute candles for SYMBOLS symbols covering ``rows`` predictions."""
    rng = np.random.default_rng(seed)
    per_symbol = rows // SYMBOLS + CANDLES_AHEAD + 1
    frames = []
    times = pd.date_range(START, periods=per_symbol, freq="15min")
    for index in range(SYMBOLS):
        steps = rng.normal(0, 0.004, per_symbol)
        close = 100.0 * (index + 1) * np.exp(np.cumsum(steps))
        frames.append(
            pd.DataFrame(
                {
                    "symbol": f"SYM{index:02d}USDT",
                    "interval_minutes": 15,
                    "datetime": times,
                    "open": close,
                    "high": close * 1.002,
                    "low": close * 0.998,
                    "close": close,
                    "volume": rng.uniform(1, 100, per_symbol),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


PREDICTIONS_FROM_CANDLES = """
INSERT INTO ml_predictions (
    prediction_id, symbol, timestamp, datetime, features_count, features_hash,
    lookback_periods, close_price, volume, rsi, macd, bb_position, atr_pct, volume_ratio,
    trend_strength, features_mean, features_std, features_min, features_max, nan_count,
    inf_count, is_duplicate,
    predicted_return_15m, predicted_return_1h, predicted_return_4h, predicted_return_12h,
    direction_15m, direction_1h, direction_4h, direction_12h,
    direction_15m_confidence, direction_1h_confidence, direction_4h_confidence,
    direction_12h_confidence, risk_score, signal_type, signal_confidence, signal_timeframe,
    model_version, inference_time_ms)
SELECT gen_random_uuid(), symbol, (extract(epoch FROM datetime) * 1000)::bigint, datetime,
    240, (random() * 1e15)::bigint, 1, close, volume, random() * 100, random() - 0.5, random(),
    random() * 0.02, random() * 2, random() - 0.5, random() - 0.5, 1 + random(), -3, 3, 0, 0,
    false,
    (random() - 0.5) / 100, (random() - 0.5) / 50, (random() - 0.5) / 20, (random() - 0.5) / 10,
    (ARRAY['LONG','SHORT','NEUTRAL'])[1 + floor(random() * 3)::int],
    (ARRAY['LONG','SHORT','NEUTRAL'])[1 + floor(random() * 3)::int],
    (ARRAY['LONG','SHORT','NEUTRAL'])[1 + floor(random() * 3)::int],
    (ARRAY['LONG','SHORT','NEUTRAL'])[1 + floor(random() * 3)::int],
    0.34 + random() * 0.6, 0.34 + random() * 0.6, 0.34 + random() * 0.6, 0.34 + random() * 0.6,
    random(), (ARRAY['LONG','SHORT','NEUTRAL'])[1 + floor(random() * 3)::int], random(), '1h',
    'bench-v1', 5 + random() * 5
FROM market_candles
WHERE datetime < :last_prediction
ORDER BY datetime, symbol
"""


def load_postgres(engine: Engine, rows: int) -> None:
    candles = candle_frame(rows)
    buffer = io.StringIO()
    candles.to_csv(buffer, index=False, header=False, date_format="%Y-%m-%d %H:%M:%S+00")
    columns = ", ".join(candles.columns)
    last_prediction = START + STEP * (rows // SYMBOLS)
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY market_candles ({columns}) FROM STDIN (FORMAT csv)") as copy,
        ):
            copy.write(buffer.getvalue())
        conn.execute(sa.text(PREDICTIONS_FROM_CANDLES), {"last_prediction": last_prediction})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE ml_predictions")
        conn.exec_driver_sql("VACUUM ANALYZE market_candles")
        conn.exec_driver_sql("CHECKPOINT")


def wal_lsn(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").scalar_one())


def update_stats(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
    time.sleep(0.6)
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE relname = 'ml_predictions'"
        ).one()
    return int(row[0]), int(row[1])


def table_size(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(
            conn.exec_driver_sql(
                "SELECT pg_size_pretty(pg_total_relation_size('ml_predictions'))"
            ).scalar_one()
        )


def timed_baseline(engine: Engine) -> tuple[float, int, int | None]:
    """Run the baseline; returns (seconds, rows filled, WAL bytes of the statement or None).

    On PostgreSQL the statement runs under EXPLAIN (ANALYZE, WAL, TIMING OFF), which reports
    the WAL it alone generated (the LSN difference also counts other sessions' activity).
    """
    sqlite = is_sqlite(engine)
    sql = SQLITE_BASELINE_SQL if sqlite else PG_BASELINE_SQL
    wal_bytes: int | None = None
    started = time.perf_counter()
    with engine.begin() as conn:
        if sqlite:
            conn.exec_driver_sql(sql)
        else:
            explain = "EXPLAIN (ANALYZE, WAL, TIMING OFF, FORMAT JSON) "
            plan = conn.exec_driver_sql(explain + sql).scalar_one()
            wal_bytes = int(plan[0]["Plan"]["WAL Bytes"])
    elapsed = time.perf_counter() - started
    with engine.connect() as conn:
        filled = conn.exec_driver_sql(
            "SELECT count(*) FROM ml_predictions WHERE actual_return_15m IS NOT NULL"
        ).scalar_one()
    return elapsed, int(filled), wal_bytes


def late_predictions(moments: list[datetime]) -> list[dict[str, object]]:
    """One prediction per symbol at each of ``moments`` (inserted after the history)."""
    return [
        {
            "prediction_id": uuid.uuid4(),
            "symbol": f"SYM{index:02d}USDT",
            "timestamp": int(moment.timestamp() * 1000),
            "datetime": moment,
            "close_price": 100.0 * (index + 1),
            "features_count": 240,
            "signal_type": "LONG",
            "signal_confidence": 0.5,
            "model_version": "bench-v1",
            **{f"predicted_return_{h}": 0.001 for h in ("15m", "1h", "4h", "12h")},
            **{f"direction_{h}": "LONG" for h in ("15m", "1h", "4h", "12h")},
        }
        for moment in moments
        for index in range(SYMBOLS)
    ]


def cron_costs(engine: Engine, rows: int, ticks: int) -> None:
    """Print what plain runs cost once the history is filled: reruns with nothing new, cron
    ticks of one new prediction per symbol, and a journal replay of old predictions."""

    def timed(label: str, runs: list[BackfillReport]) -> None:
        seconds = sorted(run.elapsed_s for run in runs)
        print(
            f"  {label}: median {seconds[len(seconds) // 2]:.3f} s "
            f"(min {seconds[0]:.3f}, max {seconds[-1]:.3f}; {len(runs)} runs), "
            f"{sum(run.rows_updated for run in runs):,} rows written"
        )

    timed("rerun with nothing new", [backfill_actuals(engine) for _ in range(3)])
    newest = START + STEP * (rows // SYMBOLS - 1)
    tick_runs = []
    for tick in range(1, ticks + 1):
        with engine.begin() as conn:
            conn.execute(predictions_table.insert(), late_predictions([newest + STEP * tick]))
        tick_runs.append(backfill_actuals(engine))
    timed(f"cron tick (+{SYMBOLS} predictions)", tick_runs)
    age = min(timedelta(days=30), STEP * (rows // SYMBOLS) / 2)  # candles exist there
    replayed = [newest - age + STEP * i for i in range(100)]
    with engine.begin() as conn:
        conn.execute(predictions_table.insert(), late_predictions(replayed))
    replay = backfill_actuals(engine)
    print(
        f"  journal replay of {len(replayed) * SYMBOLS:,} predictions {age.days} days old: "
        f"{replay.elapsed_s:.3f} s, {replay.rows_updated:,} filled, "
        f"outside_window {replay.outside_window:,}"
    )


def bench_postgres(admin_url: sa.URL, rows: int, ticks: int) -> None:
    tag = uuid.uuid4().hex[:8]
    ours_db, base_db = f"mlpred_bench_{tag}", f"mlpred_bench_{tag}_baseline"
    admin_execute(admin_url, f'CREATE DATABASE "{ours_db}"')
    ours = create_engine(admin_url.set(database=ours_db))
    base: Engine | None = None
    try:
        upgrade_to_head(ours)
        started = time.perf_counter()
        load_postgres(ours, rows)
        print(
            f"PostgreSQL: loaded {rows:,} predictions + candles in "
            f"{time.perf_counter() - started:.1f} s; ml_predictions {table_size(ours)}"
        )
        ours.dispose()
        admin_execute(admin_url, f'CREATE DATABASE "{base_db}" TEMPLATE "{ours_db}"')
        ours = create_engine(admin_url.set(database=ours_db))
        base = create_engine(admin_url.set(database=base_db))

        lsn = wal_lsn(base)
        base_s, base_rows, base_statement_wal = timed_baseline(base)
        base_wal = wal_lsn(base) - lsn
        base_upd, base_hot = update_stats(base)

        lsn = wal_lsn(ours)
        report = backfill_actuals(ours)
        ours_wal = wal_lsn(ours) - lsn
        ours_upd, ours_hot = update_stats(ours)
        ours_s = report.elapsed_s

        print(
            f"  baseline  1 horizon, one UPDATE..FROM: {base_s:7.1f} s  {base_rows:,} rows  "
            f"WAL {base_wal / 2**20:,.0f} MiB (statement alone: "
            f"{(base_statement_wal or 0) / 2**20:,.0f} MiB)  HOT {base_hot:,}/{base_upd:,}"
        )
        print(
            f"  ours      4 horizons, backfill_actuals: {ours_s:7.1f} s  "
            f"{report.rows_updated:,} rows  WAL {ours_wal / 2**20:,.0f} MiB  "
            f"HOT {ours_hot:,}/{ours_upd:,}  ({report.chunks} chunks)"
        )
        print(
            "  per horizon: "
            + "; ".join(
                f"{c.horizon} filled={c.filled:,} missing={c.missing:,}" for c in report.horizons
            )
        )
        print(
            f"  ratio ours/baseline: time {ours_s / base_s:.2f} (target <= 1.5), "
            f"WAL {ours_wal / max(base_wal, 1):.2f}"
        )
        cron_costs(ours, rows, ticks)
    finally:
        ours.dispose()
        if base is not None:
            base.dispose()
        admin_execute(
            admin_url,
            f'DROP DATABASE IF EXISTS "{ours_db}" WITH (FORCE)',
            f'DROP DATABASE IF EXISTS "{base_db}" WITH (FORCE)',
        )


def load_sqlite(engine: Engine, rows: int) -> None:
    candles = candle_frame(rows)
    records = candles.to_dict("records")
    for record in records:
        record["datetime"] = record["datetime"].to_pydatetime()
    rng = np.random.default_rng(3)
    predictions = []
    for record in records:
        if record["datetime"] >= START + STEP * (rows // SYMBOLS):
            continue
        direction = ("LONG", "SHORT", "NEUTRAL")[int(rng.integers(3))]
        predictions.append(
            {
                "prediction_id": uuid.uuid4(),
                "symbol": record["symbol"],
                "timestamp": int(record["datetime"].timestamp() * 1000),
                "datetime": record["datetime"],
                "close_price": record["close"],
                "features_count": 240,
                "signal_type": direction,
                "signal_confidence": 0.5,
                "model_version": "bench-v1",
                "volume": record["volume"],
                **{f"predicted_return_{h}": 0.001 for h in ("15m", "1h", "4h", "12h")},
                **{f"direction_{h}": direction for h in ("15m", "1h", "4h", "12h")},
                **{f"direction_{h}_confidence": 0.5 for h in ("15m", "1h", "4h", "12h")},
            }
        )
    predictions.sort(key=lambda row: (row["datetime"], row["symbol"]))
    with engine.begin() as conn:
        conn.execute(candles_table.insert(), records)
        conn.execute(predictions_table.insert(), predictions)


def bench_sqlite(rows: int, ticks: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        ours_path = Path(directory) / "ours.db"
        ours = create_engine(f"sqlite:///{ours_path}")
        upgrade_to_head(ours)
        started = time.perf_counter()
        load_sqlite(ours, rows)
        with ours.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        ours.dispose()
        print(
            f"SQLite: loaded {rows:,} predictions + candles in "
            f"{time.perf_counter() - started:.1f} s"
        )
        base_path = Path(directory) / "baseline.db"
        base_path.write_bytes(ours_path.read_bytes())
        base = create_engine(f"sqlite:///{base_path}")
        ours = create_engine(f"sqlite:///{ours_path}")
        base_s, base_rows, _ = timed_baseline(base)
        report = backfill_actuals(ours)
        wal = Path(f"{ours_path}-wal")
        wal_size = wal.stat().st_size if wal.exists() else 0
        print(f"  baseline  1 horizon, one UPDATE..FROM: {base_s:6.1f} s  {base_rows:,} rows")
        print(
            f"  ours      4 horizons, backfill_actuals: {report.elapsed_s:6.1f} s  "
            f"{report.rows_updated:,} rows  (target <= 20 s; WAL file {wal_size / 2**20:.0f} MiB)"
        )
        print(f"  ratio ours/baseline: time {report.elapsed_s / base_s:.2f}")
        cron_costs(ours, rows, ticks)
        base.dispose()
        ours.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="PostgreSQL predictions")
    parser.add_argument("--sqlite-rows", type=int, default=100_000, help="SQLite predictions")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "MLPRED_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="admin URL; the benchmark creates and drops its own databases",
    )
    parser.add_argument("--ticks", type=int, default=9, help="cron ticks measured")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    if not args.skip_postgres:
        bench_postgres(normalize_url(args.pg_url), args.rows, args.ticks)
    if not args.skip_sqlite:
        bench_sqlite(args.sqlite_rows, args.ticks)


if __name__ == "__main__":
    main()
