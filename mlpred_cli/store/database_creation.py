"""Whether the database a URL names exists, and creating it on PostgreSQL (``init-db --create``).

A PostgreSQL server refuses a connection to a database that does not exist before any
statement runs, so psycopg's error carries no SQLSTATE (3D000 would say so), only the
server's text. A refusal that quotes the database name is therefore confirmed through the
server's maintenance database (``postgres``, else ``template1``) with the same credentials;
an English server's ``database "x" does not exist`` is trusted when no maintenance database
answers. Any other failure is translated as every connection failure is
(``driver_errors``).

SQLite needs nothing here: the file is created on first connect, and ``normalize_url``
already refuses a file whose directory does not exist.
"""

from __future__ import annotations

import shlex

import sqlalchemy as sa
from sqlalchemy.engine import URL

from mlpred_cli.errors import ConfigError, DatabaseError
from mlpred_cli.store.database import (
    PG_CONNECT_TIMEOUT_S,
    create_engine,
    mask_url,
    normalize_url,
)
from mlpred_cli.store.driver_errors import database_errors, describe_error

#: Databases every PostgreSQL server has, tried in this order to reach the server itself.
MAINTENANCE_DATABASES = ("postgres", "template1")
_DEFAULT_HOST = "localhost"
_DEFAULT_PORT = 5432
_INSUFFICIENT_PRIVILEGE = "42501"
_DUPLICATE_DATABASE = "42P04"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _server(url: URL) -> str:
    return f"{url.host or _DEFAULT_HOST}:{url.port or _DEFAULT_PORT}"


def _createdb_command(url: URL) -> str:
    parts = ["createdb"]
    if url.host:
        parts += ["-h", url.host]
    if url.port:
        parts += ["-p", str(url.port)]
    if url.username:
        parts += ["-U", url.username]
    parts.append(url.database or "")
    return shlex.join(parts)


def missing_database_message(url: URL) -> str:
    """The one line saying the database does not exist and the two ways to create it
    (password masked)."""
    shown = mask_url(url.set(drivername="postgresql"))
    return (
        f"database {_quoted(url.database or '')} does not exist on {_server(url)}: create it "
        f"with 'mlpred --db {shown} init-db --create' or '{_createdb_command(url)}'"
    )


def _maintenance_engine(url: URL) -> sa.Engine | None:
    """An autocommit engine on the first maintenance database that accepts a connection."""
    for name in MAINTENANCE_DATABASES:
        if name == url.database:
            continue
        engine = sa.create_engine(
            url.set(database=name),
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S, "application_name": "mlpred"},
        )
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except sa.exc.DBAPIError:
            engine.dispose()
            continue
        return engine
    return None


def _listed(engine: sa.Engine, name: str) -> bool:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).first()
    return row is not None


def _is_missing(url: URL, error: sa.exc.DBAPIError) -> bool:
    """True when ``error`` (a failed connection to ``url``) means its database is missing."""
    name = url.database or ""
    text = describe_error(error)
    if f'"{name}"' not in text:  # the server quotes the name as is, in any language
        return False
    engine = _maintenance_engine(url)
    if engine is None:
        return f'database "{name}" does not exist' in text
    try:
        return not _listed(engine, name)
    finally:
        engine.dispose()


def database_exists(url: URL | str) -> bool:
    """True when the database ``url`` names accepts a connection; False when the server
    says it does not exist (always True for SQLite). Raises ``DatabaseUnavailable`` (or
    ``ConfigError`` for a bad URL) for any other failure."""
    parsed = url if isinstance(url, URL) else normalize_url(url)
    if parsed.drivername.startswith("sqlite"):
        return True
    engine = create_engine(parsed)
    try:
        with database_errors(parsed):
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
            except sa.exc.OperationalError as error:
                if _is_missing(parsed, error):
                    return False
                raise
    finally:
        engine.dispose()
    return True


def _create(url: URL) -> None:
    name = url.database or ""
    engine = _maintenance_engine(url)
    if engine is None:
        raise ConfigError(
            f"cannot create database {_quoted(name)} on {_server(url)}: neither of the "
            f"maintenance databases ({', '.join(MAINTENANCE_DATABASES)}) accepts a connection "
            f"as {url.username or 'the default user'}"
        )
    try:
        with database_errors(url), engine.connect() as conn:
            try:
                conn.exec_driver_sql(f"CREATE DATABASE {_quoted(name)}")
            except sa.exc.DBAPIError as error:
                sqlstate = getattr(error.orig, "sqlstate", None)
                if sqlstate == _DUPLICATE_DATABASE:
                    return  # created meanwhile by someone else: as good
                if sqlstate == _INSUFFICIENT_PRIVILEGE:
                    role = url.username or "the default user"
                    raise DatabaseError(
                        f"cannot create database {_quoted(name)} on {_server(url)}: role "
                        f"{role} lacks the CREATEDB privilege (an administrator can run "
                        f"ALTER ROLE {role} CREATEDB, or create the database)",
                        describe_error(error),
                    ) from None
                raise
    finally:
        engine.dispose()


def ensure_database(url: URL | str, *, create: bool = False) -> bool:
    """Check that the database ``url`` names exists; with ``create``, create a missing
    PostgreSQL database (``CREATE DATABASE`` from the maintenance database, same
    credentials). Returns True when this call created it.

    Raises ``ConfigError`` (exit 2) naming how to create a missing database when
    ``create`` is false, ``DatabaseError`` when the role may not create databases, and
    ``DatabaseUnavailable`` when the server cannot be reached.
    """
    parsed = url if isinstance(url, URL) else normalize_url(url)
    if database_exists(parsed):
        return False
    if not create:
        raise ConfigError(missing_database_message(parsed))
    _create(parsed)
    return True
