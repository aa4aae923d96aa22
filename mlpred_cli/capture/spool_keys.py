"""Which spool directory a database's rows wait in: one per database, whatever the URL's
spelling, plus the directories older versions keyed by the spelling itself.

A PostgreSQL URL names its target the way libpq resolves it: query parameters override the
URL's host, port, user and database (``?port=5433`` is another server), the environment's
``PGHOST``/``PGPORT``/``PGUSER`` and the login name fill in what is missing, loopback names
are one host. Parameters that only change how the connection is made (``sslmode``,
``connect_timeout``, ...) are left out of the key; every other parameter stays in it, so two
URLs share a directory only when they reach the same database.
"""

from __future__ import annotations

import getpass
import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from sqlalchemy.engine import URL

from mlpred_cli.config import default_data_dir

#: Host names that all mean this machine's loopback interface.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
POSTGRES_DEFAULT_PORT = 5432

#: libpq connection parameters that change how mlpred connects, never which database it
#: reaches: left out of the key. Every other parameter (``options``, ``hostaddr``,
#: ``service``, ``target_session_attrs``, ...) may change the target and stays in it.
NOT_THE_TARGET = frozenset({
    "password", "passfile", "sslpassword", "sslmode", "sslrootcert", "sslcert", "sslkey",
    "sslcrl", "sslcrldir", "sslcompression", "sslsni", "sslnegotiation", "sslcertmode",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "requiressl", "requirepeer",
    "gssencmode", "gssdelegation", "gsslib", "krbsrvname", "channel_binding", "require_auth",
    "connect_timeout", "application_name", "fallback_application_name", "client_encoding",
    "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
    "tcp_user_timeout",
})  # fmt: skip

#: Driver names an older version's key could carry (an ``Engine``'s URL was not normalized).
_OLD_POSTGRES_DRIVERS = ("postgresql+psycopg", "postgresql", "postgresql+psycopg2")
_OLD_SQLITE_DRIVERS = ("sqlite+pysqlite", "sqlite")
_MASKED = "***"  # how the old key rendered any password


def _key(identity: str) -> str:
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _spool_root() -> Path:
    return default_data_dir() / "spool"


def _default_user() -> str:
    return os.environ.get("PGUSER") or getpass.getuser()


def _default_port() -> int:
    text = os.environ.get("PGPORT", "")
    return int(text) if text.isdigit() else POSTGRES_DEFAULT_PORT


def _one_host(host: str) -> str:
    if host.startswith("/"):
        return host  # a Unix-socket directory: a path, case and all
    host = host.lower()
    return LOOPBACK_HOSTS[0] if host in LOOPBACK_HOSTS else host


def _connect_parameters(url: URL) -> dict[str, str]:
    """What the driver is handed for this URL (query parameters override URL parts)."""
    url = url.set(drivername="postgresql+psycopg")
    _, params = url.get_dialect()().create_connect_args(url)
    return {name: str(value) for name, value in params.items() if value is not None}


def _postgres_identity(url: URL) -> URL:
    given = _connect_parameters(url)
    host = given.pop("host", None) or os.environ.get("PGHOST") or None
    port = given.pop("port", None) or str(_default_port())
    user = given.pop("user", None) or _default_user()
    database = given.pop("dbname", None) or url.database
    kept = {name: given[name] for name in sorted(given) if name not in NOT_THE_TARGET}
    one_server = host is None or ("," not in host and not host.startswith("/"))
    if one_server and port.isdigit():
        return URL.create(
            "postgresql+psycopg",
            username=user,
            host=_one_host(host) if host else None,
            port=int(port),
            database=database,
            query=kept,
        )
    # several hosts, a socket directory, or an unusual port: spelled as query parameters
    if host is not None:
        kept["host"] = ",".join(_one_host(part) for part in host.split(","))
    kept["port"] = port
    query = {name: kept[name] for name in sorted(kept)}
    return URL.create("postgresql+psycopg", username=user, database=database, query=query)


