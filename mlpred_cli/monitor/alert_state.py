"""Alert state across cron runs: a run's WARNING and CRITICAL results open (or keep open)
one ``ml_alerts`` row per fingerprint, its OK results resolve them.

- A fingerprint judged WARNING/CRITICAL with no open row is **opened** (a new row, or a
  resolved row reopened with a new ``first_seen``); one already open is **ongoing** (its
  ``last_seen`` and figures updated), or **escalated** when it went from WARNING to
  CRITICAL.
- A fingerprint judged OK whose row is open is **resolved**.
- UNKNOWN results and fingerprints the run did not judge (another ``--only``, another
  symbol) leave their rows alone, so a narrow run never resolves what it did not look at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlpred_cli.monitor.results import AlertChanges, CheckResult, Severity, finite_or_none
from mlpred_cli.store.alert_rows import (
    alert_rows,
    alerts_transaction,
    insert_alert,
    read_alerts,
    resolve_alerts,
    update_alert,
)
from mlpred_cli.store.source import DatabaseSource


@dataclass
class AlertUpdate:
    """What ``record_alerts`` did: the fingerprints by change, the results behind the
    opened and escalated ones, and the rows (as they were) of the resolved ones."""

    changes: AlertChanges
    firing: list[CheckResult] = field(default_factory=list)
    resolved_rows: list[dict[str, Any]] = field(default_factory=list)


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
    source: DatabaseSource, results: Sequence[CheckResult], now: datetime
) -> AlertUpdate:
    """Apply ``results`` to ``ml_alerts`` in one transaction (see the module docstring)."""
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
                    update.resolved_rows.append({**row, "resolved_at": now})  # type: ignore[dict-item]
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
            elif not is_open:
                update_alert(conn, fingerprint, {**values, "first_seen": now, "resolved_at": None})
            else:
                update_alert(conn, fingerprint, values)
                escalated = row["severity"] == "WARNING" and result.severity is Severity.CRITICAL
                (changes.escalated if escalated else changes.ongoing).append(fingerprint)
                if escalated:
                    update.firing.append(result)
                continue
            changes.opened.append(fingerprint)
            update.firing.append(result)
        resolve_alerts(conn, to_resolve, now)
        changes.resolved.extend(to_resolve)
    return update


def list_alerts(source: DatabaseSource, *, open_only: bool = False) -> list[dict[str, Any]]:
    """The rows of ``ml_alerts`` (only unresolved ones with ``open_only``), open ones first,
    most recently seen first; times are timezone-aware UTC."""
    return read_alerts(source, open_only=open_only)
