"""Benchmark of ``import-candles``: rows/s and peak RSS, streamed, at 1M and 10M rows.

Run:  .venv/bin/python bench/bench_import_candles.py [--rows 1000000 --rows 10000000]
          [--formats csv,parquet] [--backends sqlite,postgresql] [--baseline DIR]
          [--pg-url postgresql://postgres@127.0.0.1:5432/postgres] [--tmp DIR]

Files: 10 symbols of 1-minute candles, ending 2026-01-01; CSV with ISO text times (the
slower parse), Parquet with datetime64 times in row groups of 1,048,576 rows (pyarrow's
default). They are written chunk by chunk into a temporary directory (10M rows: ~700 MB
CSV) and removed at the end. Each import runs in a fresh subprocess into a fresh database
(a SQLite file; a throw-away PostgreSQL database created, migrated and dropped; admin URL
``--pg-url``, else MLPRED_TEST_PG_URL), so the peak RSS printed (the child's VmHWM) is the
import's own, Python and pandas included. ``--baseline DIR`` runs the same imports with the
code in DIR (e.g. ``git worktree add /tmp/base HEAD~1``) for comparison. Target: <= 300 MB
peak RSS at 1M and 10M rows, throughput no worse than the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from throwaway import throwaway_database

SYMBOLS = 10
END = pd.Timestamp("2026-01-01", tz="UTC")
WRITE_ROWS = 500_000  # rows generated and written at a time
ROW_GROUP_ROWS = 1_048_576

_CHILD = """
import json, sys, time
from mlpred_cli.outcomes.candle_files import import_candles
url, path = sys.argv[1], sys.argv[2]
started = time.perf_counter()
report = import_candles(url, path, interval="1m")
elapsed = time.perf_counter() - started
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status")
               if line.startswith("VmHWM:"))
print(json.dumps({"rows": report.total_rows, "inserted": report.inserted,
                  "seconds": elapsed, "peak_mb": peak_kb / 1024}))
"""


def _chunks(rows: int) -> pd.DataFrame:
    """The candles, WRITE_ROWS at a time: symbol by symbol, minute by minute."""
    per_symbol = rows // SYMBOLS
    start = END - pd.Timedelta(minutes=per_symbol)
    rng = np.random.default_rng(7)
    for number in range(SYMBOLS):
        for offset in range(0, per_symbol, WRITE_ROWS):
            size = min(WRITE_ROWS, per_symbol - offset)
            times = start + pd.to_timedelta(np.arange(offset, offset + size), unit="min")
            close = 100 + np.cumsum(rng.normal(0, 0.1, size)) + number
            close = np.abs(close) + 1
            yield pd.DataFrame(
                {
                    "symbol": f"SYM{number:02d}USDT",
                    "datetime": times,
                    "open": close,
                    "high": close * 1.001,
                    "low": close * 0.999,
                    "close": close,
                    "volume": rng.uniform(1, 100, size).round(3),
                }
            )


def write_csv(path: Path, rows: int) -> None:
    header = True
    for frame in _chunks(rows):
        frame = frame.assign(datetime=frame["datetime"].dt.strftime("%Y-%m-%d %H:%M:%S"))
        frame.to_csv(path, mode="w" if header else "a", header=header, index=False)
        header = False


def write_parquet(path: Path, rows: int) -> None:
    writer: pq.ParquetWriter | None = None
    pending: list[pa.Table] = []
    pending_rows = 0
    for frame in _chunks(rows):
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pending.append(table)
        pending_rows += len(frame)
        if pending_rows >= ROW_GROUP_ROWS:
            whole = pa.concat_tables(pending)
            if writer is None:
                writer = pq.ParquetWriter(path, whole.schema)
            writer.write_table(whole, row_group_size=ROW_GROUP_ROWS)
            pending, pending_rows = [], 0
    if pending:
        whole = pa.concat_tables(pending)
        if writer is None:
            writer = pq.ParquetWriter(path, whole.schema)
        writer.write_table(whole, row_group_size=ROW_GROUP_ROWS)
    if writer is not None:
        writer.close()


def _run(code_dir: Path, url: str, path: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(code_dir)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, url, str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=code_dir,
    )
    if done.returncode != 0:
        raise SystemExit(f"import failed ({code_dir}): {done.stderr.strip().splitlines()[-1:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _import_once(code_dir: Path, backend: str, path: Path, tmp: Path, pg_url: str) -> dict:
    if backend == "sqlite":
        from mlpred_cli.store.source import init_database

        db = tmp / f"bench_{uuid.uuid4().hex[:8]}.db"
        init_database(db)
        try:
            return _run(code_dir, f"sqlite:///{db}", path)
        finally:
            db.unlink(missing_ok=True)
    with throwaway_database(pg_url, prefix="mlpred_bench_candles") as url:
        return _run(code_dir, url.render_as_string(hide_password=False), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append")
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--baseline", type=Path, help="directory of the code to compare with")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "MLPRED_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--tmp", type=Path, default=None)
    args = parser.parse_args()
    ours = Path(__file__).resolve().parent.parent
    codes = [("streamed", ours)] + ([("baseline", args.baseline)] if args.baseline else [])
    print(f"{'rows':>10} {'format':<8} {'backend':<10} {'code':<9} {'s':>8} {'rows/s':>9} "
          f"{'peak MB':>8}")  # fmt: skip
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="bench_candles_") as name:
        tmp = Path(name)
        for rows in args.rows or [1_000_000]:
            for file_format in args.formats.split(","):
                path = tmp / f"candles_{rows}.{file_format}"
                (write_csv if file_format == "csv" else write_parquet)(path, rows)
                for backend in args.backends.split(","):
                    for label, code_dir in codes:
                        result = _import_once(code_dir, backend, path, tmp, args.pg_url)
                        print(
                            f"{rows:>10} {file_format:<8} {backend:<10} {label:<9} "
                            f"{result['seconds']:>8.1f} {rows / result['seconds']:>9.0f} "
                            f"{result['peak_mb']:>8.0f}",
                            flush=True,
                        )
                path.unlink()


if __name__ == "__main__":
    main()
