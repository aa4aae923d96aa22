"""Database URLs: a malformed or ambiguous URL is one ``ConfigError`` line (exit 2 in the CLI)
that repeats no part of the password; well-formed URLs, percent-escaped passwords included,
keep working."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from mlpred_cli.config import DATABASE_URL_ENV, resolve_database_url
from mlpred_cli.errors import ConfigError
from mlpred_cli.store.database import (
    check_connection,
    create_engine,
    mask_text,
    mask_url,
    normalize_url,
)
from mlpred_cli.store.source import database_url
from tests.cli_helpers import run_cli

PASSWORD = "Zq8wK3v"

#: (URL, the password the user meant, a phrase the message must contain).
MALFORMED = [
    ("postgresql://u:Zq8@wK3v@db.example/mlpred", "Zq8@wK3v", "%40"),
    ("postgresql://u:Zq8wK3v@@db.example/mlpred", PASSWORD, "%40"),
    ("postgresql://u:Zq8@wK3/v@db.example/mlpred", "Zq8@wK3/v", "%40"),
    ("postgresql://u:Zq8wK3v@db.example/ml@pred", PASSWORD, "%40"),
    ("postgresql://u@x:Zq8wK3v@db.example/mlpred", PASSWORD, "%40"),
    ("mysql://u:Zq8@wK3v@db.example/mlpred", "Zq8@wK3v", "%40"),
    ("postgresql://u:Zq8:wK3v@db.example/mlpred", "Zq8:wK3v", "%3A"),
    ("postgresql://u:Zq8wK3v@db.example:abc/mlpred", PASSWORD, "port"),
    ("postgresql://u:Zq8wK3v@db.example:99999/mlpred", PASSWORD, "port"),
    ("postgresql://u:Zq8wK3v@db.example:0/mlpred", PASSWORD, "port"),
    ("postgresql://u:Zq8wK3v@db.example:-1/mlpred", PASSWORD, "port"),
    ("postgresql://u:Zq8wK3v@db.example:/mlpred", PASSWORD, "port"),
    ("postgresql://u:Zq8wK3v@db.example:5_432/mlpred", PASSWORD, "port"),
    ("postgresql://u:Zq8wK3v@db.example:5432:5433/mlpred", PASSWORD, "port"),
    # No '@': the "port" is the password the user meant; it must not be echoed.
    ("postgresql://u:Zq8wK3v/mlpred", PASSWORD, "port"),
    ("postgresql://u:Zq8wK3v@db.example/mlpred?port=abc", PASSWORD, "port"),
    ("postgresql://u:Zq8\nwK3v@db.example/mlpred", "Zq8\nwK3v", "control character"),
    ("postgresql://u:Zq8wK3v@db.example/mlpred\nselect", PASSWORD, "control character"),
    ("postgresql://u:Zq8\twK3v@db.example/mlpred", "Zq8\twK3v", "control character"),
    ("postgresql://u:Zq8wK3v@db example/mlpred", PASSWORD, "space"),
    ("postgresql://u:Zq8wK3v@[::1/mlpred", PASSWORD, "IPv6"),
    ("postgresql://u:Zq8%ZZwK3v@db.example/mlpred", "Zq8%ZZwK3v", "%25"),
    ("postgresql://u:Zq8wK3v%@db.example/mlpred", "Zq8wK3v%", "%25"),
    ("postgresql://u:Zq8wK3v@db.example/ml%zzpred", PASSWORD, "%25"),
    ("postgresql://u:Zq8wK3v@db.example/mlpred?password=Zq8wK3v", PASSWORD, "twice"),
    ("postgresql://u:Zq8wK3v@db.example/mlpred?foo=bar", PASSWORD, "foo"),
    ("postgresql:/u:Zq8wK3v@db.example/mlpred", PASSWORD, "two slashes"),
    ("postgres ql://u:Zq8wK3v@db.example/mlpred", PASSWORD, "scheme://"),
    ("sqlite://u:Zq8wK3v@db.example//tmp/x.db", PASSWORD, "SQLite URL names a file"),
    ("sqlite://db.example/x.db", PASSWORD, "SQLite URL names a file"),
    ("sqlite:////tmp/x.db?timeout=abc", PASSWORD, "timeout=abc"),
    ("sqlite:////tmp/x.db?mode=ro", PASSWORD, "uri=true"),
]


def _pieces(password: str) -> set[str]:
    """Every 3-character substring: a message containing none of them contains no piece of
    the password of 3 characters or more."""
    return {password[start : start + 3] for start in range(len(password) - 2)}


def _leaked(text: str, password: str) -> list[str]:
    return sorted(piece for piece in _pieces(password) if piece in text)


@pytest.mark.parametrize(("url", "password", "phrase"), MALFORMED)
def test_malformed_url_is_one_line_without_the_password(
    url: str, password: str, phrase: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        normalize_url(url)
    message = str(raised.value)
    assert len(message.splitlines()) == 1, message
    assert phrase in message, message
    assert _leaked(message, password) == [], message


@pytest.mark.parametrize(("url", "password", "phrase"), MALFORMED)
def test_cli_refuses_malformed_url_from_option_and_environment(
    url: str, password: str, phrase: str
) -> None:
    for args, env in ((("--db", url, "recent"), None), (("recent",), {DATABASE_URL_ENV: url})):
        code, out, err = run_cli(*args, env=env)
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("Error: ") and phrase in lines[0], err
        assert "Traceback" not in err
        assert _leaked(out + err, password) == [], err


@pytest.mark.parametrize("url", MALFORMED, ids=lambda case: case[0][:40])
def test_mask_text_never_shows_a_piece_of_the_password(url: tuple[str, str, str]) -> None:
    text, password, _ = url
    assert _leaked(mask_text(text), password) == []


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("postgresql://u:p%40ss@db.example/mlpred", "p@ss"),
        ("postgresql://u:p%3Ass@db.example/mlpred", "p:ss"),
        ("postgresql://u:p%25ss%2Fw@db.example:5432/mlpred", "p%ss/w"),
        ("postgresql://u:pa/ss@db.example/mlpred", "pa/ss"),
        ("postgresql://u:sec ret@db.example/mlpred", "sec ret"),
        ("postgresql://u:Zq8wK3v@[::1]:5432/mlpred", PASSWORD),
        ("postgres://u@db.example/mlpred?password=Zq8wK3v", PASSWORD),
        ("POSTGRESQL://u:Zq8wK3v@db.example/mlpred", PASSWORD),
        ("postgresql://u@db.example/mlpred", None),
    ],
)
def test_well_formed_urls_parse(url: str, password: str | None) -> None:
    parsed = normalize_url(url)
    assert parsed.drivername == "postgresql+psycopg"
    assert parsed.password == password
    assert parsed.database == "mlpred"
    if password is not None:
        assert password not in mask_url(parsed)
        assert "***" in mask_url(parsed)


def test_secret_query_parameters_are_masked() -> None:
    url = normalize_url("postgresql://u@db.example/mlpred?sslpassword=Zq8wK3v&sslmode=require")
    assert _leaked(mask_url(url), PASSWORD) == []
    assert "sslpassword=***" in mask_url(url)
    assert "sslmode=require" in mask_url(url)


def test_url_objects_with_awkward_credentials_round_trip() -> None:
    user, password, database = "u@x", "p@ss:w/rd% ?#", "ml@pred"
    awkward = URL.create("postgresql", user, password, "db.example", database=database)
    parsed = database_url(awkward)
    assert (parsed.username, parsed.password, parsed.database) == (user, password, database)


def test_bare_path_is_taken_literally(tmp_path: Path) -> None:
    path = tmp_path / "odd?name%41#.db"
    assert normalize_url(str(path)).database == str(path)
    assert normalize_url(f"sqlite:///{quote(str(path))}").database == str(path)
    # In a SQLite file path an '@' is just a character, however many there are.
    assert normalize_url(f"sqlite:///{tmp_path}/a@b@c.db").database == f"{tmp_path}/a@b@c.db"


def test_sqlite_url_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert normalize_url("sqlite:///~/mlpred.db").database == str(tmp_path / "mlpred.db")


def test_empty_database_url_never_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, "  ")
    with pytest.raises(ConfigError, match=DATABASE_URL_ENV):
        resolve_database_url()
    with pytest.raises(ConfigError, match="--db is empty"):
        resolve_database_url("")
    for args, env in (
        (("--db", "", "recent"), None),
        (("recent",), {DATABASE_URL_ENV: ""}),
    ):
        code, _, err = run_cli(*args, env=env)
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1, err


def test_percent_escaped_url_connects(backend: str, empty_db_url: str, tmp_path: Path) -> None:
    """A percent-escaped password (PostgreSQL here runs with trust authentication, so any
    password is accepted) or file name reaches the server or file it names."""
    if backend == "sqlite":
        path = tmp_path / "my data@2024 100%.db"
        text = f"sqlite:///{quote(str(path))}"
    else:
        awkward = make_url(empty_db_url).set(password="p@ss:w/rd%")
        text = awkward.render_as_string(hide_password=False)
        assert "p%40ss%3Aw%2Frd%25" in text
    engine = create_engine(normalize_url(text))
    try:
        check_connection(engine)
    finally:
        engine.dispose()
    if backend == "sqlite":
        assert path.exists()
    code, out, err = run_cli("--db", text, "init-db")
    assert code == 0, err
    assert "p@ss" not in out + err and "p%40ss" not in out + err


@pytest.mark.postgres_only
def test_issue_example_url_connects(backend: str, empty_db_url: str) -> None:
    """``postgresql://postgres:p%40ss@host:port/db``, written as in the issue."""
    url = make_url(empty_db_url)
    text = f"postgresql://{url.username}:p%40ss@{url.host}:{url.port or 5432}/{url.database}"
    engine = create_engine(normalize_url(text))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
