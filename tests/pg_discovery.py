"""Which PostgreSQL the test session uses, found by itself (conftest's ``pg_admin_url``).

In this order:

1. ``MLPRED_TEST_PG_URL`` when set: that admin URL, and an unreachable server there fails
   the PostgreSQL tests (``PgUnreachable``) rather than skipping them;
2. else the first of ``postgresql://postgres@127.0.0.1:5432/postgres`` and the libpq defaults
   (``postgresql:///postgres``: the Unix socket, the OS user's role, ``PG*`` variables) that
   answers within 2 s with a role that may create databases (``MLPRED_TEST_PG_DEFAULT_URL``
   replaces both candidates);
3. else a throw-away cluster started from the installed server binaries
   (``tests/pg_server.py``: initdb/pg_ctl in a fresh temporary directory, a free port, trust
   authentication), which ``PgChoice.close`` stops and deletes;
4. else none: the PostgreSQL variants are skipped with ``PgChoice.skip_reason``, or fail
   when ``MLPRED_TEST_REQUIRE_PG=1`` (CI).

``discover_postgres`` takes every input as an argument, so its tests need not touch the
environment of the running session; ``discover_from_environment`` reads the variables.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL

from mlpred_cli.errors import ConfigError
from mlpred_cli.store.database import mask_text, mask_url, normalize_url
from mlpred_cli.store.driver_errors import describe_error
from tests.pg_server import (
    PgCluster,
    binary_directories,
    find_server_binaries,
    remove_abandoned_clusters,
    unavailable_reason,
)

PG_ENV = "MLPRED_TEST_PG_URL"
DEFAULT_URL_ENV = "MLPRED_TEST_PG_DEFAULT_URL"
REQUIRE_ENV = "MLPRED_TEST_REQUIRE_PG"
DEFAULT_URLS = ("postgresql://postgres@127.0.0.1:5432/postgres", "postgresql:///postgres")
PROBE_TIMEOUT_S = 2
#: Connections a throw-away session server allows (the shared server's default is 100).
SESSION_MAX_CONNECTIONS = 100
#: Tries at starting a throw-away server, each on a new free port.
START_ATTEMPTS = 3


class PgUnreachable(Exception):
    """``MLPRED_TEST_PG_URL`` is set but names a server that does not answer."""


@dataclass
class PgChoice:
    """The PostgreSQL of a test session: ``url`` (an admin URL) or ``skip_reason``."""

    url: URL | None
    description: str
    skip_reason: str | None = None
    cluster: PgCluster | None = None
    #: Set when the PostgreSQL tests must fail instead (an unusable MLPRED_TEST_PG_URL).
    failure: str | None = None

    def close(self) -> None:
        """Stop and delete the throw-away server, if this choice started one."""
        if self.cluster is not None:
            self.cluster.destroy()
            self.cluster = None


def _where(url: URL) -> str:
    if url.host is None:
        return "the local socket"
    return f"{url.host}:{url.port or 5432}"


def probe(url: URL, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when ``url`` answers with a role that may create databases, else why not
    (one short line)."""
    engine = sa.create_engine(url, connect_args={"connect_timeout": max(1, int(timeout_s))})
    try:
        with engine.connect() as conn:
            may_create = conn.exec_driver_sql(
                "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
            ).scalar()
    except sa.exc.DBAPIError as error:
        return describe_error(error).rsplit("failed: ", 1)[-1].strip()
    finally:
        engine.dispose()
    return None if may_create else "the role may not create databases"


def _start_cluster(bin_dir: Path) -> PgChoice:
    remove_abandoned_clusters()
    try:
        cluster = PgCluster.create(bin_dir, max_connections=SESSION_MAX_CONNECTIONS)
    except Exception as error:
        return _skipped(f"initdb from {bin_dir} failed: {str(error).splitlines()[0]}")
    try:
        cluster.start(attempts=START_ATTEMPTS)
    except Exception as error:
        cluster.destroy()
        return _skipped(
            f"a throw-away server from {bin_dir} did not start: {str(error).splitlines()[0]}"
        )
    description = f"throw-away server from {bin_dir} on 127.0.0.1:{cluster.port}"
    return PgChoice(normalize_url(cluster.url()), description, cluster=cluster)


def _skipped(reason: str) -> PgChoice:
    message = f"PostgreSQL tests skipped: {reason}"
    return PgChoice(None, message, skip_reason=message)


def discover_postgres(
    *,
    explicit: str | None,
    candidates: Sequence[str] = DEFAULT_URLS,
    bin_dirs: Sequence[Path] | None = None,
    start_server: bool = True,
) -> PgChoice:
    """Find the session's PostgreSQL (see the module docstring for the order).

    ``explicit`` is ``MLPRED_TEST_PG_URL`` (raises ``PgUnreachable`` when it does not
    answer); ``candidates`` are tried next; ``bin_dirs`` (default ``binary_directories()``)
    hold initdb/pg_ctl for a throw-away server. With ``start_server=False`` nothing is
    started and an explicit URL is not probed: the choice only describes the plan (the
    pytest header), its ``url`` is None.
    """
    if explicit:
        try:
            url = normalize_url(explicit)
        except ConfigError as error:
            raise PgUnreachable(f"{PG_ENV} is not a usable URL: {error}") from None
        if not start_server:
            return PgChoice(None, f"{PG_ENV} {mask_url(url)}")
        problem = probe(url)
        if problem is not None:
            raise PgUnreachable(f"{PG_ENV} is set but PostgreSQL is unusable there: {problem}")
        return PgChoice(url, f"{PG_ENV} {mask_url(url)}")
    failures = []
    for candidate in candidates:
        try:
            url = normalize_url(candidate)
        except ConfigError as error:
            failures.append(f"{mask_text(candidate)} ({error})")
            continue
        problem = probe(url)
        if problem is None:
            return PgChoice(url, f"local server on {_where(url)} ({mask_url(url)})")
        failures.append(f"{_where(url)} ({problem})")
    no_server = f"no usable server at {' or '.join(failures) or 'no candidate URL'}"
    directories = binary_directories() if bin_dirs is None else list(bin_dirs)
    missing = unavailable_reason(directories)
    if missing is not None:
        return _skipped(f"{no_server}, and {missing}")
    bin_dir = find_server_binaries(directories)
    assert bin_dir is not None  # unavailable_reason found it
    if not start_server:
        return PgChoice(None, f"throw-away server from {bin_dir} (one per test process)")
    return _start_cluster(bin_dir)


def discover_from_environment(*, start_server: bool = True) -> PgChoice:
    """``discover_postgres`` with the inputs the environment gives: ``MLPRED_TEST_PG_URL``,
    ``MLPRED_TEST_PG_DEFAULT_URL`` (else ``DEFAULT_URLS``), ``MLPRED_TEST_PG_BIN``."""
    default = os.environ.get(DEFAULT_URL_ENV, "").strip()
    return discover_postgres(
        explicit=os.environ.get(PG_ENV, "").strip() or None,
        candidates=[default] if default else DEFAULT_URLS,
        start_server=start_server,
    )


def postgres_required() -> bool:
    """True when ``MLPRED_TEST_REQUIRE_PG`` turns a skip of the PostgreSQL tests into a
    failure."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes"}


def required_failure(choice: PgChoice) -> str | None:
    """The failure message when PostgreSQL is required and ``choice`` skips it, else None."""
    if choice.skip_reason is None or not postgres_required():
        return None
    return f"{REQUIRE_ENV}=1 but {choice.skip_reason.removeprefix('PostgreSQL tests skipped: ')}"
