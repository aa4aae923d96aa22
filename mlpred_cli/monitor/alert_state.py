"""Alert state across cron runs: a run's WARNING and CRITICAL results open (or keep open)
one ``ml_alerts`` row per fingerprint, its OK results resolve them.

- A fingerprint judged WARNING/CRITICAL with no open row is **opened** (a new row, or a
  resolved row reopened with a new ``first_seen``); one already open is **ongoing** (its
  ``last_seen`` and figures updated), or **escalated** when it went from WARNING to
  CRITICAL.
- A fingerprint judged OK whose row is open is **resolved**.
- UNKNOWN results and fingerprints the run did not judge (another ``--only``, another
  symbol) leave their rows alone, so a narrow run never resolves what it did not look at;
  a run over everything resolves (expires) the open alerts of its checks that got no
  result at all, so an alert whose subject vanished does not stay open forever.
- ``notified_at`` is cleared whenever a row's state changes and set once a webhook got it;
  a run sends every open, unnotified alert it judged and every resolution of the last day
  not sent yet, so a webhook outage delays notifications instead of losing them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mlpred_cli.monitor.results import AlertChanges, CheckResult, Severity, finite_or_none
from mlpred_cli.store.alert_rows import (
    alert_rows,
    alerts_transaction,
    insert_alert,
    mark_notified,
    open_fingerprints,
    read_alerts,
    resolve_alerts,
    unnotified_resolved,
    update_alert,
)
from mlpred_cli.store.source import DatabaseSource

#: How far back a resolution that never reached the webhook is still sent.
RESOLVED_RESEND_WINDOW = timedelta(days=1)


@dataclass
class AlertUpdate:
    """What ``record_alerts`` did: the fingerprints by change; ``firing`` the results of the
    open alerts whose state no webhook has received yet (opened, escalated, or left over
    from a failed delivery), and ``resolved_rows`` the rows (as they are now) of the
    resolutions not sent yet. ``mark_sent`` records a delivery of both."""

    changes: AlertChanges
    firing: list[CheckResult] = field(default_factory=list)
    resolved_rows: list[dict[str, Any]] = field(default_factory=list)

    def pending(self) -> list[str]:
        """Fingerprints a successful delivery covers."""
        return [r.fingerprint for r in self.firing] + [
            str(row["fingerprint"]) for row in self.resolved_rows
        ]


def _values(result: CheckResult, now: datetime) -> dict[str, Any]:
    return {
        "severity": result.severity.name,
        "value": finite_or_none(result.value),
        "threshold": finite_or_none(result.threshold),
        "n": result.n,
        "message": result.message[:2000],
        "last_seen": now,
    }


def record_alerts(
    source: DatabaseSource,
    results: Sequence[CheckResult],
    now: datetime,
    *,
    expire_checks: Sequence[str] = (),
) -> AlertUpdate:
    """Apply ``results`` to ``ml_alerts`` in one transaction (see the module docstring).

    ``expire_checks``: checks that ran over everything (no symbol or model version filter):
    their open alerts that got no result at all this run (a symbol retired past the
    freshness lookback, a model version no longer logging) are resolved as expired.
    """
    judged = {r.fingerprint: r for r in results if r.severity is not Severity.UNKNOWN}
    update = AlertUpdate(AlertChanges())
    changes = update.changes
    with alerts_transaction(source) as conn:
        existing = {row["fingerprint"]: row for row in alert_rows(conn, list(judged))}
        to_resolve = []
        for fingerprint, result in judged.items():
            row = existing.get(fingerprint)
            is_open = row is not None and row["resolved_at"] is None
            if result.severity is Severity.OK:
                if is_open:
                    to_resolve.append(fingerprint)
                continue
            values = _values(result, now)
            if row is None:
                scope = result.scope
                insert_alert(
                    conn,
                    {
                        "fingerprint": fingerprint,
                        "check_name": result.check,
                        "metric": result.metric,
                        "symbol": scope.symbol,
                        "model_version": scope.model_version,
                        "horizon": scope.horizon,
                        "first_seen": now,
                        **values,
                    },
                )
                changes.opened.append(fingerprint)
            elif not is_open:
                reopened = {**values, "first_seen": now, "resolved_at": None, "notified_at": None}
                update_alert(conn, fingerprint, reopened)
                changes.opened.append(fingerprint)
            elif row["severity"] == "WARNING" and result.severity is Severity.CRITICAL:
                update_alert(conn, fingerprint, {**values, "notified_at": None})
                changes.escalated.append(fingerprint)
            else:
                update_alert(conn, fingerprint, values)
                changes.ongoing.append(fingerprint)
                if row["notified_at"] is not None:
                    continue
            update.firing.append(result)
        seen = {r.fingerprint for r in results}
        if expire_checks:
            to_resolve += [f for f in open_fingerprints(conn, expire_checks) if f not in seen]
        resolve_alerts(conn, to_resolve, now)
        changes.resolved.extend(to_resolve)
        update.resolved_rows = unnotified_resolved(conn, now - RESOLVED_RESEND_WINDOW)
    return update


def mark_sent(source: DatabaseSource, update: AlertUpdate, at: datetime) -> None:
    """Record that the webhook received every state ``update`` held pending."""
    mark_notified(source, update.pending(), at)


def list_alerts(source: DatabaseSource, *, open_only: bool = False) -> list[dict[str, Any]]:
    """The rows of ``ml_alerts`` (only unresolved ones with ``open_only``), open ones first,
    most recently seen first; times are timezone-aware UTC."""
    return read_alerts(source, open_only=open_only)
