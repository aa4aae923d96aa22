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
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from history_database import add_history_arguments, history_database, history_end

from mlpred_cli.analysis.prediction_views import analyze
from mlpred_cli.report.content import report_content
from mlpred_cli.report.html import render_html


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
    add_history_arguments(parser)
    args = parser.parse_args()
    end = history_end()  # the loaded history ends a slot before it
    with history_database(args, "bench_report") as (engine, _):
        for days in (30, args.days):
            measure(engine, days, end, args.reps)


if __name__ == "__main__":
    main()
