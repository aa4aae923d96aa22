"""Alert state across ``mlpred check`` runs (``ml_alerts``), on both backends: repeated runs
update one row per fingerprint, an OK verdict resolves, a comeback reopens, UNKNOWN and
unjudged fingerprints are left alone, and concurrent runs never duplicate a row."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlpred_cli.monitor.alert_state import list_alerts, mark_sent, record_alerts
from mlpred_cli.monitor.results import CheckResult, Scope, Severity
from mlpred_cli.store.tables import alerts_table

T0 = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def result(
    severity: Severity, *, metric: str = "accuracy_cusum", symbol: str | None = None
) -> CheckResult:
    return CheckResult(
        "performance",
        metric,
        Scope(symbol=symbol, model_version="v1", horizon="1h"),
        severity,
        9.5 if severity is not Severity.OK else 1.0,
        8.0,
        1200,
        f"accuracy 1h {severity.name}",
    )


def count_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(alerts_table)).scalar_one())


def test_repeated_runs_update_one_row_and_ok_resolves(engine: Engine) -> None:
    first = record_alerts(engine, [result(Severity.WARNING)], T0)
    assert len(first.changes.opened) == 1 and first.firing[0].severity is Severity.WARNING
    fingerprint = first.changes.opened[0]

    later = T0 + timedelta(minutes=15)
    second = record_alerts(engine, [result(Severity.WARNING)], later)
    assert second.changes.ongoing == [fingerprint]
    # never delivered yet: still pending for a webhook; once sent, no longer
    assert second.changes.opened == [] and second.pending() == [fingerprint]
    mark_sent(engine, second, later)
    assert record_alerts(engine, [result(Severity.WARNING)], later).firing == []
    assert count_rows(engine) == 1
    [row] = list_alerts(engine)
    assert row["first_seen"] == T0 and row["last_seen"] == later
    assert row["resolved_at"] is None and row["severity"] == "WARNING"
    assert row["check_name"] == "performance" and row["horizon"] == "1h" and row["n"] == 1200

    third = record_alerts(engine, [result(Severity.CRITICAL)], later + timedelta(minutes=15))
    assert third.changes.escalated == [fingerprint] and len(third.firing) == 1

    resolved_at = later + timedelta(hours=1)
    fourth = record_alerts(engine, [result(Severity.OK)], resolved_at)
    assert fourth.changes.resolved == [fingerprint]
    assert fourth.resolved_rows[0]["first_seen"] == T0
    # an undelivered resolution is sent again by the next run, until delivered
    again = record_alerts(engine, [result(Severity.OK)], resolved_at)
    assert [row["fingerprint"] for row in again.resolved_rows] == [fingerprint]
    mark_sent(engine, again, resolved_at)
    assert record_alerts(engine, [result(Severity.OK)], resolved_at).resolved_rows == []
    [row] = list_alerts(engine)
    assert row["resolved_at"] == resolved_at and row["severity"] == "CRITICAL"
    assert list_alerts(engine, open_only=True) == []

    # Still OK: nothing more to resolve.
    assert record_alerts(engine, [result(Severity.OK)], resolved_at).changes.resolved == []


def test_a_comeback_reopens_the_same_row_with_a_new_first_seen(engine: Engine) -> None:
    record_alerts(engine, [result(Severity.CRITICAL)], T0)
    record_alerts(engine, [result(Severity.OK)], T0 + timedelta(hours=1))
    back = T0 + timedelta(hours=5)
    update = record_alerts(engine, [result(Severity.CRITICAL)], back)
    assert len(update.changes.opened) == 1
    assert count_rows(engine) == 1
    [row] = list_alerts(engine, open_only=True)
    assert row["first_seen"] == back and row["resolved_at"] is None


def test_unknown_and_unjudged_fingerprints_are_left_alone(engine: Engine) -> None:
    record_alerts(
        engine,
        [result(Severity.WARNING, symbol="BTCUSDT"), result(Severity.WARNING, symbol="ETHUSDT")],
        T0,
    )
    # A run that judged only BTCUSDT (say --symbol BTCUSDT), and could not judge it.
    update = record_alerts(engine, [result(Severity.UNKNOWN, symbol="BTCUSDT")], T0)
    assert update.changes.resolved == [] and update.changes.ongoing == []
    assert len(list_alerts(engine, open_only=True)) == 2
    # Judged OK: only BTCUSDT's alert resolves.
    update = record_alerts(engine, [result(Severity.OK, symbol="BTCUSDT")], T0)
    assert len(update.changes.resolved) == 1
    [still_open] = list_alerts(engine, open_only=True)
    assert still_open["symbol"] == "ETHUSDT"


def test_a_run_over_everything_expires_alerts_whose_subject_vanished(engine: Engine) -> None:
    record_alerts(engine, [result(Severity.CRITICAL, symbol="DEADUSDT")], T0)
    # a narrow run (or another check) never expires it ...
    later = T0 + timedelta(days=3)
    other = CheckResult("drift", "psi:x", Scope(), Severity.OK, 0.0, 1.0, 10, "ok")
    kept = record_alerts(engine, [other], later, expire_checks=("drift",))
    assert kept.changes.resolved == [] and len(list_alerts(engine, open_only=True)) == 1
    # ... the same check run over everything with no result for it does
    expired = record_alerts(engine, [result(Severity.OK)], later, expire_checks=("performance",))
    assert len(expired.changes.resolved) == 1
    assert list_alerts(engine, open_only=True) == []


def test_concurrent_runs_never_duplicate_a_fingerprint(engine: Engine) -> None:
    results = [result(Severity.WARNING, metric=f"m{k}") for k in range(20)]
    errors: list[BaseException] = []

    def run(offset: int) -> None:
        try:
            record_alerts(engine, results, T0 + timedelta(seconds=offset))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert count_rows(engine) == 20
