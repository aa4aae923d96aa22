"""The spool directory is keyed by the database a URL names, not by how the URL is spelled
(query parameters that name another target give another directory); directories keyed by an
older spelling are still found, counted and replayed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from mlpred_cli.capture.spool import Spool
from mlpred_cli.capture.spool_keys import default_spool_dir, legacy_spool_dirs
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


def _old_key_directory(text: str, *, normalized: bool = True) -> Path:
    """Where mlpred before the normalized key spooled for this spelling (the old key
    function: the URL's text with its password as ***; ``normalized=False``: the URL of an
    ``Engine`` as made elsewhere, which an older version did not normalize)."""
    url = normalize_url(text) if normalized else make_url(text)
    key = hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:16]
    return _directory("postgresql://u@127.0.0.1:5432/x").parent / key


def _make(directory: Path) -> Path:
    directory.mkdir(parents=True)
    return directory


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


PLAIN = "postgresql://postgres@127.0.0.1/x"


def test_query_parameters_naming_another_target_get_another_directory() -> None:
    others = [
        f"{PLAIN}?port=5433",
        f"{PLAIN}?dbname=other",
        f"{PLAIN}?user=nobody",
        f"{PLAIN}?options=-csearch_path%3Dother",
        f"{PLAIN}?host=db.example.com",
        f"{PLAIN}?hostaddr=10.0.0.9",
        f"{PLAIN}?target_session_attrs=read-write",  # unsure: kept in the key
        "postgresql://postgres@/x?host=/tmp",
    ]
    directories = {_directory(text) for text in [PLAIN, *others]}
    assert len(directories) == len(others) + 1


def test_query_parameters_naming_the_same_target_share_its_directory() -> None:
    same = [
        f"{PLAIN}?port=5432",
        f"{PLAIN}?dbname=x",
        f"{PLAIN}?user=postgres",
        f"{PLAIN}?host=localhost",
        "postgresql://postgres@127.0.0.1:5433/x?port=5432",  # the query wins, as in libpq
        "postgresql://nobody@127.0.0.1/other?user=postgres&dbname=x",
        "postgresql://postgres@/x?host=127.0.0.1",
    ]
    assert {_directory(text) for text in same} == {_directory(PLAIN)}


def test_connection_only_parameters_do_not_change_the_key() -> None:
    query = (
        "sslmode=require&connect_timeout=3&application_name=bot&keepalives=1"
        "&keepalives_idle=30&tcp_user_timeout=1000&sslrootcert=/etc/ca.pem"
    )
    assert _directory(f"{PLAIN}?{query}") == _directory(PLAIN)
    assert _directory(f"{PLAIN}?sslmode=disable") == _directory(f"{PLAIN}?sslmode=require")


def test_a_parameter_kept_in_the_key_is_spelled_one_way() -> None:
    assert _directory(f"{PLAIN}?options=-cx%3D1&sslmode=require&hostaddr=127.0.0.1") == (
        _directory("postgresql://postgres@localhost:5432/x?hostaddr=127.0.0.1&options=-cx%3D1")
    )


def test_the_default_port_is_libpqs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPORT", "5433")
    assert _directory(PLAIN) == _directory("postgresql://postgres@127.0.0.1:5433/x")
    assert _directory(PLAIN) != _directory("postgresql://postgres@127.0.0.1:5432/x")


def test_older_postgres_spellings_are_found() -> None:
    old = [
        _make(_old_key_directory("postgresql://postgres:secret@localhost:5432/x")),
        _make(_old_key_directory("postgresql://postgres@[::1]/x?sslmode=require")),
        _make(_old_key_directory("postgresql+psycopg2://postgres@127.0.0.1/x", normalized=False)),
        _make(_old_key_directory("postgresql://postgres@localhost/x", normalized=False)),
    ]
    found = legacy_spool_dirs(normalize_url("postgresql://postgres@127.0.0.1/x?sslmode=require"))
    assert set(found) == set(old)


def test_older_spellings_of_another_database_are_not_found() -> None:
    for text in (
        "postgresql://postgres@127.0.0.1/other",
        "postgresql://postgres@127.0.0.1:5433/x",
        "postgresql://postgres@127.0.0.1/x?dbname=other",
        "postgresql://nobody@127.0.0.1/x",
        "postgresql://postgres@127.0.0.1/x?options=-csearch_path%3Dother",
    ):
        _make(_old_key_directory(text))
    assert legacy_spool_dirs(normalize_url(PLAIN)) == []
    other_port = _make(_old_key_directory("postgresql://postgres@localhost:5433/x"))
    assert legacy_spool_dirs(normalize_url(f"{PLAIN}?port=5433")) == [other_port]


def test_older_sqlite_spellings_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    absolute = tmp_path / "legacy.db"
    with_query = _make(_old_key_directory(f"sqlite:///{absolute}?timeout=5"))
    bare = _make(_old_key_directory(str(absolute)))  # = sqlite:////abs: absolute, no query
    engine_url = _make(_old_key_directory(f"sqlite:///{absolute}", normalized=False))
    assert _directory(str(absolute)) == bare  # the absolute spelling kept its key
    assert set(legacy_spool_dirs(normalize_url(str(absolute)))) == {engine_url}
    found = legacy_spool_dirs(normalize_url(f"sqlite:///{absolute}?timeout=5"))
    assert set(found) == {with_query, engine_url}  # bare: its own key


def test_a_relative_sqlite_spelling_of_old_is_not_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sqlite:///legacy.db`` keyed one directory whatever the working directory: it may
    hold the rows of another directory's legacy.db, so no database claims it."""
    monkeypatch.chdir(tmp_path)
    _make(_old_key_directory("sqlite:///legacy.db"))
    _make(_old_key_directory("sqlite:///./legacy.db"))
    _make(_old_key_directory("sqlite:///legacy.db", normalized=False))
    assert legacy_spool_dirs(normalize_url("sqlite:///legacy.db")) == []
    assert legacy_spool_dirs(normalize_url(str(tmp_path / "legacy.db"))) == []


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
        return [f"sqlite:///{path.name}", str(path), f"sqlite:///{path}?timeout=5"]
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
    # SQLite: the old key was the URL's text (here an absolute one with a query); now it is
    # the absolute path
    spellings = _spellings(db_url, backend, monkeypatch)
    old_spelling, new_spelling = (
        (spellings[2], spellings[2]) if backend == "sqlite" else (spellings[0], spellings[1])
    )
    old = _old_key_directory(old_spelling)
    assert old != _directory(old_spelling)
    Spool(old).append(written_rows(2))
    Spool(old).dead_letter(written_rows(1)[0], "rejected for a test")
    status = _status(new_spelling)
    assert (status["rows"], status["dead_lettered"]) == (2, 1)
    assert status["directories"] == [str(_directory(new_spelling)), str(old)]
    code, out, err = run_cli("--db", new_spelling, "spool", "status", "--format", "csv")
    assert code == 0, err
    assert str(old) in out.replace("\n", "")
    code, out, err = run_cli("--db", new_spelling, "spool", "replay", "--format", "json")
    assert code == 0, err
    replay = json.loads(out)
    assert (replay["replayed"], replay["remaining_rows"]) == (2, 0)
    assert replay["directories"] == [str(_directory(new_spelling)), str(old)]
    assert _count(db_url) == 2
    assert _status(old_spelling)["rows"] == 0
