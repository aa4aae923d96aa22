"""Which database: URL checking and parsing, password masking, engine creation, dialect
differences, connection errors.

A URL is checked as text before SQLAlchemy parses it, because SQLAlchemy guesses where a
URL is ambiguous: ``postgresql://u:pa@ss@host/db`` becomes the password ``pa`` on the host
``ss@host``, and every message naming that host would then show part of the password. So
``normalize_url`` refuses, with a one-line ``ConfigError`` that never repeats any part of
the URL's credentials (nor anything that could be one, such as a port that is not a
number):

- a line break, tab or other control character anywhere;
- more than one ``@`` after the scheme of a server URL (``@`` in a user name, password or
  database name must be written ``%40``), a ``:`` in the password (``%3A``), and a ``%``
  that does not start a percent-escape (``%25``);
- a port that is not a whole number from 1 to 65535, a host with a space, an unclosed
  IPv6 bracket, a SQLite URL that names a host or credentials;
- query parameters the driver would reject when the engine is made (``timeout=abc``, an
  unknown libpq option) or silently ignore (a SQLite URI parameter without ``uri=true``).

A ``password`` query parameter is moved into the URL's password, so it is masked wherever
the URL is shown. SQLite database files that mlpred creates are private (mode 0600): the
file is created before SQLite opens it, and SQLite gives its ``-wal`` and ``-shm`` files
the mode of the database file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.conninfo import make_conninfo
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.util import asbool

from mlpred_cli.config import resolve_database_url
from mlpred_cli.errors import ConfigError
from mlpred_cli.store.driver_errors import database_errors, mask_passwords

_POSTGRES_DRIVERS = {"postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"}
_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}
_KNOWN_DRIVERS = _POSTGRES_DRIVERS | _SQLITE_DRIVERS
SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 5

#: Mode of a SQLite database file mlpred creates (its -wal and -shm files follow it).
SQLITE_FILE_MODE = 0o600

#: Execution option naming how a SQLite transaction begins ("DEFERRED", "IMMEDIATE", "EXCLUSIVE").
SQLITE_BEGIN_OPTION = "mlpred_sqlite_begin"

MALFORMED = "malformed database URL"

#: SQLAlchemy's own URL grammar (``sqlalchemy.engine.url._parse_url``), so that the raw
#: parts checked here are exactly the ones ``make_url`` will decode.
_URL_PARTS = re.compile(
    r"""
    (?P<name>[\w+]+)://
    (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?
    (?:(?:\[(?P<ipv6host>[^/?]+)\]|(?P<ipv4host>[^/:?]+))?(?::(?P<port>[^/?]*))?)?
    (?:/(?P<database>[^?]*))?
    (?:\?(?P<query>.*))?
    """,
    re.VERBOSE,
)
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
_NOT_A_PERCENT_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PORT = re.compile(r"[0-9]{1,5}")
_SCHEME_WITHOUT_SLASHES = re.compile(r"([A-Za-z][\w+.-]*):(?!//)")
#: Query parameters whose values are secrets (libpq's ``password`` is moved into the URL).
_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})
#: What the pysqlite dialect takes from the query string (``create_connect_args``).
_PYSQLITE_PARAMETERS = frozenset(
    {"uri", "timeout", "isolation_level", "detect_types", "check_same_thread", "cached_statements"}
)
_SECRET_QUERY_VALUE = re.compile(r"([?&](?:ssl)?password=)[^&]*", re.IGNORECASE)


def _malformed(problem: str) -> ConfigError:
    return ConfigError(f"{MALFORMED}: {problem}")


def _check_url_text(text: str) -> None:
    """Refuse URL text that SQLAlchemy would parse as something the user did not mean.

    ``text`` has a ``://``. Messages name the problem only: they repeat no part of ``text``.
    """
    match = _URL_PARTS.match(text)
    if match is None or match.end() != len(text):
        raise _malformed(
            "expected scheme://user:password@host:port/database, such as "
            "postgresql://user@localhost:5432/mlpred or sqlite:///path/to/file.db"
        )
    parts = match.groupdict()
    sqlite = parts["name"].lower() in _SQLITE_DRIVERS
    if sqlite and any(parts[key] is not None for key in ("username", "ipv4host", "ipv6host")):
        raise _malformed(
            "a SQLite URL names a file, not a server or user: write sqlite:///relative.db "
            "or sqlite:////absolute/path.db"
        )
    if sqlite and parts["port"] is not None:
        raise _malformed("a SQLite URL has no port: write sqlite:////absolute/path.db")
    if not sqlite and text.partition("://")[2].count("@") > 1:
        raise _malformed(
            "more than one '@': write an '@' that is part of the user name, password or "
            "database name as %40"
        )
    if ":" in (parts["password"] or ""):
        raise _malformed("the password has a ':': write it as %3A")
    labels = {"username": "user name", "password": "password"}
    labels["database"] = "file path" if sqlite else "database name"
    for key, label in labels.items():
        if _NOT_A_PERCENT_ESCAPE.search(parts[key] or ""):
            raise _malformed(
                f"the {label} has a '%' that does not start a percent-escape: write '%' as %25"
            )
    host = parts["ipv4host"] or ""
    if "[" in host or "]" in host:
        raise _malformed("an IPv6 host must be written in brackets: [::1]")
    if any(character.isspace() for character in host + (parts["ipv6host"] or "")):
        raise _malformed("the host name has a space")
    port = parts["port"]
    if port is not None and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
        raise _malformed("the port must be a whole number from 1 to 65535")


def _parse(text: str) -> URL:
    """``text`` (which has a ``://``) checked and parsed; raises ``ConfigError``."""
    _check_url_text(text)
    try:
        return make_url(text)
    except (ArgumentError, ValueError, TypeError):
        raise _malformed("SQLAlchemy cannot parse it") from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _scrub(message: str, url: URL) -> str:
    """``message`` with the URL's password (and secret query values) replaced by ``***``
    (one or two characters are left: replacing them everywhere would garble the message)."""
    secrets = [url.password] if url.password else []
    for key, value in url.query.items():
        if key.lower() in _SECRET_QUERY_KEYS:
            secrets.extend([value] if isinstance(value, str) else value)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 3:
            message = message.replace(secret, "***")
    return mask_passwords(message)


def _check_sqlite_parameters(url: URL) -> None:
    """Refuse query parameters the SQLite driver would ignore (with only a warning)."""
    uri = url.query.get("uri")
    if isinstance(uri, str) and asbool(uri):
        return  # the rest are SQLite URI parameters, which SQLite checks itself
    unknown = sorted(set(url.query) - _PYSQLITE_PARAMETERS)
    if unknown:
        raise ValueError(
            f"{unknown[0]!r} is not a parameter of the SQLite driver "
            "(a SQLite URI parameter also needs uri=true)"
        )


def _check_connect_arguments(url: URL) -> None:
    """Build the driver's connect arguments now, as ``create_engine`` will, so that a bad
    query parameter is a ``ConfigError`` here rather than a traceback there."""
    try:
        if url.drivername.startswith("sqlite"):
            _check_sqlite_parameters(url)
        _, params = url.get_dialect()().create_connect_args(url)
        if url.drivername.startswith("postgresql"):
            make_conninfo("", **{key: value for key, value in params.items() if value is not None})
    except (ArgumentError, ValueError, TypeError, psycopg.ProgrammingError) as error:
        reason = _scrub(_first_line(error), url)
        raise ConfigError(f"unusable database URL {mask_url(url)}: {reason}") from None


def _postgres_url(url: URL) -> URL:
    url = url.set(drivername="postgresql+psycopg")
    if "password" in url.query:
        password = url.query["password"]
        if not isinstance(password, str):
            raise _malformed("the password parameter is given more than once")
        if url.password is not None:
            raise _malformed("the password is given twice: before the '@' and as a parameter")
        url = url.difference_update_query(["password"]).set(password=password)
    if not url.database:
        raise ConfigError(f"database URL names no database: {mask_url(url)}")
    _check_connect_arguments(url)
    return url


def _sqlite_url(url: URL) -> URL:
    database = url.database or ""
    if database in ("", ":memory:"):
        raise ConfigError("in-memory SQLite is not supported: give a file path")
    if database.startswith("~"):
        database = str(Path(database).expanduser())
    parent = Path(database).resolve().parent
    if not parent.is_dir():
        raise ConfigError(f"directory of the SQLite file does not exist: {parent}")
    url = url.set(drivername="sqlite+pysqlite", database=database)
    _check_connect_arguments(url)
    return url


def normalize_url(raw: str) -> URL:
    """Parse a database URL, mapping PostgreSQL to psycopg 3 and bare paths to SQLite files.

    Raises ``ConfigError`` for a malformed, ambiguous or unsupported URL (see the module
    docstring); the message never contains any part of the password.
    """
    text = raw.strip()
    if not text:
        raise ConfigError("empty database URL")
    if _CONTROL_CHARACTER.search(text):
        raise _malformed("it has a line break, tab or other control character")
    if "://" not in text:
        scheme = _SCHEME_WITHOUT_SLASHES.match(text)
        if scheme and scheme.group(1).lower() in _KNOWN_DRIVERS:
            raise _malformed(f"write {scheme.group(1)}:// with two slashes")
        # A bare path names the file as is: no percent-escapes, no query string.
        return _sqlite_url(URL.create("sqlite", database=str(Path(text).expanduser().resolve())))
    url = _parse(text)
    driver = url.drivername.lower()
    if driver in _POSTGRES_DRIVERS:
        return _postgres_url(url)
    if driver in _SQLITE_DRIVERS:
        return _sqlite_url(url)
    raise ConfigError(
        f"unsupported database '{url.drivername}' in {mask_url(url)}: "
        "use postgresql:// or sqlite:///"
    )


def mask_url(url: URL | str) -> str:
    """Render a URL with its password (and any secret query parameter) replaced by ``***``."""
    if isinstance(url, str):
        return mask_text(url)
    rendered = url.render_as_string(hide_password=True)
    base, question, query = rendered.partition("?")
    return base + question + _SECRET_QUERY_VALUE.sub(r"\1***", "?" + query)[1:]


def mask_text(text: str) -> str:
    """Mask the password of a URL given as text; a URL too malformed to tell where its
    password ends is shown as its scheme only (``postgresql://***``). Other text without
    ``://`` names a file and is returned as is."""
    scheme, separator, _ = text.partition("://")
    if not separator:
        missing_slashes = _SCHEME_WITHOUT_SLASHES.match(text)
        if missing_slashes and missing_slashes.group(1).lower() in _KNOWN_DRIVERS:
            return f"{missing_slashes.group(1)}:***"
        return text
    try:
        return mask_url(_parse(text))
    except ConfigError:
        return f"{scheme}://***"


def is_sqlite(bind: Engine | Connection) -> bool:
    """True when the engine or connection talks to SQLite."""
    return bind.dialect.name == "sqlite"


def create_private_file(path: str | Path, mode: int = SQLITE_FILE_MODE) -> bool:
    """Create ``path`` empty with ``mode`` (the umask may narrow it) unless it exists.

    True when this call created it. An existing file, symbolic link included, is left
    alone, mode and all; an error creating it (a missing directory, no permission) is left
    for whoever opens the file next to report.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags, mode)
    except OSError:
        return False
    os.close(descriptor)
    return True


def _install_sqlite_hooks(engine: Engine) -> None:
    """A private database file, WAL, foreign keys, a busy timeout, and real BEGIN statements.

    The file is created (mode 0600) just before the first connection would create it, so
    that SQLite's own default (0644 less the umask) never applies; with ``uri=true`` the
    URL's own parameters decide how SQLite opens the file, and nothing is created here.
    pysqlite's own implicit transactions are switched off so that SQLAlchemy's
    ``begin()`` maps to a real ``BEGIN`` (``BEGIN IMMEDIATE`` where asked for).
    """
    database = engine.url.database or ""
    create_file = database not in ("", ":memory:") and "uri" not in engine.url.query

    @event.listens_for(engine, "do_connect")
    def _before_connect(_dialect: Any, _record: Any, cargs: Any, _cparams: Any) -> None:
        if create_file:
            # cargs[0] is the absolute path the dialect hands to sqlite3.connect.
            create_private_file(cargs[0] if cargs and isinstance(cargs[0], str) else database)

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
    """Create an engine for a URL (``None`` applies the configured precedence).

    A SQLite file that does not exist yet is created mode 0600 on first connect; an
    existing file keeps its mode.
    """
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
