"""``mlpred serve`` as a user runs it: a real process on a free port, stopped with Ctrl-C,
and its one-line refusals (no extra, no token off loopback, no database)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.web_support import TOKEN, plant

pytestmark = pytest.mark.timeout(120)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _mlpred(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mlpred_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


def test_serve_answers_with_the_token_and_stops_on_ctrl_c(db_url: str) -> None:
    plant(db_url, days=2, versions=("v1",))
    port = _free_port()
    process = _mlpred(
        "--db", db_url, "serve", "--port", str(port), "--refresh", "1",
        env={"MLPRED_WEB_TOKEN": TOKEN},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = _get(f"{base}/api/status", TOKEN)
                if status != 200 or json.loads(body)["data_version"] is not None:
                    break  # answered, and the first poll is done
            except (urllib.error.URLError, ConnectionError) as error:
                if time.monotonic() > deadline or process.poll() is not None:
                    output = process.stderr.read().decode() if process.stderr else ""
                    raise AssertionError(output) from error
            assert time.monotonic() < deadline, "the first poll did not finish"
            time.sleep(0.1)
        assert status == 200
        assert json.loads(body)["newest_id"] is not None
        assert _get(f"{base}/api/status")[0] == 401
        status, body = _get(f"{base}/api/overview?days=2", TOKEN)
        assert status == 200
        assert json.loads(body)["predictions"] > 0
        # a page left open: its event stream must not hold up or spoil the stop
        stream = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        stream.request("GET", "/events", headers={"Authorization": f"Bearer {TOKEN}"})
        events = stream.getresponse()
        assert events.status == 200
        assert events.readline() == b"retry: 3000\n"
    finally:
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    stderr = process.stderr.read().decode() if process.stderr else ""
    assert process.returncode == 0, stderr
    assert time.monotonic() - stopped_at < 5  # the open stream ended, not waited out
    assert TOKEN not in stderr  # the token is never echoed
    assert "Traceback" not in stderr and "Exception" not in stderr, stderr


def test_a_non_loopback_host_needs_a_token() -> None:
    code, _out, err = run_cli("serve", "--host", "0.0.0.0")
    assert code == 2
    assert "refusing to listen on 0.0.0.0 without a token" in err
    assert len(err.strip().splitlines()) == 1


def test_a_short_or_empty_token_is_refused() -> None:
    code, _out, err = run_cli("serve", "--token", "short")
    assert code == 2 and "at least 16 characters" in err
    code, _out, err = run_cli("serve", env={"MLPRED_WEB_TOKEN": ""})
    assert code == 2 and "token is empty" in err


def test_a_missing_database_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    process = _mlpred("--db", str(missing), "serve", "--port", str(_free_port()))
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0]
    assert not missing.exists()


def test_without_the_web_extra_serve_names_the_install() -> None:
    code = (
        "import sys; sys.modules['uvicorn'] = None; sys.modules['starlette'] = None\n"
        "sys.argv = ['mlpred', 'serve']\n"
        "from mlpred_cli.cli import main\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 2
    message = result.stderr.decode().strip()
    assert "missing: starlette, uvicorn" in message
    assert "pip install 'mlpred-cli[web]'" in message
    assert len(message.splitlines()) == 1
