"""`mlpred init-db` and the CLI's handling of bad or unreachable databases."""

from __future__ import annotations

import sqlalchemy as sa
from pytest import MonkeyPatch

from mlpred_cli.config import DATABASE_URL_ENV
from mlpred_cli.store.database import create_engine
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
    assert "--days must be a finite number" in err and "Traceback" not in err
