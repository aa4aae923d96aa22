"""Benchmark of ``mlpred report`` over a large history: wall time and file size.

Run:  .venv/bin/python bench/bench_report.py [--rows 1000000] [--symbols 100] [--days 365]
                                              [--reps 3] [--keep] [--database NAME] [--pg-url postgresql://postgres@127.0.0.1/postgres]

One throw-away PostgreSQL database (single ``ml_predictions`` table, JIT off) receives the
seeded history of ``bench_scale.py`` by COPY (``--rows`` predictions over ``--days`` days of
15-minute slots, two model versions, outcomes filled except the last 12 h 15 min), then
``rebuild_rollups``. Measured in the same run, median of ``--reps`` after a warm-up:

- the baseline: ``analyze`` over the same window (the JSON a user would read instead);
- ``report_content`` (the figures; with and without the ``mlpred check`` section) and
  ``render_html`` (the charts and the page), for a 30-day window and for the whole history;
- the HTML size in bytes, SVG and PNG images.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bench_scale import Sizes, load_history, random_walk
from throwaway import admin_execute

from mlpred_cli.analysis.prediction_views import analyze
from mlpred_cli.outcomes.rollups import rebuild_rollups
from mlpred_cli.report.content import report_content
from mlpred_cli.report.html import render_html
from mlpred_cli.store.database import create_engine, normalize_url
from mlpred_cli.store.migrations import upgrade_to_head


def timed(action: Callable[[], Any], reps: int) -> tuple[float, Any]:
    """Median milliseconds of ``reps`` runs after a warm-up, and the last result."""
    result = action()
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        result = action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def measure(engine: Any, days: int, now: datetime, reps: int) -> None:
    since = now - timedelta(days=days)
    baseline, _ = timed(lambda: analyze(engine, since=since, until=now), reps)
    print(f"  window {days} days")
    print(f"    baseline analyze:                  {baseline:9.0f} ms   1.00x")
    figures, document = timed(
        lambda: report_content(engine, since=since, until=now, now=now, monitoring=False), reps
    )
    print(f"    report_content, no check:          {figures:9.0f} ms   {figures / baseline:.2f}x")
    full, document = timed(lambda: report_content(engine, since=since, until=now, now=now), reps)
    print(f"    report_content with check:         {full:9.0f} ms   {full / baseline:.2f}x")
    drawn, html = timed(lambda: render_html(document), reps)
    print(f"    render_html (svg):                 {drawn:9.0f} ms   {drawn / baseline:.2f}x")
    total = full + drawn
    print(f"    report in all:                     {total:9.0f} ms   {total / baseline:.2f}x")
    png = render_html({**document, "report": {**document["report"], "images": "png"}})
    print(
        f"    size: svg {len(html.encode()):,} B, png {len(png.encode()):,} B; "
        f"{document['overview']['predictions']:,} predictions, "
        f"{len(document['overview']['symbols'])} symbols"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    parser.add_argument(
        "--database", help="measure an existing database (one --keep left) instead of loading"
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("MLPRED_TEST_PG_URL", "postgresql://postgres@127.0.0.1/postgres"),
    )
    args = parser.parse_args()
    admin = normalize_url(args.pg_url)
    now = datetime.now(UTC)
    end = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    sizes = Sizes(args.rows, args.symbols, args.days, 0, end - timedelta(minutes=15))
    name = args.database or f"mlpred_bench_report_{uuid.uuid4().hex[:8]}"
    if args.database is None:
        admin_execute(admin, f'CREATE DATABASE "{name}"', f'ALTER DATABASE "{name}" SET jit = off')
    url = admin.set(database=name)
    engine = create_engine(url)
    try:
        if args.database is None:
            upgrade_to_head(engine)
            started = time.perf_counter()
            closes = random_walk(sizes, seed=args.seed)
            load_history([engine], sizes, closes, seed=args.seed + 1)
            load_s = time.perf_counter() - started
            rebuild = rebuild_rollups(engine)
            print(
                f"bench_report: {sizes.rows:,} predictions, {sizes.symbols} symbols, "
                f"{sizes.days} days, 2 model versions; loaded in {load_s:.0f} s, rollups "
                f"rebuilt in {rebuild.elapsed_s:.0f} s; machine: {os.cpu_count()} CPUs",
                flush=True,
            )
        else:
            print(f"bench_report: database {name} as it is", flush=True)
        for days in (30, args.days):
            measure(engine, days, end, args.reps)
    finally:
        engine.dispose()
        if args.keep or args.database:
            print(f"kept database {name}")
        else:
            admin_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
