"""The spool directory is keyed by the database a URL names, not by how the URL is spelled;
directories keyed by an older spelling are still read and replayed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from mlpred_cli.capture.spool import Spool, default_spool_dir
from mlpred_cli.store.database import create_engine, normalize_url
from mlpred_cli.store.tables import predictions_table
from tests.cli_helpers import run_cli
from tests.factories import written_rows


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    return data


def _directory(text: str) -> Path:
    return default_spool_dir(normalize_url(text))


def _old_key_directory(text: str) -> Path:
    """Where mlpred before the normalized key spooled for this spelling."""
    identity = normalize_url(text).render_as_string(hide_password=True)
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return _directory("postgresql://u@127.0.0.1:5432/x").parent / key


def test_spellings_of_one_postgres_database_share_one_directory() -> None:
    spellings = [
        "postgresql://postgres@localhost:5432/x",
        "postgresql://postgres@127.0.0.1:5432/x",
        "postgresql://postgres@127.0.0.1/x",
        "postgresql+psycopg://postgres@[::1]/x",
        "postgresql://postgres:secret@LOCALHOST/x?sslmode=prefer&connect_timeout=3",
    ]
    assert len({_directory(text) for text in spellings}) == 1


def test_the_default_role_is_filled_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGUSER", "alice")
    assert _directory("postgresql://127.0.0.1/x") == _directory("postgresql://alice@localhost/x")


def test_different_databases_keep_different_directories() -> None:
    assert len({
        _directory("postgresql://postgres@127.0.0.1/x"),
        _directory("postgresql://postgres@127.0.0.1/y"),
        _directory("postgresql://postgres@127.0.0.1:5433/x"),
        _directory("postgresql://other@127.0.0.1/x"),
        _directory("postgresql://postgres@db.example.com/x"),
    }) == 5  # fmt: skip


def test_the_canonical_spelling_keeps_the_key_it_had() -> None:
    text = "postgresql+psycopg://postgres@127.0.0.1:5432/x"
    assert _directory(text) == _old_key_directory(text)


def test_a_sqlite_file_is_keyed_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    absolute = tmp_path / "a.db"
    assert _directory("sqlite:///a.db") == _directory(f"sqlite:///{absolute}")
    assert _directory(str(absolute)) == _directory(f"sqlite:///{absolute}?timeout=5")


def _spellings(db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Three spellings of the test's database."""
    url = make_url(db_url)
    if backend == "sqlite":
        path = Path(url.database or "")
        monkeypatch.chdir(path.parent)
        return [f"sqlite:///{path.name}", str(path), f"sqlite:///{path}"]
    if url.host not in ("127.0.0.1", "localhost"):
        pytest.skip(f"the test database is not on the loopback interface ({url.host})")
    port = url.port or 5432
    return [
        _render(url.set(host="localhost", port=port)),
        _render(url.set(host="127.0.0.1", port=port)),
        _render(url.set(host="127.0.0.1", port=None if port == 5432 else port)),
    ]


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _status(url: str) -> dict[str, object]:
    code, out, err = run_cli("--db", url, "spool", "status", "--format", "json")
    assert code == 0, err
    status: dict[str, object] = json.loads(out)
    return status


def _count(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(predictions_table)).scalar()
    engine.dispose()
    return int(count or 0)


def test_rows_spooled_under_one_spelling_are_seen_and_replayed_under_another(
    db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, third = _spellings(db_url, backend, monkeypatch)
    Spool(_directory(first)).append(written_rows(3))
    assert _status(second)["rows"] == 3
    assert _status(third)["rows"] == 3
    code, out, err = run_cli("--db", third, "spool", "replay", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["replayed"] == 3
    assert _count(db_url) == 3
    assert _status(first)["rows"] == 0


def test_a_directory_keyed_by_an_older_spelling_is_still_found(
    db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "sqlite":
        pytest.skip("every spelling of a SQLite file keyed by its path before too")
    localhost, loopback, _ = _spellings(db_url, backend, monkeypatch)
    old = _old_key_directory(localhost)
    assert old != _directory(localhost)
    Spool(old).append(written_rows(2))
    Spool(old).dead_letter(written_rows(1)[0], "rejected for a test")
    status = _status(loopback)
    assert (status["rows"], status["dead_lettered"]) == (2, 1)
    code, out, err = run_cli("--db", loopback, "spool", "replay", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["replayed"] == 2
    assert _count(db_url) == 2
    assert _status(localhost)["rows"] == 0
