"""Database fixtures: every database test runs on a fresh SQLite file and a fresh PostgreSQL
database (created from the admin URL in MLPRED_TEST_PG_URL and dropped afterwards).

Without MLPRED_TEST_PG_URL the PostgreSQL variants are skipped; with it they must run, and an
unreachable server fails them instead of skipping.

A module marked ``pytestmark = pytest.mark.both_layouts`` runs its PostgreSQL tests twice:
on the single ``ml_predictions`` table and on the table partitioned by day (test id
``postgresql-partitioned``; ``backend`` is still ``"postgresql"``, the ``layout`` fixture says
``"partitioned"``). Its databases are cloned from a template partitioned once per session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from mlpred_cli.config import PARTITION_DAYS_AHEAD
from mlpred_cli.store.database import create_engine, normalize_url, run_autocommit
from mlpred_cli.store.migrations import upgrade_to_head
from mlpred_cli.store.partitions import partition_predictions

PG_ENV = "MLPRED_TEST_PG_URL"

#: The parametrization id (and ``backend`` parameter) of PostgreSQL with partitioned storage.
PARTITIONED_PG = "postgresql-partitioned"
SINGLE_TABLE = "single"
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


@pytest.fixture(scope="session")
def pg_admin_url() -> URL | None:
    """The admin URL from MLPRED_TEST_PG_URL, checked to be reachable; None when unset."""
    raw = os.environ.get(PG_ENV, "").strip()
    if not raw:
        return None
    url = normalize_url(raw)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as error:
        pytest.fail(f"{PG_ENV} is set but PostgreSQL is unreachable: {error.orig}", pytrace=False)
    finally:
        engine.dispose()
    return url


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
def empty_db_url(backend: str, tmp_path: Path, pg_admin_url: URL | None) -> Iterator[str]:
    """URL of a fresh, empty (unmigrated) database on the test's backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    if pg_admin_url is None:
        pytest.skip(f"{PG_ENV} not set")
    yield from _fresh_pg_database(pg_admin_url, None)


@pytest.fixture
def db_url(
    request: pytest.FixtureRequest,
    backend: str,
    layout: str,
    tmp_path: Path,
    pg_admin_url: URL | None,
    pg_template: str | None,
    sqlite_template: Path,
) -> Iterator[str]:
    """URL of a fresh database on the test's backend, migrated to head (and partitioned
    by day when ``layout`` says so)."""
    if backend == "sqlite":
        path = tmp_path / "test.db"
        path.write_bytes(sqlite_template.read_bytes())
        yield f"sqlite:///{path}"
        return
    if pg_admin_url is None:
        pytest.skip(f"{PG_ENV} not set")
    if layout == PARTITIONED:
        template = request.getfixturevalue("pg_partitioned_template")
        yield from _fresh_pg_database(pg_admin_url, template)
        return
    yield from _fresh_pg_database(pg_admin_url, pg_template)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on the migrated test database, disposed afterwards."""
    created = create_engine(db_url)
    yield created
    created.dispose()
