"""Which database: URL parsing, engine creation, dialect differences, connection errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError

from mlpred_cli.config import resolve_database_url
from mlpred_cli.errors import ConfigError
from mlpred_cli.store.driver_errors import database_errors

_POSTGRES_DRIVERS = {"postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"}
_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}
SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 5

#: Execution option naming how a SQLite transaction begins ("DEFERRED", "IMMEDIATE", "EXCLUSIVE").
SQLITE_BEGIN_OPTION = "mlpred_sqlite_begin"


def normalize_url(raw: str) -> URL:
    """Parse a database URL, mapping PostgreSQL to psycopg 3 and bare paths to SQLite files.

    Raises ``ConfigError`` for a malformed or unsupported URL.
    """
    text = raw.strip()
    if not text:
        raise ConfigError("empty database URL")
    if "://" not in text:
        text = f"sqlite:///{Path(text).expanduser().resolve()}"
    try:
        url = make_url(text)
    except ArgumentError:
        raise ConfigError(f"malformed database URL: {mask_text(text)}") from None
    driver = url.drivername
    if driver in _POSTGRES_DRIVERS:
        url = url.set(drivername="postgresql+psycopg")
        if not url.database:
            raise ConfigError(f"database URL names no database: {mask_url(url)}")
        return url
    if driver in _SQLITE_DRIVERS:
        database = url.database or ""
        if database in ("", ":memory:"):
            raise ConfigError("in-memory SQLite is not supported: give a file path")
        parent = Path(database).expanduser().resolve().parent
        if not parent.is_dir():
            raise ConfigError(f"directory of the SQLite file does not exist: {parent}")
        return url.set(drivername="sqlite+pysqlite")
    raise ConfigError(
        f"unsupported database '{driver}' in {mask_url(url)}: use postgresql:// or sqlite:///"
    )


def mask_url(url: URL | str) -> str:
    """Render a URL with its password replaced by ``***``."""
    if isinstance(url, str):
        return mask_text(url)
    return url.render_as_string(hide_password=True)


def mask_text(text: str) -> str:
    """Mask the password of a URL given as text, even a malformed one."""
    try:
        return make_url(text).render_as_string(hide_password=True)
    except ArgumentError:
        scheme, sep, rest = text.partition("://")
        if not sep or "@" not in rest:
            return text
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else text


def is_sqlite(bind: Engine | Connection) -> bool:
    """True when the engine or connection talks to SQLite."""
    return bind.dialect.name == "sqlite"


def _install_sqlite_hooks(engine: Engine) -> None:
    """WAL, foreign keys, a busy timeout, and real BEGIN statements for SQLite.

    pysqlite's own implicit transactions are switched off so that SQLAlchemy's
    ``begin()`` maps to a real ``BEGIN`` (``BEGIN IMMEDIATE`` where asked for).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def create_engine(url: str | URL | None = None, **kwargs: Any) -> Engine:
    """Create an engine for a URL (``None`` applies the configured precedence)."""
    parsed = url if isinstance(url, URL) else normalize_url(resolve_database_url(url))
    if parsed.drivername.startswith("sqlite"):
        engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, **kwargs)
        _install_sqlite_hooks(engine)
        return engine
    connect_args = {
        "connect_timeout": PG_CONNECT_TIMEOUT_S,
        "application_name": "mlpred",
        # Comparisons between timestamptz and a naive timestamp (an existing raw_market_data
        # table, say) convert through the session time zone: pin it to UTC.
        "options": "-c TimeZone=UTC",
    }
    return sa.create_engine(parsed, connect_args=connect_args, pool_pre_ping=True, **kwargs)


def run_autocommit(url: URL, *statements: str) -> None:
    """Run statements outside a transaction (CREATE / DROP DATABASE need that)."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with database_errors(url), engine.connect() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def check_connection(engine: Engine) -> None:
    """Open and close one connection, raising ``DatabaseUnavailable`` on failure."""
    with database_errors(engine.url), engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
