"""``mlpred check`` end to end on planted scenarios (tests/monitor_scenarios.py), both
backends: real rows, real rollups, the library call and the CLI with its exit codes, JSON
document, ``--quiet``, alert state across runs and a real webhook receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from sqlalchemy.engine import Engine

from mlpred_cli.errors import InputError
from mlpred_cli.monitor.alert_state import list_alerts
from mlpred_cli.monitor.check import run_check
from mlpred_cli.monitor.results import CheckReport, CheckResult, Severity
from mlpred_cli.monitor.settings import MonitorSettings
from mlpred_cli.outcomes.rollups import rebuild_rollups
from mlpred_cli.store.database import create_engine
from mlpred_cli.store.monitor_reads import drift_sample
from mlpred_cli.store.tables import predictions_table
from tests.cli_helpers import run_cli
from tests.factories import insert_predictions
from tests.monitor_scenarios import Scenario, scenario_rows

pytestmark = pytest.mark.timeout(300)


def load(engine: Engine, scenario: Scenario) -> datetime:
    """Insert the scenario and build its rollups; returns the moment to check at."""
    rows = scenario_rows(scenario)
    keys = {key for row in rows for key in row}
    rows = [{key: row.get(key) for key in keys} for row in rows]
    for start in range(0, len(rows), 5_000):
        insert_predictions(engine, rows[start : start + 5_000])
    assert rebuild_rollups(engine).status == "done"
    return scenario.end + timedelta(minutes=5)


@pytest.fixture
def scenario_engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine(db_url)
    yield engine
    engine.dispose()


def of(report: CheckReport, check: str, metric: str | None = None) -> list[CheckResult]:
    return [
        r for r in report.results if r.check == check and (metric is None or r.metric == metric)
    ]


def test_an_accuracy_drop_is_critical_within_days_and_names_the_horizon(
    scenario_engine: Engine,
) -> None:
    scenario = Scenario(days=38, degrade_from=31)
    now = load(scenario_engine, scenario)
    report = run_check(scenario_engine, only=["performance"], days=7, now=now, record=False)
    critical = [r for r in of(report, "performance") if r.severity is Severity.CRITICAL]
    assert critical, [r.message for r in report.results]
    assert report.status is Severity.CRITICAL
    assert {r.scope.horizon for r in critical} & {"15m", "1h"}
    assert all(r.scope.model_version == "v1" and r.scope.horizon for r in critical)
    assert any("accuracy" in r.metric for r in critical)


def test_a_stable_model_raises_no_critical(scenario_engine: Engine) -> None:
    now = load(scenario_engine, Scenario(days=38, seed=11))
    report = run_check(scenario_engine, days=7, now=now, record=False)
    assert [r.message for r in report.results if r.severity is Severity.CRITICAL] == []
    performance = of(report, "performance")
    assert performance and all(r.severity is not Severity.UNKNOWN for r in performance)
    assert of(report, "drift", "psi:features_mean")[0].severity is Severity.OK


def test_a_feature_mean_shift_of_half_a_reference_sd_is_flagged(
    scenario_engine: Engine,
) -> None:
    now = load(scenario_engine, Scenario(days=24, shift_from=17))
    report = run_check(scenario_engine, only=["drift"], days=7, now=now, record=False)
    [mean] = of(report, "drift", "psi:features_mean")
    assert mean.severity in (Severity.WARNING, Severity.CRITICAL), mean.message
    assert mean.details["effect"] == pytest.approx(0.5, abs=0.15)
    assert mean.threshold is not None and mean.value is not None and mean.value > mean.threshold
    assert mean.n is not None and mean.details["n"] > 0
    [std] = of(report, "drift", "psi:features_std")
    assert std.severity is Severity.OK, std.message


def test_a_symbol_that_stops_logging_is_flagged_by_freshness(scenario_engine: Engine) -> None:
    scenario = Scenario(days=16, stopped_symbol="ETHUSDT", stop_before_end=timedelta(hours=6))
    now = load(scenario_engine, scenario)
    report = run_check(scenario_engine, only=["freshness"], days=1, now=now, record=False)
    stale = {r.scope.symbol: r for r in of(report, "freshness", "stale_minutes") if r.scope.symbol}
    assert stale["ETHUSDT"].severity is Severity.CRITICAL
    assert stale["BTCUSDT"].severity is Severity.OK
    assert report.status is Severity.CRITICAL


def test_a_young_model_version_is_in_its_reference_period_not_alarmed(
    scenario_engine: Engine,
) -> None:
    now = load(scenario_engine, Scenario(days=3))
    report = run_check(scenario_engine, only=["performance", "drift"], now=now, record=False)
    assert {(r.check, r.metric, r.severity) for r in report.results} == {
        ("performance", "reference_period", Severity.OK),
        ("drift", "reference_period", Severity.OK),
    }
    assert "reference period" in report.results[0].message
    assert report.status is Severity.OK


def test_without_matured_outcomes_performance_is_unknown(scenario_engine: Engine) -> None:
    now = load(scenario_engine, Scenario(days=20, outcomes=False))
    report = run_check(scenario_engine, only=["performance"], now=now, record=False)
    assert report.results
    assert {r.severity for r in report.results} == {Severity.UNKNOWN}
    assert report.status is Severity.UNKNOWN
    assert "matured" in report.results[0].message


# ---------------------------------------------------------------- the CLI


class Receiver(BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        Receiver.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/secret-token"
    server.shutdown()
    server.server_close()


def test_cli_check_exit_codes_json_alert_state_and_webhook(
    db_url: str, scenario_engine: Engine, receiver: str
) -> None:
    load(scenario_engine, Scenario(days=16, stopped_symbol="ETHUSDT"))
    args = ("--db", db_url, "check", "--only", "freshness", "--days", "1")
    code, out, err = run_cli(*args, "--format", "json", "--webhook", receiver)
    assert code == 2, err
    document = json.loads(out)
    assert document["status"] == "CRITICAL" and document["exit_code"] == 2
    assert {"generated_at", "windows", "checks"} <= set(document)
    entry = next(c for c in document["checks"] if c["scope"]["symbol"] == "ETHUSDT")
    assert set(entry) >= {"name", "scope", "metric", "value", "threshold", "n", "severity"}
    assert entry["severity"] == "CRITICAL" and len(entry["fingerprint"]) == 16
    assert entry["fingerprint"] in document["alerts"]["opened"]
    assert document["webhook"]["error"] is None and "secret-token" not in out
    [body] = Receiver.bodies
    assert body["status"] == "firing" and "ETHUSDT" in body["text"]

    # The second run updates the alert instead of repeating it: nothing posted.
    code, out, _ = run_cli(*args, "--format", "json", "--webhook", receiver)
    assert code == 2
    again = json.loads(out)
    assert again["alerts"]["opened"] == [] and entry["fingerprint"] in again["alerts"]["ongoing"]
    assert len(Receiver.bodies) == 1

    code, out, _ = run_cli("--db", db_url, "alerts", "--open", "--format", "json")
    assert code == 0
    [alert] = [a for a in json.loads(out) if a["symbol"] == "ETHUSDT"]
    assert alert["fingerprint"] == entry["fingerprint"] and alert["resolved_at"] is None

    code, out, _ = run_cli(*args)
    assert code == 2 and "CRITICAL" in out.splitlines()[0] and "ETHUSDT" in out
    table = [line for line in out.splitlines() if line.startswith(" ") or "───" in line]
    assert table and all(len(line) <= 80 for line in table)

    # --changes-only: the alert is ongoing, nothing changed, nothing printed; exit code kept
    code, out, _ = run_cli(*args, "--changes-only")
    assert (code, out) == (2, "")

    code, out, _ = run_cli("--db", db_url, "alerts")
    assert code == 0 and "ETHUSDT" in out and "CRITICAL" in out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_cli_quiet_prints_nothing_when_ok(db_url: str, scenario_engine: Engine) -> None:
    load(scenario_engine, Scenario(days=16))
    args = ("--db", db_url, "check", "--only", "freshness", "--days", "1")
    code, out, err = run_cli(*args, "--quiet")
    assert (code, out, err) == (0, "", "")
    code, out, _ = run_cli(*args)
    assert code == 0 and out.startswith("mlpred check OK")


@pytest.mark.sqlite_only
def test_cli_usage_errors_and_an_unreachable_database_exit_unknown(db_url: str) -> None:
    code, _, err = run_cli("--db", db_url, "check", "--no-such-flag")
    assert code == 3 and "Traceback" not in err
    code, out, _ = run_cli("--db", db_url, "check", "--only", "drift,vibes")
    assert code == 3 and "vibes" in out
    code, out, _ = run_cli("--db", db_url, "check", "--days", "-1")
    assert code == 3 and "--days" in out
    code, out, _ = run_cli("--db", db_url, "check", "--reference", "2026-01-01")
    assert code == 3 and "SINCE..UNTIL" in out
    unreachable = "postgresql://nobody@127.0.0.1:1/none"
    code, out, _ = run_cli("--db", unreachable, "check", "--format", "json")
    assert code == 3
    document = json.loads(out)
    assert document["status"] == "UNKNOWN" and document["error"]
    assert datetime.fromisoformat(document["generated_at"]).tzinfo is not None
    assert datetime.now(UTC) >= datetime.fromisoformat(document["generated_at"])


# ---------------------------------------------------------------- review findings


def test_a_narrow_run_never_shares_or_resolves_the_whole_runs_alerts(
    scenario_engine: Engine,
) -> None:
    now = load(scenario_engine, Scenario(days=38, degrade_from=31))
    full = run_check(scenario_engine, only=["performance"], days=7, now=now)
    assert full.alerts is not None and full.alerts.opened
    narrow = run_check(scenario_engine, only=["performance"], symbol="BTCUSDT", days=7, now=now)
    assert all(r.scope.symbol == "BTCUSDT" for r in narrow.results)
    # model-level figures of one symbol's rows are not the model's: other fingerprints
    # (a per-symbol test is the same figure either way, and may share one)
    model_level = {r.fingerprint for r in full.results if r.scope.symbol is None}
    assert model_level and not {r.fingerprint for r in narrow.results} & model_level
    assert narrow.alerts is not None and narrow.alerts.resolved == []
    assert set(full.alerts.opened) <= {
        a["fingerprint"] for a in list_alerts(scenario_engine, open_only=True)
    }


def test_a_past_window_leaves_the_alert_state_alone(scenario_engine: Engine) -> None:
    now = load(scenario_engine, Scenario(days=38, degrade_from=31))
    live = run_check(scenario_engine, only=["performance"], days=7, now=now)
    assert live.alerts is not None and live.alerts.opened
    past = run_check(
        scenario_engine,
        only=["performance"],
        until=now - timedelta(days=9),
        days=None,
        since=now - timedelta(days=16),
        now=now,
    )
    assert past.alerts is None and any("alert state was left alone" in n for n in past.notes)
    assert len(list_alerts(scenario_engine, open_only=True)) == len(live.alerts.opened)


def test_a_column_that_stops_being_logged_is_critical(scenario_engine: Engine) -> None:
    scenario = Scenario(days=24, drop_column="features_std", drop_from=18)
    now = load(scenario_engine, scenario)
    report = run_check(scenario_engine, only=["drift"], days=5, now=now, record=False)
    [gone] = of(report, "drift", "psi:features_std")
    assert gone.severity is Severity.CRITICAL and "no longer logged" in gone.message
    assert of(report, "drift", "psi:features_mean")[0].severity is Severity.OK


def test_the_drift_sample_keeps_every_symbol_of_a_kept_candle(scenario_engine: Engine) -> None:
    scenario = Scenario(days=4, symbols=("AUSDT", "BUSDT", "CUSDT", "DUSDT"))
    load(scenario_engine, scenario)
    with scenario_engine.connect() as conn:
        frame, total = drift_sample(
            conn,
            symbol=None,
            model_version="v1",
            since=scenario.start,
            until=scenario.end,
            columns=["features_mean"],
            max_rows=300,
        )
    assert total == 4 * 4 * 96 and 150 <= len(frame) <= 450
    counts = frame["symbol"].value_counts()
    assert set(counts.index) == set(scenario.symbols) and counts.nunique() == 1


def test_the_day_after_the_reference_ends_is_ok_not_unknown(scenario_engine: Engine) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    scenario = Scenario(days=15, start_at=today - timedelta(days=15))
    now = load(scenario_engine, scenario)  # the reference ended at yesterday's midnight
    report = run_check(scenario_engine, only=["performance"], now=now, record=False)
    assert [(r.metric, r.severity) for r in report.results] == [("reference_period", Severity.OK)]


def test_archived_reference_rows_make_drift_not_judged_not_unknown(
    scenario_engine: Engine,
) -> None:
    scenario = Scenario(days=24)
    now = load(scenario_engine, scenario)
    first_day = scenario.start.date()
    cut = datetime.combine(first_day + timedelta(days=14), datetime.min.time(), UTC)
    with scenario_engine.begin() as conn:  # as archive_predictions leaves it: rollups kept
        conn.execute(predictions_table.delete().where(predictions_table.c.datetime < cut))
    report = run_check(scenario_engine, only=["drift"], now=now, record=False)
    [result] = report.results
    assert (result.metric, result.severity) == ("reference_rows", Severity.OK)
    assert "no reference row left" in result.message


class FlakyReceiver(BaseHTTPRequestHandler):
    failures = 0
    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if FlakyReceiver.failures > 0:
            FlakyReceiver.failures -= 1
            self.send_response(503)
        else:
            FlakyReceiver.bodies.append(body)
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_failed_webhook_delivery_is_sent_by_the_next_run(scenario_engine: Engine) -> None:
    FlakyReceiver.failures, FlakyReceiver.bodies = 1, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    once = MonitorSettings(webhook_attempts=1)
    try:
        now = load(scenario_engine, Scenario(days=16, stopped_symbol="ETHUSDT"))
        args: dict[str, Any] = {"only": ["freshness"], "webhook": url, "settings": once}
        first = run_check(scenario_engine, now=now, **args)
        assert first.webhook is not None and first.webhook.error is not None
        assert first.status is Severity.CRITICAL  # the failed post never changes the verdict
        second = run_check(scenario_engine, now=now + timedelta(minutes=15), **args)
        assert second.webhook is not None and second.webhook.error is None
        [body] = FlakyReceiver.bodies
        assert "ETHUSDT" in body["text"]
        third = run_check(scenario_engine, now=now + timedelta(minutes=30), **args)
        assert third.webhook is not None and third.webhook.sent == 0
        assert len(FlakyReceiver.bodies) == 1
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.sqlite_only
def test_naive_now_is_utc_and_a_reference_covering_the_window_is_refused(
    scenario_engine: Engine,
) -> None:
    now = load(scenario_engine, Scenario(days=3))
    aware = run_check(scenario_engine, only=["quality"], now=now, record=False)
    naive = run_check(scenario_engine, only=["quality"], now=now.replace(tzinfo=None), record=False)
    assert naive.windows == aware.windows
    with pytest.raises(InputError, match="reference must end before"):
        run_check(scenario_engine, reference=(now - timedelta(days=2), now), now=now, record=False)


def test_drift_waits_for_three_days_after_the_reference(scenario_engine: Engine) -> None:
    now = load(scenario_engine, Scenario(days=24, shift_from=17))
    report = run_check(scenario_engine, only=["drift"], now=now)
    assert report.alerts is not None and report.alerts.opened  # the planted shift
    # A one-day window follows the reference by more than a day but less than three:
    # drift is not judged, and the open drift alerts are neither resolved nor expired.
    short = run_check(scenario_engine, only=["drift"], days=1, now=now)
    [result] = short.results
    assert (result.metric, result.severity) == ("window", Severity.OK)
    assert "drift needs 3 days" in result.message
    assert short.alerts is not None and short.alerts.resolved == []
    assert len(list_alerts(scenario_engine, open_only=True)) == len(report.alerts.opened)
