"""deliver_alerts against a real HTTP server on 127.0.0.1: body shape, retries, give-up,
timeouts, and the URL's secret token never leaking into the outcome."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mlpred_cli.monitor.results import CheckResult, Scope, Severity
from mlpred_cli.monitor.settings import DEFAULT_SETTINGS
from mlpred_cli.monitor.webhook import ResolvedAlert, alert_payload, deliver_alerts, masked_url

TOKEN = "T0KEN-s3cret-xyz"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FAST = replace(DEFAULT_SETTINGS, webhook_timeout_s=0.5, webhook_attempts=3, webhook_backoff_s=0.05)


@dataclass
class Script:
    """What the server answers, in order (the last answer repeats), and what it got."""

    answers: list[tuple[int, float]] = field(default_factory=lambda: [(200, 0.0)])
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_answer(self) -> tuple[int, float]:
        with self.lock:
            index = min(len(self.received), len(self.answers)) - 1
            return self.answers[max(index, 0)]


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with script.lock:
                script.received.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
                )
            status, delay = script.next_answer()
            time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the client gave up waiting

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    """A webhook receiver: its base URL and its script."""
    script = Script()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()
    httpd.server_close()


def _critical() -> CheckResult:
    return CheckResult(
        check="freshness",
        metric="stale_minutes",
        scope=Scope(symbol="ETHUSDT"),
        severity=Severity.CRITICAL,
        value=300.0,
        threshold=240.0,
        n=None,
        message="ETHUSDT: no prediction for 5.0 h (limit 4.0 h): is the bot down?",
    )


def _warning() -> CheckResult:
    return CheckResult(
        check="quality",
        metric="duplicate_share",
        scope=Scope(model_version="v2"),
        severity=Severity.WARNING,
        value=0.07,
        threshold=0.05,
        n=1000,
        message="duplicate feature vectors: 7.00% (70 of 1000), limit 5.00%",
    )


def _resolved() -> ResolvedAlert:
    return ResolvedAlert(
        fingerprint="0123456789abcdef",
        check="freshness",
        metric="outcome_lag_minutes",
        scope=Scope(horizon="1h"),
        severity=Severity.WARNING,
        first_seen=NOW - timedelta(hours=2),
        resolved_at=NOW,
    )


def _deliver(url: str, **overrides: Any) -> Any:
    settings = replace(FAST, **overrides)
    return deliver_alerts(
        url,
        [_critical(), _warning()],
        [_resolved()],
        status=Severity.CRITICAL,
        generated_at=NOW,
        settings=settings,
    )


def test_body_is_alertmanager_shaped_with_chat_text(server: tuple[str, Script]) -> None:
    base, script = server
    outcome = _deliver(f"{base}/hooks/{TOKEN}")
    assert (outcome.sent, outcome.attempts, outcome.error) == (3, 1, None)
    assert outcome.url == base
    (request,) = script.received
    assert request["path"] == f"/hooks/{TOKEN}"
    assert request["headers"]["Content-Type"] == "application/json"
    body = request["body"]
    assert body["version"] == "4"
    assert body["status"] == "firing"
    firing, warning, resolved = body["alerts"]
    assert firing["status"] == "firing"
    assert firing["labels"] == {
        "alertname": "mlpred_freshness_stale_minutes",
        "check": "freshness",
        "metric": "stale_minutes",
        "severity": "critical",
        "symbol": "ETHUSDT",
    }
    assert firing["annotations"]["summary"] == _critical().message
    assert firing["fingerprint"] == _critical().fingerprint
    assert firing["startsAt"] == "2026-12-01T12:00:00Z"
    assert firing["endsAt"] == "0001-01-01T00:00:00Z"
    assert warning["labels"]["model_version"] == "v2"
    assert resolved["status"] == "resolved"
    assert resolved["labels"]["horizon"] == "1h"
    assert resolved["startsAt"] == "2026-12-01T10:00:00Z"
    assert resolved["endsAt"] == "2026-12-01T12:00:00Z"
    assert resolved["fingerprint"] == "0123456789abcdef"
    assert body["commonLabels"] == {}
    lines = body["text"].splitlines()
    assert lines[0] == "[CRITICAL] mlpred: 2 new, 1 resolved"
    assert lines[1].startswith("• [CRITICAL] freshness: ETHUSDT: no prediction")
    assert lines[2].startswith("• [WARNING] quality: duplicate")
    assert lines[3].startswith("• [RESOLVED] freshness outcome_lag_minutes (1h)")


def test_common_labels_and_resolved_only_status() -> None:
    body = alert_payload([], [_resolved()], status=Severity.OK, generated_at=NOW)
    assert body["status"] == "resolved"
    assert body["commonLabels"]["horizon"] == "1h"
    assert body["text"].startswith("[OK] mlpred: 0 new, 1 resolved")


def test_resolved_alerts_may_be_ml_alerts_rows() -> None:
    alert = _resolved()
    row = {
        "fingerprint": alert.fingerprint,
        "check_name": alert.check,
        "metric": alert.metric,
        "symbol": None,
        "model_version": None,
        "horizon": "1h",
        "severity": "WARNING",
        "value": 200.0,
        "message": "1h: outcomes 3.3 h behind",
        "first_seen": alert.first_seen,
        "last_seen": NOW,
        "resolved_at": NOW,
    }
    from_row = alert_payload([], [row], status=Severity.OK, generated_at=NOW)
    from_object = alert_payload([], [alert], status=Severity.OK, generated_at=NOW)
    assert from_row == from_object


def test_retries_after_a_500_then_succeeds(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(500, 0.0), (200, 0.0)]
    outcome = _deliver(f"{base}/{TOKEN}")
    assert (outcome.sent, outcome.attempts, outcome.error) == (3, 2, None)
    assert len(script.received) == 2


def test_gives_up_after_the_attempts_without_raising(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(503, 0.0)]
    outcome = _deliver(f"{base}/{TOKEN}", webhook_attempts=3)
    assert outcome.sent == 0
    assert outcome.attempts == 3
    assert len(script.received) == 3
    assert outcome.error == f"{base}: HTTP 503 Service Unavailable (after 3 attempts)"


def test_429_is_retried_and_400_is_not(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(429, 0.0), (200, 0.0)]
    assert _deliver(f"{base}/{TOKEN}").attempts == 2
    script.received.clear()
    script.answers = [(400, 0.0)]
    outcome = _deliver(f"{base}/{TOKEN}")
    assert (outcome.attempts, len(script.received), outcome.sent) == (1, 1, 0)
    assert outcome.error is not None and "HTTP 400" in outcome.error


def test_a_redirect_is_final_and_not_followed(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(302, 0.0)]
    outcome = _deliver(f"{base}/{TOKEN}")
    assert outcome.attempts == 1 and len(script.received) == 1
    assert outcome.error is not None and "HTTP 302" in outcome.error


def test_unreachable_port_fails_fast() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    outcome = _deliver(f"http://127.0.0.1:{port}/{TOKEN}", webhook_attempts=2)
    elapsed = time.monotonic() - started
    assert outcome.attempts == 2 and outcome.sent == 0
    assert outcome.error is not None and outcome.error.startswith(f"http://127.0.0.1:{port}: ")
    assert "refused" in outcome.error.lower()
    assert elapsed < 1.0  # refused at once; one 0.05 s pause


def test_a_server_slower_than_the_timeout_is_given_up(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(200, 2.0)]
    started = time.monotonic()
    outcome = _deliver(f"{base}/{TOKEN}", webhook_timeout_s=0.3, webhook_attempts=2)
    elapsed = time.monotonic() - started
    assert outcome.attempts == 2 and outcome.sent == 0
    assert outcome.error is not None and "timed out" in outcome.error
    # two 0.3 s attempts and a 0.05 s pause, with slack for a loaded machine
    assert 0.6 <= elapsed < 1.5


def test_nothing_to_send_makes_no_request(server: tuple[str, Script]) -> None:
    base, script = server
    outcome = deliver_alerts(
        f"{base}/{TOKEN}", [], [], status=Severity.OK, generated_at=NOW, settings=FAST
    )
    assert (outcome.sent, outcome.attempts, outcome.error) == (0, 0, None)
    assert script.received == []


def test_credentials_become_basic_auth_and_never_show(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(500, 0.0)]
    url = base.replace("http://", f"http://hook:{TOKEN}@") + f"/x?token={TOKEN}"
    outcome = _deliver(url, webhook_attempts=1)
    assert script.received[0]["headers"]["Authorization"].startswith("Basic ")
    assert outcome.url == base
    assert TOKEN not in repr(outcome) and "hook:" not in repr(outcome)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"https://hooks.slack.com/services/{TOKEN}", "https://hooks.slack.com"),
        (f"http://u:{TOKEN}@example.org:8080/p?q={TOKEN}#f", "http://example.org:8080"),
        (f"http://[::1]:9/{TOKEN}", "http://[::1]:9"),
        ("not a url", "<invalid URL>"),
        ("http://host:notaport/x", "<invalid URL>"),
    ],
)
def test_masked_url_keeps_only_scheme_host_and_port(url: str, shown: str) -> None:
    assert masked_url(url) == shown


def test_bad_urls_are_an_error_without_a_request() -> None:
    for url in ("ftp://example.org/x", "nonsense", f"http://host:port/{TOKEN}"):
        outcome = _deliver(url)
        assert outcome.attempts == 0 and outcome.sent == 0
        assert outcome.error is not None and TOKEN not in outcome.error
