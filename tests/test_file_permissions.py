"""Files mlpred creates for a SQLite database are private: the database file (and the -wal
and -shm files SQLite makes beside it) and the backfill lock file are 0600, the data
directory is 0700, even under a permissive umask; files and directories that already exist
keep their mode."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlpred_cli.config import DATABASE_URL_ENV, default_sqlite_url
from mlpred_cli.outcomes.backfill import backfill_actuals
from mlpred_cli.store.database import create_engine
from mlpred_cli.store.locks import backfill_lock, backfill_lock_path
from mlpred_cli.store.source import init_database
from tests.cli_helpers import run_cli

pytestmark = pytest.mark.sqlite_only


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """umask 022: without care, new files would be 0644 and directories 0755."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _file_of(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def test_new_database_and_its_wal_files_are_private(backend: str, empty_db_url: str) -> None:
    path = _file_of(empty_db_url)
    assert not path.exists()
    engine = create_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        with engine.connect() as conn:  # WAL mode: -wal and -shm exist while it is open
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM t").scalar() == 1
            side_files = [Path(f"{path}-wal"), Path(f"{path}-shm")]
            assert all(side.exists() for side in side_files)
            assert {side.name: _mode(side) for side in side_files} == {
                side.name: 0o600 for side in side_files
            }
    finally:
        engine.dispose()
    assert _mode(path) == 0o600


def test_existing_database_keeps_its_mode(backend: str, empty_db_url: str) -> None:
    path = _file_of(empty_db_url)
    path.touch()
    path.chmod(0o640)
    engine = create_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    finally:
        engine.dispose()
    assert _mode(path) == 0o640


def test_library_init_database_creates_a_private_file(backend: str, tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    assert init_database(path)
    assert _mode(path) == 0o600


def test_cli_init_db_creates_a_private_file(backend: str, empty_db_url: str) -> None:
    code, _, err = run_cli("--db", empty_db_url, "init-db")
    assert code == 0, err
    assert _mode(_file_of(empty_db_url)) == 0o600


def test_embedded_database_lives_in_a_private_data_dir(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    code, _, err = run_cli("init-db")
    assert code == 0, err
    data_dir = tmp_path / "data" / "mlpred"
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / "mlpred.db") == 0o600


def test_existing_data_dir_keeps_its_mode(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    data_dir = tmp_path / "mlpred"
    data_dir.mkdir(mode=0o755)
    assert default_sqlite_url().endswith("/mlpred/mlpred.db")
    assert _mode(data_dir) == 0o755


def test_backfill_lock_file_is_private(backend: str, db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        lock_path = backfill_lock_path(engine)
        assert not lock_path.exists()
        with engine.connect() as conn, backfill_lock(engine, conn) as acquired:
            assert acquired
            assert _mode(lock_path) == 0o600
        lock_path.unlink()
        assert backfill_actuals(engine).status == "ok"  # the real run takes the same lock
        assert _mode(lock_path) == 0o600
    finally:
        engine.dispose()


def test_existing_lock_file_keeps_its_mode(backend: str, db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        lock_path = backfill_lock_path(engine)
        lock_path.touch()
        lock_path.chmod(0o644)
        with engine.connect() as conn, backfill_lock(engine, conn) as acquired:
            assert acquired
        assert _mode(lock_path) == 0o644
    finally:
        engine.dispose()
