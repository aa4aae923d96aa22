"""Database fixtures: every database test runs on a fresh SQLite file and a fresh PostgreSQL
database (created from the session's admin URL and dropped afterwards).

The session finds its PostgreSQL by itself (tests/pg_discovery.py): MLPRED_TEST_PG_URL when
set (an unreachable server there fails the PostgreSQL tests), else a server on
127.0.0.1:5432 or the local socket, else a throw-away server started from the installed
binaries and stopped at the end. Only without any of them are the PostgreSQL variants
skipped, with one line saying why; MLPRED_TEST_REQUIRE_PG=1 (CI) makes that a failure.
The SQLite variants never depend on PostgreSQL.

A module marked ``pytestmark = pytest.mark.both_layouts`` runs its PostgreSQL tests twice:
on the single ``ml_predictions`` table and on the table partitioned by day (test id
``postgresql-partitioned``; ``backend`` is still ``"postgresql"``, the ``layout`` fixture says
``"partitioned"``). Its databases are cloned from a template partitioned once per session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, Engine

from mlpred_cli.config import PARTITION_DAYS_AHEAD
from mlpred_cli.store.database import create_engine, run_autocommit
from mlpred_cli.store.migrations import upgrade_to_head
from mlpred_cli.store.partitions import partition_predictions
from tests.pg_discovery import (
    PgChoice,
    PgUnreachable,
    discover_from_environment,
    required_failure,
)

_PLAN = pytest.StashKey[PgChoice]()
_CHOICE = pytest.StashKey[PgChoice]()

#: The parametrization id (and ``backend`` parameter) of PostgreSQL with partitioned storage.
PARTITIONED_PG = "postgresql-partitioned"
SINGLE_TABLE = "single"
#: Parameter values that make a test a PostgreSQL variant (``backend``, or a module's own).
_POSTGRES_PARAMETERS = frozenset({"postgresql", PARTITIONED_PG})
PARTITIONED = "partitioned"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: runs only on the SQLite backend")
    config.addinivalue_line(
        "markers",
        "both_layouts: PostgreSQL tests also run on ml_predictions partitioned by day",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``backend`` over both databases unless a marker narrows it; with
    ``both_layouts``, PostgreSQL runs on both storage layouts."""
    if "backend" not in metafunc.fixturenames:
        return
    backends = ["sqlite", "postgresql"]
    if metafunc.definition.get_closest_marker("postgres_only"):
        backends = ["postgresql"]
    if metafunc.definition.get_closest_marker("sqlite_only"):
        backends = ["sqlite"]
    if "postgresql" in backends and metafunc.definition.get_closest_marker("both_layouts"):
        backends.append(PARTITIONED_PG)
    metafunc.parametrize("backend", backends, indirect=True)


def _backend_parameter(request: pytest.FixtureRequest) -> str | None:
    callspec = getattr(request.node, "callspec", None)
    return None if callspec is None else callspec.params.get("backend")


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"postgresql"`` (whatever the PostgreSQL storage layout)."""
    return "postgresql" if request.param == PARTITIONED_PG else str(request.param)


@pytest.fixture
def layout(request: pytest.FixtureRequest, backend: str) -> str:
    """How ``db_url``'s ``ml_predictions`` is stored: ``"partitioned"`` (by day, PostgreSQL
    in ``both_layouts`` modules) or ``"single"``."""
    return PARTITIONED if _backend_parameter(request) == PARTITIONED_PG else SINGLE_TABLE


def _postgres_plan(config: pytest.Config) -> PgChoice:
    """What this run will use, decided once per process without starting anything."""
    if _PLAN not in config.stash:
        try:
            config.stash[_PLAN] = discover_from_environment(start_server=False)
        except PgUnreachable as error:
            config.stash[_PLAN] = PgChoice(None, str(error), failure=str(error))
    return config.stash[_PLAN]


def session_postgres(config: pytest.Config) -> PgChoice:
    """This process's PostgreSQL, found (and a throw-away server started) when a test first
    needs it; ``pytest_unconfigure`` stops that server."""
    if _CHOICE not in config.stash:
        try:
            config.stash[_CHOICE] = discover_from_environment()
        except PgUnreachable as error:
            config.stash[_CHOICE] = PgChoice(None, str(error), failure=str(error))
    return config.stash[_CHOICE]


def pytest_report_header(config: pytest.Config) -> str:
    return f"PostgreSQL: {_postgres_plan(config).description}"


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """With MLPRED_TEST_REQUIRE_PG=1 and no PostgreSQL to be had, stop before any test
    (in the controlling process; a worker that fails to start its server fails its tests)."""
    if hasattr(session.config, "workerinput"):
        return
    failure = required_failure(_postgres_plan(session.config))
    if failure is not None:
        pytest.exit(failure, returncode=pytest.ExitCode.TESTS_FAILED)


def _needs_postgres(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return False
    return callspec.params.get("backend") in _POSTGRES_PARAMETERS


def _skip_or_fail(choice: PgChoice) -> None:
    if choice.failure is not None:
        pytest.fail(choice.failure, pytrace=False)
    failure = required_failure(choice)
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    # Raised here, not in a fixture, so that -ra folds every such skip into one line.
    pytest.skip(choice.skip_reason or "no PostgreSQL")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip (or fail, see ``_skip_or_fail``) a PostgreSQL variant when the session has no
    PostgreSQL, before its fixtures run."""
    if _needs_postgres(item) and session_postgres(item.config).url is None:
        _skip_or_fail(session_postgres(item.config))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop and delete the throw-away server, after every session fixture's teardown."""
    choice = config.stash.get(_CHOICE, None)
    if choice is not None:
        choice.close()