def spool_identity(url: URL) -> URL:
    """The database a (normalized) URL names, spelled one way: for PostgreSQL the host,
    port, role and database libpq connects to (query parameters folded in, ``localhost``,
    ``127.0.0.1`` and ``::1`` as ``127.0.0.1``, defaults filled in), the password and the
    connection-only parameters (``NOT_THE_TARGET``) left out, every other parameter kept;
    for SQLite the file's absolute path. Its text keys the spool directory."""
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if "uri" not in url.query and database:
            database = str(Path(database).expanduser().resolve())
        query = {"uri": url.query["uri"]} if "uri" in url.query else {}
        return URL.create("sqlite+pysqlite", database=database, query=query)
    return _postgres_identity(url)


def default_spool_dir(url: URL) -> Path:
    """Per-database spool directory under the user's data directory, keyed by the database
    the URL names (``spool_identity``): every spelling of one database shares it, and rows
    spooled there only ever replay into that database."""
    return _spool_root() / _key(spool_identity(url).render_as_string(hide_password=True))


def _postgres_spellings(url: URL) -> Iterator[URL]:
    """Spellings of this database that keyed a directory before: every driver name,
    loopback name, with and without the default port and role, with and without a
    password, with the URL's query as given and with only what names the target."""
    identity = spool_identity(url)
    if identity.host == LOOPBACK_HOSTS[0]:
        hosts: tuple[str | None, ...] = LOOPBACK_HOSTS
    else:
        hosts = (identity.host,)
    ports = (identity.port, None) if identity.port == _default_port() else (identity.port,)
    users = (
        (identity.username, None) if identity.username == _default_user() else (identity.username,)
    )
    queries: list[Mapping[str, str | tuple[str, ...]]] = [dict(url.query), dict(identity.query)]
    for driver in _OLD_POSTGRES_DRIVERS:
        for host in hosts:
            for port in ports:
                for user in users:
                    for password in (None, _MASKED) if user else (None,):
                        for query in queries:
                            yield URL.create(  # not .set(): it ignores None
                                driver,
                                username=user,
                                password=password,
                                host=host,
                                port=port,
                                database=identity.database,
                                query=query,
                            )


def _sqlite_spellings(url: URL) -> Iterator[URL]:
    """Absolute spellings of this SQLite file that keyed a directory before, with and
    without the query. A relative spelling's old key is not one of them: the same text
    named a file of that name in whichever directory a process ran, so its directory may
    hold another database's rows (``mlpred spool replay --spool-dir DIR`` takes one)."""
    database = url.database or ""
    names: list[str] = []
    if "uri" not in url.query and database:
        path = Path(database).expanduser()
        names = [database, str(path), str(path.absolute()), str(path.resolve())]
    for driver in _OLD_SQLITE_DRIVERS:
        for name in dict.fromkeys(names):
            if not Path(name).is_absolute():
                continue
            for query in (dict(url.query), {}):
                yield URL.create(driver, database=name, query=query)


def _legacy_spellings(url: URL) -> Iterator[URL]:
    if url.get_backend_name() == "sqlite":
        yield from _sqlite_spellings(url)
    else:
        yield url  # as given: the old key was the normalized URL with its password as ***
        yield from _postgres_spellings(url)


def legacy_spool_dirs(url: URL) -> list[Path]:
    """Existing spool directories that spellings of this database's URL keyed before
    ``spool_identity`` (the old key was the URL's own text): the logger replays their
    orphaned segments at start-up and ``mlpred spool`` counts and replays everything in
    them, so nothing spooled under an old key is lost."""
    current = default_spool_dir(url)
    found: list[Path] = []
    for spelling in _legacy_spellings(url):
        directory = _spool_root() / _key(spelling.render_as_string(hide_password=True))
        if directory != current and directory not in found and directory.is_dir():
            found.append(directory)
    return found
