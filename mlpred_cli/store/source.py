"""One way to say which database: ``DatabaseSource`` and the helpers that resolve it.

A ``DatabaseSource`` is a URL string (``postgresql://...``, ``sqlite:///...`` or a bare
file path), a ``pathlib.Path`` to a SQLite file, an SQLAlchemy ``Engine``, or ``None`` for
the configured default (``MLPRED_DATABASE_URL``, else the embedded SQLite file).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL, Engine

from mlpred_cli.config import resolve_database_url
from mlpred_cli.store.database import check_connection, create_engine, normalize_url
from mlpred_cli.store.migrations import require_schema, upgrade_to_head

DatabaseSource = str | Path | URL | Engine | None


def database_url(database: DatabaseSource) -> URL:
    """The normalized URL a source names, password included. An ``Engine``'s URL is
    normalized too, so an engine made elsewhere (``postgresql://`` meaning psycopg 2, say)
    names the same database as the URL text does (the spool directory is keyed by it)."""
    source = database.url if isinstance(database, Engine) else database
    if isinstance(source, URL):
        return normalize_url(source.render_as_string(hide_password=False))
    if isinstance(source, Path):
        return normalize_url(str(source))
    return normalize_url(resolve_database_url(source))


def engine_for(database: DatabaseSource) -> Engine:
    """An engine for a source: an ``Engine`` is returned as is, anything else gets a new one
    (the caller disposes it). Raises ``ConfigError`` for a malformed URL."""
    if isinstance(database, Engine):
        return database
    return create_engine(database_url(database))


@contextmanager
def opened(database: DatabaseSource, *, migrated: bool = True) -> Iterator[Engine]:
    """An engine for ``database``, checked to be migrated to head (``migrated=False``: only
    reachable). An engine passed in is used as is and not disposed; one made here is."""
    engine = engine_for(database)
    try:
        if migrated:
            require_schema(engine)
        else:
            check_connection(engine)
        yield engine
    finally:
        if engine is not database:
            engine.dispose()


def init_database(database: DatabaseSource = None) -> str:
    """Migrate the database to the current schema (safe to run again); returns the
    revision. What ``mlpred init-db`` runs."""
    engine = engine_for(database)
    try:
        return upgrade_to_head(engine)
    finally:
        if engine is not database:
            engine.dispose()
