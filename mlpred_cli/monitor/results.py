"""What a check found: one ``CheckResult`` per (check, metric, scope), each with a Nagios
severity, and the ``CheckReport`` of a whole ``mlpred check`` run.

Severities follow the Nagios plugin convention (their values are the exit codes): 0 OK,
1 WARNING, 2 CRITICAL, 3 UNKNOWN. A run's status is the worst of its results in the order
CRITICAL > WARNING > UNKNOWN > OK (the monitoring-plugins ``max_state_alt`` order), so a
judged problem is never hidden by a check that could not judge.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import IntEnum
from typing import Any


class Severity(IntEnum):
    """A result's (and a run's) state; the value is the Nagios exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def rank(self) -> int:
        """Order of precedence: OK < UNKNOWN < WARNING < CRITICAL."""
        return _RANKS[self]


_RANKS = {Severity.OK: 0, Severity.UNKNOWN: 1, Severity.WARNING: 2, Severity.CRITICAL: 3}


def worst(severities: Iterable[Severity]) -> Severity:
    """The most severe of ``severities`` (OK for none)."""
    return max(severities, key=lambda severity: severity.rank, default=Severity.OK)


#: The checks ``mlpred check`` runs, in order.
CHECK_NAMES: tuple[str, ...] = ("performance", "drift", "freshness", "quality")


@dataclass(frozen=True)
class Scope:
    """What a result is about; None means all (or not applicable); a ``model_version`` of
    '' is the predictions logged without one."""

    symbol: str | None = None
    model_version: str | None = None
    horizon: str | None = None

    def describe(self) -> str:
        """``model v2 · 1h · BTCUSDT``-like text; ``all`` when nothing narrows it."""
        parts = []
        if self.model_version is not None:
            parts.append(f"model {self.model_version or '(none)'}")
        if self.horizon is not None:
            parts.append(self.horizon)
        if self.symbol is not None:
            parts.append(self.symbol)
        return " · ".join(parts) or "all"


@dataclass
class CheckResult:
    """One judged figure.

    ``check`` is one of ``CHECK_NAMES``; ``metric`` names the figure (``accuracy_cusum``,
    ``psi:features_mean``, ``stale_minutes``...). ``value`` is compared with ``threshold``
    (the limit for the result's severity, or the warning limit when OK); ``n`` is the rows
    (or days) behind ``value``. ``message`` is one line a person reads; ``details`` holds the
    rest (other window's size, p and q values, how the threshold was set, ...).
    """

    check: str
    metric: str
    scope: Scope
    severity: Severity
    value: float | None
    threshold: float | None
    n: int | None
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Stable identity of (check, metric, scope): 16 hex digits of a SHA-1."""
        scope = self.scope
        key = "\x1f".join(
            "" if part is None else part
            for part in (self.check, self.metric, scope.symbol, scope.model_version, scope.horizon)
        )
        return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values (non-finite numbers become None)."""
        return {
            "name": self.check,
            "metric": self.metric,
            "scope": {
                "symbol": self.scope.symbol,
                "model_version": self.scope.model_version,
                "horizon": self.scope.horizon,
            },
            "severity": self.severity.name,
            "value": finite_or_none(self.value),
            "threshold": finite_or_none(self.threshold),
            "n": self.n,
            "message": self.message,
            "fingerprint": self.fingerprint,
            "details": {key: _plain(value) for key, value in self.details.items()},
        }


def not_judged(check: str, metric: str, scope: Scope, message: str) -> CheckResult:
    """An OK result saying why ``check`` judged nothing for ``scope`` and nothing is wrong
    with that (a short window, reference rows archived), so cron neither pages nor mails."""
    return CheckResult(check, metric, scope, Severity.OK, None, None, None, message)


def in_reference_period(
    check: str, model_version: str, reference: tuple[date, date]
) -> CheckResult:
    """The OK result of a model version still in its reference period: nothing to judge
    yet, and nothing wrong (a fresh deployment must not page, or say UNKNOWN, for weeks)."""
    first, end = reference
    return CheckResult(
        check,
        "reference_period",
        Scope(model_version=model_version),
        Severity.OK,
        None,
        None,
        None,
        f"model {model_version or '(none)'} is in its reference period "
        f"[{first}, {end}): {check} not judged before {end}",
        {"reference_first_day": first.isoformat(), "reference_end_day": end.isoformat()},
    )


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float, or None when missing or not finite."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    return value


@dataclass
class AlertChanges:
    """What a run changed in ``ml_alerts``: fingerprints of alerts opened (or reopened),
    escalated from WARNING to CRITICAL, still open, and resolved."""

    opened: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    ongoing: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)


@dataclass
class WebhookOutcome:
    """How the webhook delivery went: ``sent`` alerts in ``attempts`` tries; ``error`` is
    the last failure's one-line reason when it never got through (None on success or when
    there was nothing to send)."""

    url: str
    sent: int = 0
    attempts: int = 0
    error: str | None = None


@dataclass
class CheckReport:
    """A whole ``mlpred check`` run: its ``results`` and what they changed."""

    generated_at: datetime
    windows: dict[str, Any]
    results: list[CheckResult]
    checks: tuple[str, ...] = CHECK_NAMES
    alerts: AlertChanges | None = None
    webhook: WebhookOutcome | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> Severity:
        """The worst result; UNKNOWN when nothing could be judged at all."""
        if not self.results:
            return Severity.UNKNOWN
        return worst(result.severity for result in self.results)

    @property
    def problems(self) -> list[CheckResult]:
        """Results that are not OK, most severe first."""
        found = [result for result in self.results if result.severity is not Severity.OK]
        return sorted(found, key=lambda result: -result.severity.rank)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document ``mlpred check --format json`` prints."""
        document: dict[str, Any] = {
            "status": self.status.name,
            "exit_code": int(self.status),
            "generated_at": self.generated_at.isoformat(),
            "windows": _plain(self.windows),
            "checks_run": list(self.checks),
            "counts": {
                severity.name: sum(1 for r in self.results if r.severity is severity)
                for severity in Severity
            },
            "checks": [result.to_dict() for result in self.results],
            "notes": list(self.notes),
        }
        if self.alerts is not None:
            document["alerts"] = {
                "opened": self.alerts.opened,
                "escalated": self.alerts.escalated,
                "ongoing": self.alerts.ongoing,
                "resolved": self.alerts.resolved,
            }
        if self.webhook is not None:
            document["webhook"] = {
                "url": self.webhook.url,
                "sent": self.webhook.sent,
                "attempts": self.webhook.attempts,
                "error": self.webhook.error,
            }
        return document
