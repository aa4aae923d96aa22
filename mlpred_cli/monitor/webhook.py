"""Deliver the alerts a ``mlpred check`` run opened and resolved to a webhook, standard
library only.

One POST of one JSON body shaped like an Alertmanager webhook notification (``version``,
``status``, ``alerts`` with ``labels``/``annotations``/``startsAt``/``endsAt``/
``fingerprint``, ``commonLabels``), plus a top-level ``text`` of a few lines so
Slack/Mattermost-style incoming webhooks render it as a chat message.

Delivery never raises: connection errors, timeouts, 5xx and 429 answers are retried with a
doubling pause; any other answer (4xx, a redirect) is final. The URL may hold a secret
token in its path or query (Slack-style) or a user:password: outcomes and messages show
only ``scheme://host[:port]``.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from mlpred_cli.__about__ import __version__
from mlpred_cli.monitor.results import (
    CheckResult,
    Scope,
    Severity,
    WebhookOutcome,
    finite_or_none,
)
from mlpred_cli.monitor.settings import DEFAULT_SETTINGS, MonitorSettings

#: ``endsAt`` of a firing alert, as Alertmanager sends it (Go's zero time).
NOT_ENDED = "0001-01-01T00:00:00Z"

#: Alerts listed one per line in ``text``; the rest are counted.
TEXT_MAX_ALERTS = 15


class ResolvedAlertLike(Protocol):
    """What the webhook needs to know of an alert that a run resolved."""

    @property
    def fingerprint(self) -> str: ...
    @property
    def check(self) -> str: ...
    @property
    def metric(self) -> str: ...
    @property
    def scope(self) -> Scope: ...
    @property
    def severity(self) -> Severity: ...
    @property
    def first_seen(self) -> datetime: ...
    @property
    def resolved_at(self) -> datetime: ...


@dataclass(frozen=True)
class ResolvedAlert:
    """An alert a run resolved: its identity, the severity it had while open, when it was
    first seen and when it was resolved (aware UTC)."""

    fingerprint: str
    check: str
    metric: str
    scope: Scope
    severity: Severity
    first_seen: datetime
    resolved_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ResolvedAlert:
        """From an ``ml_alerts`` row (``check_name``, ``symbol``, ``model_version``,
        ``horizon``, ``severity`` by name, ..., ``resolved_at`` set)."""
        return cls(
            fingerprint=str(row["fingerprint"]),
            check=str(row["check_name"]),
            metric=str(row["metric"]),
            scope=Scope(row.get("symbol"), row.get("model_version"), row.get("horizon")),
            severity=Severity[str(row["severity"])],
            first_seen=row["first_seen"],
            resolved_at=row["resolved_at"],
        )


#: A resolved alert as ``deliver_alerts`` takes it: an object or an ``ml_alerts`` row.
ResolvedInput = ResolvedAlertLike | Mapping[str, Any]


def _as_resolved(items: Sequence[ResolvedInput]) -> list[ResolvedAlertLike]:
    return [ResolvedAlert.from_row(item) if isinstance(item, Mapping) else item for item in items]


# ---------------------------------------------------------------- the body


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _alertname(check: str, metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"mlpred_{check}_{metric}")


def _labels(check: str, metric: str, scope: Scope, severity: Severity) -> dict[str, str]:
    labels = {
        "alertname": _alertname(check, metric),
        "check": check,
        "metric": metric,
        "severity": severity.name.lower(),
        "symbol": scope.symbol,
        "model_version": scope.model_version,
        "horizon": scope.horizon,
    }
    return {key: value for key, value in labels.items() if value is not None}


def _common_labels(alerts: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    if not alerts:
        return {}
    common = dict(alerts[0]["labels"])
    for alert in alerts[1:]:
        common = {key: value for key, value in common.items() if alert["labels"].get(key) == value}
    return common


def _firing(result: CheckResult, generated_at: datetime) -> dict[str, Any]:
    annotations = {"summary": result.message}
    for name, number in (("value", result.value), ("threshold", result.threshold)):
        finite = finite_or_none(number)
        if finite is not None:
            annotations[name] = f"{finite:g}"
    return {
        "status": "firing",
        "labels": _labels(result.check, result.metric, result.scope, result.severity),
        "annotations": annotations,
        "startsAt": _stamp(generated_at),
        "endsAt": NOT_ENDED,
        "fingerprint": result.fingerprint,
    }


def _resolved_summary(alert: ResolvedAlertLike) -> str:
    return (
        f"resolved: {alert.check} {alert.metric} ({alert.scope.describe()}), "
        f"{alert.severity.name} since {alert.first_seen:%Y-%m-%d %H:%M} UTC"
    )


def _resolved(alert: ResolvedAlertLike) -> dict[str, Any]:
    return {
        "status": "resolved",
        "labels": _labels(alert.check, alert.metric, alert.scope, alert.severity),
        "annotations": {"summary": _resolved_summary(alert)},
        "startsAt": _stamp(alert.first_seen),
        "endsAt": _stamp(alert.resolved_at),
        "fingerprint": alert.fingerprint,
    }


def alert_text(
    opened: Sequence[CheckResult], resolved: Sequence[ResolvedAlertLike], status: Severity
) -> str:
    """The chat message: ``[CRITICAL] mlpred: 2 new, 1 resolved`` and one ``•`` line per
    alert (the first ``TEXT_MAX_ALERTS``, most severe first)."""
    lines = [f"[{status.name}] mlpred: {len(opened)} new, {len(resolved)} resolved"]
    ordered = sorted(opened, key=lambda result: -result.severity.rank)
    items = [f"• [{result.severity.name}] {result.check}: {result.message}" for result in ordered]
    items += [f"• [RESOLVED] {_resolved_summary(alert)[len('resolved: ') :]}" for alert in resolved]
    lines += items[:TEXT_MAX_ALERTS]
    if len(items) > TEXT_MAX_ALERTS:
        lines.append(f"… and {len(items) - TEXT_MAX_ALERTS} more")
    return "\n".join(lines)


def alert_payload(
    opened: Sequence[CheckResult],
    resolved_alerts: Sequence[ResolvedInput],
    *,
    status: Severity,
    generated_at: datetime,
) -> dict[str, Any]:
    """The JSON body ``deliver_alerts`` posts (Alertmanager webhook shape plus ``text``);
    ``status`` is ``firing`` when the run opened any alert, else ``resolved``."""
    resolved = _as_resolved(resolved_alerts)
    alerts = [_firing(result, generated_at) for result in opened]
    alerts += [_resolved(alert) for alert in resolved]
    return {
        "version": "4",
        "groupKey": "mlpred",
        "truncatedAlerts": 0,
        "status": "firing" if opened else "resolved",
        "receiver": "mlpred",
        "groupLabels": {},
        "commonLabels": _common_labels(alerts),
        "commonAnnotations": {},
        "externalURL": "",
        "alerts": alerts,
        "text": alert_text(opened, resolved, status),
        "mlpred": {"status": status.name, "generatedAt": _stamp(generated_at)},
    }


# ---------------------------------------------------------------- the URL


def masked_url(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: no user, password, path, query or fragment
    (they may hold a secret token). ``<invalid URL>`` when it cannot be parsed."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return "<invalid URL>"
    if not parts.scheme or not host:
        return "<invalid URL>"
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + (f":{port}" if port is not None else "")


def _secrets(url: str) -> list[str]:
    parts = urllib.parse.urlsplit(url)
    found = [url, parts.path, parts.query, parts.fragment, parts.username, parts.password]
    return sorted({piece for piece in found if piece and len(piece) > 1}, key=len, reverse=True)


def _scrubbed(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return " ".join(text.split())


def _request(url: str, body: bytes) -> urllib.request.Request:
    parts = urllib.parse.urlsplit(url)
    headers = {"Content-Type": "application/json", "User-Agent": f"mlpred/{__version__}"}
    if parts.username is not None:
        # urllib would read "user:password@host" as the host; send it as basic auth
        credentials = f"{urllib.parse.unquote(parts.username)}:"
        credentials += urllib.parse.unquote(parts.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        netloc = parts.netloc.rsplit("@", 1)[1]
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return urllib.request.Request(url, data=body, headers=headers, method="POST")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a hop: the POST (and its token) goes nowhere else."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


# ---------------------------------------------------------------- delivery


_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")


def _attempt(request: urllib.request.Request, timeout: float) -> tuple[str | None, bool]:
    """One POST: (None, _) on a 2xx answer, else (reason, retryable)."""
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        error.close()
        retryable = error.code >= 500 or error.code == 429
        return f"HTTP {error.code} {error.reason}", retryable
    except urllib.error.URLError as error:
        reason = error.reason
        text = "timed out" if isinstance(reason, TimeoutError) else str(reason)
        return f"cannot connect: {text}", True
    except TimeoutError:
        return "timed out", True
    except (OSError, http.client.HTTPException) as error:
        return f"{type(error).__name__}: {error}", True
    except ValueError as error:  # a URL urllib cannot send (bad port, bad characters)
        return f"unusable URL: {type(error).__name__}", False
    return None, False


def deliver_alerts(
    url: str,
    opened: Sequence[CheckResult],
    resolved: Sequence[ResolvedInput],
    *,
    status: Severity,
    generated_at: datetime,
    settings: MonitorSettings = DEFAULT_SETTINGS,
) -> WebhookOutcome:
    """POST ``alert_payload`` of the alerts opened (or escalated) and resolved (objects or
    ``ml_alerts`` rows) to ``url``; never raises.

    Each attempt waits ``settings.webhook_timeout_s`` per socket operation; up to
    ``settings.webhook_attempts`` attempts, pausing ``webhook_backoff_s`` and doubling,
    on connection errors, timeouts, 5xx and 429. Nothing opened or resolved: no request.
    The outcome's ``url`` and ``error`` show only ``scheme://host[:port]``.
    """
    shown = masked_url(url)
    outcome = WebhookOutcome(url=shown)
    count = len(opened) + len(resolved)
    if count == 0:
        return outcome
    if shown == "<invalid URL>" or urllib.parse.urlsplit(url.strip()).scheme not in (
        "http",
        "https",
    ):
        outcome.error = "webhook URL must be http:// or https:// with a host"
        return outcome
    if not _PRINTABLE_ASCII.fullmatch(url.strip()):
        # control characters would be echoed (escaped, so not scrubbed) in urllib's errors,
        # and non-ASCII ones break the request line: percent-encode them instead
        outcome.error = "webhook URL holds a space, control or non-ASCII character"
        return outcome
    body = json.dumps(
        alert_payload(opened, resolved, status=status, generated_at=generated_at)
    ).encode()
    request = _request(url.strip(), body)
    secrets = _secrets(url.strip())
    pause = settings.webhook_backoff_s
    attempts = max(1, settings.webhook_attempts)
    for attempt in range(1, attempts + 1):
        outcome.attempts = attempt
        reason, retryable = _attempt(request, settings.webhook_timeout_s)
        if reason is None:
            outcome.sent = count
            outcome.error = None
            return outcome
        tries = f"{attempt} attempt" + ("s" if attempt > 1 else "")
        outcome.error = _scrubbed(f"{shown}: {reason} (after {tries})", secrets)
        if not retryable or attempt == attempts:
            break
        time.sleep(pause)
        pause *= 2
    return outcome
