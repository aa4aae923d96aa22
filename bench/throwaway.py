"""A throw-away PostgreSQL database for one benchmark run: created, migrated, always dropped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import URL

from mlpred_cli.store.database import create_engine, normalize_url, run_autocommit
from mlpred_cli.store.migrations import upgrade_to_head

admin_execute = run_autocommit


@contextmanager
def throwaway_database(admin_url: str | URL, prefix: str = "mlpred_bench") -> Iterator[URL]:
    """Yield the URL (psycopg 3 driver) of a fresh database migrated to head; drop it after."""
    admin = admin_url if isinstance(admin_url, URL) else normalize_url(admin_url)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin_execute(admin, f'CREATE DATABASE "{name}"')
    try:
        url = admin.set(database=name)
        engine = create_engine(url)
        upgrade_to_head(engine)
        engine.dispose()
        yield url
    finally:
        admin_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
