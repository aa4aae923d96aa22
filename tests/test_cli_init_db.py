"""`mlpred init-db` and the CLI's handling of bad or unreachable databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from pytest import MonkeyPatch
from sqlalchemy.engine import URL

from mlpred_cli.config import DATABASE_URL_ENV
from mlpred_cli.store.database import create_engine, run_autocommit
from mlpred_cli.store.migrations import head_revision
from tests.cli_helpers import run_cli


def test_init_db_twice_leaves_one_revision(empty_db_url: str) -> None:
    first = run_cli("--db", empty_db_url, "init-db")
    second = run_cli("--db", empty_db_url, "init-db")
    assert first[0] == 0, first
    assert second[0] == 0, second
    assert f"Revision: {head_revision()} (migrated to head)" in first[1]
    assert "(already at head)" in second[1]
    engine = create_engine(empty_db_url)
    with engine.connect() as conn:
        versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    engine.dispose()
    assert versions == [(head_revision(),)]


def test_init_db_uses_environment_url(empty_db_url: str) -> None:
    code, _, _ = run_cli("init-db", env={DATABASE_URL_ENV: empty_db_url})
    assert code == 0
    engine = create_engine(empty_db_url)
    assert "ml_predictions" in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_init_db_defaults_to_embedded_sqlite(tmp_path, monkeypatch: MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    code, out, err = run_cli("init-db")
    assert code == 0, err
    expected = tmp_path / "data" / "mlpred" / "mlpred.db"
    assert expected.exists()
    assert str(expected) in out


def test_unreachable_server_exits_1_with_one_line() -> None:
    code, out, err = run_cli("--db", "postgresql://postgres:hunter2@127.0.0.1:1/mlpred", "init-db")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: cannot connect to")
    assert "hunter2" not in err + out
    assert "Traceback" not in err


def test_malformed_url_exits_2() -> None:
    for url in ["mysql://root:pw@localhost/db", "postgresql://", "sqlite:///no/such/dir/x.db"]:
        code, _, err = run_cli("--db", url, "init-db")
        assert code == 2, (url, err)
        assert len(err.strip().splitlines()) == 1
        assert err.startswith("Error: ")
        assert "pw" not in err


def test_version_and_help() -> None:
    code, out, _ = run_cli("--version")
    assert code == 0
    assert out.startswith("mlpred ")
    code, out, _ = run_cli("init-db", "--help")
    assert code == 0
    assert "mlpred init-db" in out


def test_init_db_on_a_revision_this_version_does_not_know_is_one_line(db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'from_the_future'")
    engine.dispose()
    code, _, err = run_cli("--db", db_url, "init-db")
    assert code == 1
    assert "cannot migrate" in err and "from_the_future" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_infinite_window_is_bad_input_not_a_traceback(db_url: str) -> None:
    code, _, err = run_cli("--db", db_url, "analyze", "--days", "inf")
    assert code == 2
    assert "Invalid value for '--days'" in err and "Traceback" not in err
    assert len(err.splitlines()) == 2  # the error and where to find help


# ---------------------------------------------------------------- a database that does not exist


@pytest.fixture
def missing_pg_database(pg_admin_url: URL | None) -> Iterator[URL]:
    """The URL of a PostgreSQL database that does not exist yet (dropped afterwards, should
    a test create it); its name needs quoting: capitals, a space and a double quote."""
    assert pg_admin_url is not None  # postgres_only: skipped before, when there is none
    name = f'mlpred Init"{uuid.uuid4().hex[:8]}'
    yield pg_admin_url.set(database=name)
    quoted = name.replace('"', '""')
    run_autocommit(pg_admin_url, f'DROP DATABASE IF EXISTS "{quoted}" WITH (FORCE)')


def _text(url: URL, password: str | None = None) -> str:
    return url.set(drivername="postgresql", password=password).render_as_string(hide_password=False)


@pytest.mark.postgres_only
def test_init_db_on_a_missing_database_says_how_to_create_it(
    backend: str, missing_pg_database: URL
) -> None:
    url = missing_pg_database
    code, out, err = run_cli("--db", _text(url, "hunter2"), "init-db")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    name = url.database
    assert name is not None
    quoted = '"' + name.replace('"', '""') + '"'
    server = f"{url.host}:{url.port or 5432}"
    assert lines[0].startswith(f"Error: database {quoted} does not exist on {server}: create it")
    assert "init-db --create' or 'createdb -h " in lines[0]
    assert "hunter2" not in err + out
    assert "postgresql://postgres:***@" in lines[0]


@pytest.mark.postgres_only
def test_init_db_create_makes_the_database_then_is_harmless(
    backend: str, missing_pg_database: URL
) -> None:
    url = _text(missing_pg_database)
    code, out, err = run_cli("--db", url, "init-db", "--create")
    assert code == 0, err
    assert out.splitlines()[0] == f"Created database {missing_pg_database.database}"
    assert f"Revision: {head_revision()} (migrated to head)" in out
    code, out, err = run_cli("--db", url, "init-db", "--create")
    assert code == 0, err
    assert "Created database" not in out
    assert "(already at head)" in out
    engine = create_engine(url)
    assert "ml_predictions" in sa.inspect(engine).get_table_names()
    engine.dispose()


@pytest.mark.postgres_only
def test_init_db_create_without_the_createdb_privilege_is_one_line(
    backend: str, missing_pg_database: URL, pg_admin_url: URL
) -> None:
    role = f"mlpred_nocreate_{uuid.uuid4().hex[:8]}"
    run_autocommit(pg_admin_url, f"CREATE ROLE \"{role}\" LOGIN PASSWORD 'pw{role}'")
    try:
        url = _text(missing_pg_database.set(username=role), f"pw{role}")
        code, out, err = run_cli("--db", url, "init-db", "--create")
        assert code == 1, (out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err
        assert f"role {role} lacks the CREATEDB privilege" in lines[0]
        assert f"pw{role}" not in err + out
    finally:
        run_autocommit(pg_admin_url, f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.sqlite_only
def test_init_db_create_on_sqlite_is_accepted(backend: str, tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    code, out, err = run_cli("--db", f"sqlite:///{path}", "init-db", "--create")
    assert code == 0, err
    assert path.is_file() and "Created database" not in out
    code, _, err = run_cli("--db", f"sqlite:///{tmp_path}/no/such/dir/x.db", "init-db", "--create")
    assert code == 2
    assert (
        err.strip() == f"Error: directory of the SQLite file does not exist: {tmp_path}/no/such/dir"
    )
