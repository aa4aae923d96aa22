"""Read-only engines for the dashboard: the database refuses writes made through them.

PostgreSQL sessions start with ``default_transaction_read_only=on`` and a
``statement_timeout``, so a slow query cannot pile up behind a page; SQLite files are opened
``mode=ro`` (with ``query_only`` as a second lock), so nothing is created, migrated or
written. The schema must already be at head: a read-only engine never migrates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine

from mlpred_cli.errors import ConfigError
from mlpred_cli.store.database import PG_CONNECT_TIMEOUT_S, SQLITE_BUSY_TIMEOUT_S
from mlpred_cli.store.driver_errors import database_errors
from mlpred_cli.store.migrations import require_schema
from mlpred_cli.store.source import DatabaseSource, database_url


def _sqlite_read_only_url(url: URL) -> URL:
    database = url.database or ""
    if database in ("", ":memory:") or "uri" in url.query:
        raise ConfigError("a read-only SQLite database must be a plain file path")
    path = Path(database).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"SQLite database {path} does not exist; run `mlpred init-db` first")
    return sa.make_url(f"sqlite+pysqlite:///file:{quote(str(path))}?mode=ro&uri=true")


def _install_sqlite_read_only_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # one snapshot per transaction: every read of a poll sees the same database state
        conn.exec_driver_sql("BEGIN DEFERRED")


def create_read_only_engine(database: DatabaseSource, *, statement_timeout_ms: int) -> Engine:
    """A new engine on ``database`` through which every write fails, checked to be at the
    current schema (``SchemaNotReady`` otherwise). The caller disposes it."""
    if statement_timeout_ms <= 0:
        raise ConfigError("statement_timeout_ms must be positive")
    url = database_url(database)
    if url.drivername.startswith("sqlite"):
        engine = sa.create_engine(
            _sqlite_read_only_url(url), connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}
        )
        _install_sqlite_read_only_hooks(engine)
    else:
        # the URL's own libpq options (a search_path, say) first; ours last, so they win
        given = url.query.get("options")
        own = " ".join(given) if isinstance(given, tuple) else (given or "")
        url = url.difference_update_query(["options"])
        options = (
            f"{own} -c TimeZone=UTC -c default_transaction_read_only=on "
            f"-c statement_timeout={int(statement_timeout_ms)}"
        ).strip()
        engine = sa.create_engine(
            url,
            connect_args={
                "connect_timeout": PG_CONNECT_TIMEOUT_S,
                "application_name": "mlpred-serve",
                "options": options,
            },
            pool_pre_ping=True,
        )
    try:
        with database_errors(engine.url):
            require_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine
