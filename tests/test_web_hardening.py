"""What a review of the dashboard found, kept fixed: DNS rebinding of a server without a
token, changes the pulse must see (late rows, outcomes of rolled-up days), lenient cookies,
tokens a header can carry, the URL's own libpq options, HEAD on the stream, a port in use."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from mlpred_cli.errors import InputError
from mlpred_cli.store.database import create_engine
from mlpred_cli.web.app import create_app, dashboard_of
from mlpred_cli.web.auth import SESSION_COOKIE, authorised, session_value
from mlpred_cli.web.live import LiveData
from mlpred_cli.web.server import check_listen
from tests.factories import insert_predictions, prediction_row
from tests.web_support import BEARER, TOKEN, plant, read_only

pytestmark = pytest.mark.timeout(120)


def test_without_a_token_only_loopback_host_names_are_answered(db_url: str) -> None:
    plant(db_url, days=1, versions=("v1",))
    engine = read_only(db_url)
    try:
        app = create_app(engine)
        with TestClient(app, base_url="http://127.0.0.1:8050") as client:
            assert client.get("/api/status").status_code == 200
            for host in ("localhost:8050", "[::1]:8050", "127.0.0.1"):
                assert client.get("/api/status", headers={"Host": host}).status_code == 200
            for host in ("evil.example:8050", "evil.example", "127.0.0.1.evil.example", ""):
                response = client.get("/api/overview", headers={"Host": host})
                assert response.status_code == 421, host
                assert "predictions" not in response.text
        # with a token the token guards: any host name (a proxy's, a LAN name) is fine
        with TestClient(create_app(engine, token=TOKEN)) as client:
            assert client.get("/api/status", headers=BEARER).status_code == 200
    finally:
        engine.dispose()


def test_the_pulse_sees_late_rows_and_outcomes_of_rolled_up_days(db_url: str) -> None:
    plant(db_url, days=2, versions=("v1",))
    writer = create_engine(db_url)
    engine = read_only(db_url)
    try:
        live = LiveData(engine)
        assert live.poll() is True
        assert live.poll() is False  # nothing moved
        before = live.status()["newest_id"]
        # a row logged late: its time is a day old, the feed's newest rows do not change
        late = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1, minutes=7)
        insert_predictions(writer, [prediction_row("LATEUSDT", late, model_version="v1")])
        assert live.poll() is True
        assert live.status()["newest_id"] > before
        # an outcome filled for an already rolled-up day refreshes its rollups in place
        with writer.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE ml_prediction_daily SET scored = scored + 1, correct = correct + 1 "
                    "WHERE day = (SELECT max(day) FROM ml_prediction_daily)"
                )
            )
        assert live.poll() is True
        assert live.poll() is False
    finally:
        engine.dispose()
        writer.dispose()


@pytest.mark.parametrize(
    "others",
    ["a=b c; {}", "{}; a=b c", 'x={{"k": 1}}; {}', 'x="unterminated; {}', "a=b\\c; {}"],
)
def test_a_session_cookie_beside_odd_cookies_still_signs_in(others: str) -> None:
    cookie = others.format(f"{SESSION_COOKIE}={session_value(TOKEN)}")
    scope = {"type": "http", "headers": [(b"cookie", cookie.encode("latin-1"))]}
    assert authorised(scope, TOKEN)
    forged = others.format(f"{SESSION_COOKIE}={session_value(TOKEN + 'x')}")
    assert not authorised({"type": "http", "headers": [(b"cookie", forged.encode())]}, TOKEN)


@pytest.mark.parametrize(
    "token", ["abcdefghijklmnop ", "pässwörd-0123456789", "abcd efgh ijkl mnop"]
)
def test_tokens_a_bearer_header_cannot_carry_are_refused(token: str) -> None:
    with pytest.raises(InputError, match="printable ASCII"):
        check_listen("127.0.0.1", 8050, token, 15)


def test_the_urls_own_libpq_options_are_kept(db_url: str, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("libpq options are PostgreSQL's")
    plant(db_url, days=1, versions=("v1",))
    separator = "&" if "?" in db_url else "?"
    engine = read_only(f"{db_url}{separator}options=-c%20work_mem%3D77MB")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW work_mem").scalar() == "77MB"
            assert conn.exec_driver_sql("SHOW default_transaction_read_only").scalar() == "on"
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "10s"
    finally:
        engine.dispose()


def test_head_on_the_stream_answers_at_once(db_url: str) -> None:
    plant(db_url, days=1, versions=("v1",))
    engine = read_only(db_url)
    try:
        app = create_app(engine, token=TOKEN)
        with TestClient(app) as client:
            response = client.head("/events", headers=BEARER)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert dashboard_of(app).hub.clients == 0
    finally:
        engine.dispose()


def test_a_port_in_use_is_one_line_and_exit_1(db_url: str) -> None:
    plant(db_url, days=1, versions=("v1",))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "mlpred_cli", "--db", db_url, "serve", "--port", str(port)],
            capture_output=True,
            timeout=60,
            env=dict(os.environ),
        )
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert lines == [f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"]
