"""Output of ``mlpred check`` and ``mlpred alerts``: the JSON document, one CSV row per
result, or a status line with a table of what is not OK (and, with ``show_all``, of every
result) and one line per problem saying what happened."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from mlpred_cli.monitor.results import CheckReport, CheckResult, Scope, Severity
from mlpred_cli.render.output import emit_rows, format_cell, to_jsonable
from mlpred_cli.render.output_format import OutputFormat

RESULT_COLUMNS = ("severity", "scope", "metric", "value", "threshold", "n")
RESULT_HEADERS = {"threshold": "limit"}
RESULT_CSV_COLUMNS = (
    "severity",
    "check",
    "metric",
    "symbol",
    "model_version",
    "horizon",
    "value",
    "threshold",
    "n",
    "fingerprint",
    "message",
)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


def compact_scope(scope: Scope) -> str:
    """``v1/15m/BTCUSDT``: the scope's parts that are set, short enough for 80 columns."""
    parts = [
        part
        for part in (
            None if scope.model_version is None else scope.model_version or "(none)",
            scope.horizon,
            scope.symbol,
        )
        if part is not None
    ]
    return "/".join(parts) or "all"


def _row(result: CheckResult) -> dict[str, Any]:
    return {
        "severity": result.severity.name,
        "check": result.check,
        "scope": compact_scope(result.scope),
        "metric": result.metric,
        "value": _number(result.value),
        "threshold": _number(result.threshold),
        "n": result.n,
    }


def status_line(report: CheckReport) -> str:
    """``mlpred check CRITICAL: 2 critical, 1 warning, 40 ok`` (what cron mails first)."""
    counts = dict.fromkeys(Severity, 0)
    for result in report.results:
        counts[result.severity] += 1
    parts = [
        f"{counts[severity]} {severity.name.lower()}"
        for severity in (Severity.CRITICAL, Severity.WARNING, Severity.UNKNOWN, Severity.OK)
        if counts[severity]
    ]
    return f"mlpred check {report.status.name}: {', '.join(parts) or 'nothing to judge'}"


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    return format_cell(value)


def _window_line(windows: Mapping[str, Any]) -> str:
    """``window 2026-11-24 16:00 .. 2026-12-01 16:00 UTC; reference v1 2026-10-24 ..``."""
    current = windows.get("current", {})
    text = f"window {_when(current.get('since'))} .. {_when(current.get('until'))} UTC"
    reference = windows.get("reference") or {}
    if "since" in reference:
        text += f"; reference {_when(reference['since'])} .. {_when(reference['until'])}"
    else:
        spans = [
            f"{version} {_when(span['first_day'])} .. {_when(span['end_day'])}"
            for version, span in reference.items()
        ]
        if spans:
            text += "; reference " + ", ".join(spans)
    return text


def render_check(
    report: CheckReport, fmt: OutputFormat, *, show_all: bool = False, out: TextIO | None = None
) -> None:
    """Print ``report`` as ``fmt``."""
    stream = out or sys.stdout
    if fmt is OutputFormat.json:
        stream.write(json.dumps(to_jsonable(report.to_dict()), indent=2) + "\n")
        return
    if fmt is OutputFormat.csv:
        rows = []
        for result in report.results:
            plain = result.to_dict()
            rows.append({**plain, **plain["scope"], "check": result.check})
        emit_rows(rows, fmt, columns=RESULT_CSV_COLUMNS, out=out)
        return
    stream.write(status_line(report) + "\n")
    stream.write(_window_line(report.windows) + "\n")
    shown = report.results if show_all else report.problems
    if shown:
        rows = [_row(result) for result in shown]
        emit_rows(rows, fmt, columns=RESULT_COLUMNS, headers=RESULT_HEADERS, out=out)
    for result in report.problems:
        stream.write(f"{result.severity.name}: {result.message}\n")
    for note in report.notes:
        stream.write(f"note: {note}\n")
    if report.alerts is not None:
        changes = report.alerts
        stream.write(
            f"alerts: {len(changes.opened)} new, {len(changes.escalated)} escalated, "
            f"{len(changes.ongoing)} ongoing, {len(changes.resolved)} resolved\n"
        )


ALERT_COLUMNS = ("state", "scope", "metric", "first_seen", "last")
ALERT_CSV_COLUMNS = (
    "fingerprint",
    "severity",
    "check_name",
    "metric",
    "symbol",
    "model_version",
    "horizon",
    "value",
    "threshold",
    "n",
    "first_seen",
    "last_seen",
    "resolved_at",
    "message",
)


def _minute(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%m-%d %H:%M")


def render_alerts(
    rows: Sequence[Mapping[str, Any]], fmt: OutputFormat, *, out: TextIO | None = None
) -> None:
    """Print alert rows (``store.alert_rows``) as ``fmt``; the table shows the state
    (severity, or ``resolved``), scope, metric, when it was first seen and when it was last
    seen (or resolved), in UTC; JSON and CSV carry every column."""
    if fmt is not OutputFormat.table:
        emit_rows(rows, fmt, columns=ALERT_CSV_COLUMNS, out=out)
        return
    table_rows = []
    for row in rows:
        resolved = row["resolved_at"]
        table_rows.append(
            {
                "state": row["severity"] if resolved is None else "resolved",
                "scope": compact_scope(Scope(row["symbol"], row["model_version"], row["horizon"])),
                "metric": row["metric"],
                "first_seen": _minute(row["first_seen"]),
                "last": _minute(row["last_seen"] if resolved is None else resolved),
            }
        )
    headers = {"first_seen": "since (UTC)", "last": "last/resolved"}
    emit_rows(table_rows, fmt, columns=ALERT_COLUMNS, headers=headers, out=out)
