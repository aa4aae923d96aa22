"""``mlpred serve``'s defences: the read-only engine (writes fail on both backends, the
schema must already be there), where the server agrees to listen, the security headers,
and errors that leak nothing."""

from __future__ import annotations

import itertools
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient
from typer.testing import CliRunner

import mlpred_cli
from mlpred_cli.cli import app as cli_app
from mlpred_cli.config import WEB_TOKEN_MIN_LENGTH
from mlpred_cli.errors import InputError, MlpredError, SchemaNotReady
from mlpred_cli.store.database import create_engine, run_autocommit
from mlpred_cli.store.read_only import create_read_only_engine
from mlpred_cli.store.tables import predictions_table
from mlpred_cli.web.app import create_app
from mlpred_cli.web.live import LiveSettings
from mlpred_cli.web.server import check_listen, is_loopback
from tests.factories import insert_predictions, prediction_row
from tests.web_support import BEARER, TOKEN, read_only

pytestmark = pytest.mark.both_layouts

P = predictions_table.c
PACKAGE_DIR = str(Path(mlpred_cli.__file__).resolve().parent)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _fingerprint(engine: Engine) -> tuple[Any, ...]:
    """What a write would change: row count, ids, symbols and outcomes of ml_predictions."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(P.id, P.symbol, P.actual_direction_15m, P.model_version).order_by(P.id)
        ).all()
        tables = sorted(sa.inspect(conn).get_table_names())
    return len(rows), tuple(tuple(row) for row in rows), tuple(tables)


def _seed(url: str) -> Engine:
    writer = create_engine(url)
    insert_predictions(writer, [prediction_row(symbol) for symbol in ("BTCUSDT", "ETHUSDT")])
    return writer


# --------------------------------------------------------------------------- read-only engine


def test_writes_through_the_apps_engine_fail(db_url: str, backend: str) -> None:
    writer = _seed(db_url)
    try:
        app = create_app(read_only(db_url), token=TOKEN)
        engine: Engine = app.app.state.dashboard.live.engine
        before = _fingerprint(writer)
        attempts = [
            lambda conn: conn.execute(predictions_table.insert(), [prediction_row("SOLUSDT")]),
            lambda conn: conn.execute(sa.update(predictions_table).values(symbol="HACKED")),
            lambda conn: conn.execute(
                sa.update(predictions_table).values(actual_direction_15m="LONG")
            ),
            lambda conn: conn.execute(sa.delete(predictions_table)),
            lambda conn: conn.exec_driver_sql("CREATE TABLE intruder (x integer)"),
        ]
        for attempt in attempts:
            with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
                attempt(conn)
        # nor outside an explicit transaction (autocommit-style driver statement)
        with pytest.raises(sa.exc.DBAPIError), engine.connect() as conn:
            conn.exec_driver_sql("DELETE FROM ml_predictions")
            conn.commit()
        assert _fingerprint(writer) == before
        with engine.connect() as conn:  # and it still reads
            assert conn.execute(sa.select(sa.func.count()).select_from(predictions_table)).scalar()
        engine.dispose()
    finally:
        writer.dispose()


def test_postgres_sessions_are_read_only_with_a_timeout(db_url: str, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL session settings")
    engine = create_read_only_engine(db_url, statement_timeout_ms=250)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW default_transaction_read_only").scalar() == "on"
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "250ms"
            assert conn.exec_driver_sql("SHOW TimeZone").scalar() == "UTC"
        started = time.monotonic()
        with pytest.raises(sa.exc.DBAPIError, match="statement timeout"), engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_sleep(5)")
        assert time.monotonic() - started < 4
    finally:
        engine.dispose()
    served = read_only(db_url)  # the helper the dashboard tests use: 10 s
    try:
        with served.connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "10s"
    finally:
        served.dispose()


def test_sqlite_is_opened_read_only_twice_over(db_url: str, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite file modes")
    writer = _seed(db_url)
    engine = read_only(db_url)
    try:
        before = _fingerprint(writer)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA query_only").scalar() == 1
            # lifting query_only is not enough: the file itself is opened mode=ro
            conn.exec_driver_sql("PRAGMA query_only=OFF")
            with pytest.raises(sa.exc.OperationalError, match="readonly"):
                conn.exec_driver_sql("DELETE FROM ml_predictions")
        assert _fingerprint(writer) == before
    finally:
        engine.dispose()
        writer.dispose()


def test_an_unmigrated_database_is_refused_and_left_alone(
    empty_db_url: str, backend: str, tmp_path: Path
) -> None:
    if backend == "sqlite":
        missing = tmp_path / "missing" / "nothing.db"
        with pytest.raises(MlpredError, match="does not exist"):
            create_read_only_engine(f"sqlite:///{missing}", statement_timeout_ms=1000)
        assert not missing.exists() and not missing.parent.exists()
        # an existing file without the schema
        path = Path(empty_db_url.removeprefix("sqlite:///"))
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE unrelated (x integer)")
        conn.close()
    with pytest.raises(SchemaNotReady, match="init-db"):
        create_read_only_engine(empty_db_url, statement_timeout_ms=1000)
    plain = sa.create_engine(empty_db_url)
    try:
        tables = set(sa.inspect(plain).get_table_names())
    finally:
        plain.dispose()
    assert tables == ({"unrelated"} if backend == "sqlite" else set())
    if backend == "sqlite":
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("empty")) == [
            "empty.db"
        ]


def test_a_database_that_went_away_is_a_503_without_a_trace(db_url: str, backend: str) -> None:
    writer = _seed(db_url)
    writer.dispose()
    engine = read_only(db_url)
    app = create_app(engine, token=TOKEN)
    client = TestClient(app)  # no lifespan: the first API call polls
    if backend == "sqlite":
        path = Path(db_url.removeprefix("sqlite:///"))
        path.rename(path.with_suffix(".gone"))
    else:
        url = sa.make_url(db_url)
        run_autocommit(url.set(database="postgres"), f'DROP DATABASE "{url.database}" WITH (FORCE)')
    engine.dispose()
    try:
        response = client.get("/api/overview", headers=BEARER)
        assert response.status_code == 503
        error = response.json()["error"]
        assert "\n" not in error and "Traceback" not in response.text
        assert PACKAGE_DIR not in response.text
        status = client.get("/api/status", headers=BEARER).json()
        assert status["data_version"] is None and status["error"]
        page = client.get("/", headers=BEARER)  # pages do not read the database
        assert page.status_code == 200
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- where it listens


LONG_TOKEN = "x" * WEB_TOKEN_MIN_LENGTH


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"])
def test_loopback_needs_no_token(host: str) -> None:
    assert is_loopback(host)
    check_listen(host, 8050, None, 15)
    check_listen(host, 8050, LONG_TOKEN, 15)


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "::", "192.168.1.20", "10.0.0.7", "172.16.4.2", "fe80::1", "dashboard.lan",
     "LOCALHOST", "127.1", "::ffff:127.0.0.1", ""],
)  # fmt: skip
def test_any_other_host_needs_a_token(host: str) -> None:
    with pytest.raises(InputError, match="token"):
        check_listen(host, 8050, None, 15)
    check_listen(host, 8050, LONG_TOKEN, 15)


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
@pytest.mark.parametrize(
    "token", ["short", "x" * (WEB_TOKEN_MIN_LENGTH - 1), "x" * 20 + "\n", "x" * 20 + "\x00"]
)
def test_a_short_or_unprintable_token_is_refused(host: str, token: str) -> None:
    with pytest.raises(InputError, match="token"):
        check_listen(host, 8050, token, 15)


@pytest.mark.parametrize(
    ("port", "refresh", "word"),
    [(0, 15, "port"), (65536, 15, "port"), (8050, 0, "refresh"), (8050, 3601, "refresh")],
)
def test_ports_and_refresh_are_checked(port: int, refresh: float, word: str) -> None:
    with pytest.raises(InputError, match=word):
        check_listen("127.0.0.1", port, None, refresh)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("extra", "word"),
    [
        ([], "without a token"),
        (["--token", "short"], "at least"),
        (["--token", ""], "empty"),
        (["--refresh", "0"], "refresh"),
    ],
    ids=["no-token", "short-token", "empty-token", "refresh"],
)
def test_serve_refuses_before_binding_or_opening_the_database(
    tmp_path: Path, extra: list[str], word: str
) -> None:
    database = tmp_path / "never-created.db"
    port = _free_port()
    with socket.socket() as holder:  # a serve that bound first would fail on this port instead
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("0.0.0.0", port))
        holder.listen()
        result = CliRunner().invoke(
            cli_app,
            ["--db", f"sqlite:///{database}", "serve", "--host", "0.0.0.0", "--port", str(port),
             *extra],
            env={"MLPRED_WEB_TOKEN": None, "MLPRED_DATABASE_URL": None},
            catch_exceptions=False,
        )  # fmt: skip
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert word in message
    assert "address" not in message.lower() and "Traceback" not in result.output
    assert not database.exists()
    assert result.stdout == ""


# --------------------------------------------------------------------------- headers, paths


def test_every_response_carries_the_security_headers(db_url: str) -> None:
    _seed(db_url).dispose()
    engine = read_only(db_url)
    try:
        app = create_app(engine, token=TOKEN, settings=LiveSettings(refresh_s=0.5))
        with TestClient(app) as client:
            responses = [
                client.get("/", headers=BEARER),
                client.get("/feed?days=0", headers=BEARER),
                client.get("/api/status", headers=BEARER),
                client.get("/api/overview?days=0", headers=BEARER),
                client.get("/api/nothing", headers=BEARER),
                client.get("/api/overview"),
                client.get("/"),
                client.get("/events"),
                client.get("/login?token=wrong"),
                client.get(f"/login?token={TOKEN}", follow_redirects=False),
                client.get("/static/dashboard.css"),
                client.get("/static/nothing.css"),
            ]
        for response in responses:
            where = f"{response.request.url.path} -> {response.status_code}"
            assert response.headers.get("content-security-policy") == CSP, where
            assert response.headers.get("x-content-type-options") == "nosniff", where
            assert response.headers.get("x-frame-options") == "DENY", where
            assert response.headers.get("referrer-policy") == "no-referrer", where
            assert "server" not in response.headers or "uvicorn" not in response.headers["server"]
    finally:
        engine.dispose()


TRAVERSALS = (
    "/static/%2e%2e/app.py",
    "/static/..%2fapp.py",
    "/static/%2e%2e/%2e%2e/web/app.py",
    "/static/vendor/%2e%2e/%2e%2e/auth.py",
    "/static/",
)


def test_static_files_stay_in_their_folder(db_url: str) -> None:
    engine = read_only(db_url)
    try:
        client = TestClient(create_app(engine, token=TOKEN))
        for path, headers in itertools.product(TRAVERSALS, ({}, BEARER)):
            response = client.get(path, headers=headers)
            assert response.status_code in (401, 404), response.status_code
            assert "def " not in response.text and "import" not in response.text
    finally:
        engine.dispose()
