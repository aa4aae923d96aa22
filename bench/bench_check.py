"""Benchmark of ``mlpred check`` wall time over a large history.

Run:  .venv/bin/python bench/bench_check.py [--rows 1000000] [--symbols 100] [--days 365]
                                             [--reps 3] [--keep] [--database NAME] [--pg-url postgresql://postgres@127.0.0.1/postgres]

One throw-away PostgreSQL database (single ``ml_predictions`` table, JIT off) receives the
seeded history of ``bench_scale.py`` by COPY (``--rows`` predictions over ``--days`` days of
15-minute slots, two model versions, outcomes filled except the last 12 h 15 min), then
``rebuild_rollups``. Measured in the same run, median of ``--reps`` after a warm-up:

- the baseline: ``analyze(days=7)``, the report a user reads for the same window;
- ``run_check(days=7)`` with every check, and each check alone (``only=[name]``), without
  touching the alert state (``record=False``), as ms and as a ratio to the baseline;
- the CLI as cron runs it, ``mlpred --db URL check --format json`` in a fresh process
  (interpreter start-up included; this one records alerts), beside ``mlpred --version``.

The false-alarm rate and the detection delay of the performance alarm come from a
simulation without a database: ``bench/bench_check_alarms.py``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from history_database import add_history_arguments, history_database

from mlpred_cli.analysis.prediction_views import analyze
from mlpred_cli.monitor.check import run_check
from mlpred_cli.monitor.results import CHECK_NAMES


def median_ms(action: Callable[[], object], reps: int) -> float:
    action()  # warm-up: caches, connection pool
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def process_ms(args: list[str], reps: int) -> float:
    mlpred = str(Path(sys.executable).with_name("mlpred"))
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        subprocess.run([mlpred, *args], capture_output=True, check=False)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    add_history_arguments(parser)
    args = parser.parse_args()
    with history_database(args, "bench_check") as (engine, url):
        baseline = median_ms(lambda: analyze(engine, days=7), args.reps)
        print(f"  baseline analyze(days=7):            {baseline:9.0f} ms   1.00x")
        every = median_ms(lambda: run_check(engine, days=7, record=False), args.reps)
        print(f"  run_check(days=7), every check:      {every:9.0f} ms   {every / baseline:.2f}x")
        for check in CHECK_NAMES:
            alone = median_ms(
                lambda check=check: run_check(engine, only=[check], days=7, record=False),
                args.reps,
            )
            print(
                f"    only {check:<12}                   {alone:9.0f} ms   {alone / baseline:.2f}x"
            )
        report = run_check(engine, days=7, record=False)
        print(
            f"  verdict {report.status.name}: "
            + ", ".join(
                f"{sum(1 for r in report.results if r.severity.name == s)} {s.lower()}"
                for s in ("CRITICAL", "WARNING", "UNKNOWN", "OK")
            )
        )
        plain = url.render_as_string(hide_password=False)
        start_up = process_ms(["--version"], args.reps)
        cli = process_ms(["--db", plain, "check", "--format", "json"], args.reps)
        print(f"  process: mlpred --version            {start_up:9.0f} ms")
        print(
            f"  process: mlpred check --format json  {cli:9.0f} ms   "
            f"{cli / baseline:.2f}x the baseline"
        )


if __name__ == "__main__":
    main()
