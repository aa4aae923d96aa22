"""The large-history PostgreSQL database the check and report benchmarks measure: the
seeded ``bench_scale.py`` history loaded by COPY into a throw-away database (JIT off), its
rollups rebuilt; or an existing one a ``--keep`` run left."""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from bench_scale import Sizes, load_history, random_walk
from sqlalchemy.engine import URL, Engine
from throwaway import admin_execute

from mlpred_cli.outcomes.rollups import rebuild_rollups
from mlpred_cli.store.database import create_engine, normalize_url
from mlpred_cli.store.migrations import upgrade_to_head


def add_history_arguments(parser: argparse.ArgumentParser) -> None:
    """``--rows``, ``--symbols``, ``--days``, ``--reps``, ``--seed``, ``--keep``,
    ``--database`` and ``--pg-url``."""
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


def history_end() -> datetime:
    """The last 15-minute boundary before now: the history ends a slot before it."""
    now = datetime.now(UTC)
    return now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)


@contextmanager
def history_database(args: argparse.Namespace, label: str) -> Iterator[tuple[Engine, URL]]:
    """Yield an engine and the URL of the history (loaded now, or ``args.database``); drop
    the database afterwards unless ``--keep`` or ``--database``."""
    admin = normalize_url(args.pg_url)
    sizes = Sizes(args.rows, args.symbols, args.days, 0, history_end() - timedelta(minutes=15))
    name = args.database or f"mlpred_{label}_{uuid.uuid4().hex[:8]}"
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
                f"{label}: {sizes.rows:,} predictions, {sizes.symbols} symbols, "
                f"{sizes.days} days, 2 model versions; loaded in {load_s:.0f} s, rollups "
                f"rebuilt in {rebuild.elapsed_s:.0f} s; machine: {os.cpu_count()} CPUs",
                flush=True,
            )
        else:
            print(f"{label}: database {name} as it is", flush=True)
        yield engine, url
    finally:
        engine.dispose()
        if args.keep or args.database:
            print(f"kept database {name}")
        else:
            admin_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