@pytest.fixture(scope="session")
def pg_choice(request: pytest.FixtureRequest) -> PgChoice:
    """The session's PostgreSQL (tests/pg_discovery.py)."""
    return session_postgres(request.config)


@pytest.fixture(scope="session")
def pg_admin_url(pg_choice: PgChoice) -> URL | None:
    """The session's PostgreSQL admin URL (which may create databases); None when the
    PostgreSQL tests are skipped (``pg_choice.skip_reason`` says why). An unusable
    MLPRED_TEST_PG_URL fails the tests that ask for it."""
    if pg_choice.failure is not None:
        pytest.fail(pg_choice.failure, pytrace=False)
    return pg_choice.url


def require_pg_admin_url(request: pytest.FixtureRequest) -> URL:
    """The session's admin URL, or skip (fail) the test as ``pytest_runtest_setup`` does."""
    choice: PgChoice = request.getfixturevalue("pg_choice")
    if choice.url is None:
        _skip_or_fail(choice)
    assert choice.url is not None
    return choice.url


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: URL | None) -> Iterator[str | None]:
    """A PostgreSQL database migrated to head once per session, cloned by ``db_url``."""
    if pg_admin_url is None:
        yield None
        return
    name = f"mlpred_tpl_{uuid.uuid4().hex[:12]}"
    run_autocommit(pg_admin_url, f'CREATE DATABASE "{name}"')
    engine = create_engine(pg_admin_url.set(database=name))
    upgrade_to_head(engine)
    engine.dispose()
    yield name
    run_autocommit(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_partitioned_template(
    pg_admin_url: URL | None, pg_template: str | None
) -> Iterator[str | None]:
    """``pg_template`` with ``ml_predictions`` partitioned by day (partitions from yesterday
    to a week ahead, and the default one), made once per session when first asked for."""
    if pg_admin_url is None or pg_template is None:
        yield None
        return
    name = f"mlpred_ptpl_{uuid.uuid4().hex[:12]}"
    run_autocommit(pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    engine = create_engine(pg_admin_url.set(database=name))
    partition_predictions(engine, days_ahead=PARTITION_DAYS_AHEAD, now=datetime.now(UTC))
    engine.dispose()
    yield name
    run_autocommit(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session, copied by ``db_url``."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = create_engine(f"sqlite:///{path}")
    upgrade_to_head(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def _fresh_pg_database(admin_url: URL, template: str | None) -> Iterator[str]:
    name = f"mlpred_test_{uuid.uuid4().hex[:12]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    run_autocommit(admin_url, f'CREATE DATABASE "{name}"{clause}')
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        run_autocommit(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_db_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, empty (unmigrated) database on the test's backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    yield from _fresh_pg_database(require_pg_admin_url(request), None)


@pytest.fixture
def db_url(
    request: pytest.FixtureRequest,
    backend: str,
    layout: str,
    tmp_path: Path,
) -> Iterator[str]:
    """URL of a fresh database on the test's backend, migrated to head (and partitioned
    by day when ``layout`` says so). PostgreSQL fixtures are asked for only here, so a
    SQLite test never waits for, nor fails with, PostgreSQL."""
    if backend == "sqlite":
        sqlite_template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "test.db"
        path.write_bytes(sqlite_template.read_bytes())
        yield f"sqlite:///{path}"
        return
    admin_url = require_pg_admin_url(request)
    fixture = "pg_partitioned_template" if layout == PARTITIONED else "pg_template"
    yield from _fresh_pg_database(admin_url, request.getfixturevalue(fixture))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on the migrated test database, disposed afterwards."""
    created = create_engine(db_url)
    yield created
    created.dispose()
