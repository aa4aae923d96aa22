"""Monitoring commands: ``check`` (cron's entry point, Nagios exit codes) and ``alerts``."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import typer
from typer.core import TyperCommand

from mlpred_cli.cli.analysis_commands import (
    MODEL_VERSION_OPTION,
    SINCE_OPTION,
    SYMBOL_OPTION,
    UNTIL_OPTION,
)
from mlpred_cli.cli.app import app
from mlpred_cli.cli.bounds import MAX_DAYS, within
from mlpred_cli.cli.common import (
    FORMAT_OPTION,
    cli_errors,
    database_url,
    driver_error_message,
    flag_wording,
)
from mlpred_cli.errors import InputError, MlpredError
from mlpred_cli.render.output_format import OutputFormat

#: Exit code of ``check`` when it cannot judge (Nagios UNKNOWN), bad usage included.
UNKNOWN_EXIT = 3

WEBHOOK_ENV = "MLPRED_WEBHOOK_URL"


#: Click's usage error as the installed Typer raises it (Typer >= 0.20 vendors its own click,
#: so ``click.UsageError`` would not catch it); found through a public Typer class.
UsageError: type[Exception] = next(
    kind for kind in typer.BadParameter.__mro__ if kind.__name__ == "UsageError"
)


class NagiosCommand(TyperCommand):
    """A command whose usage errors exit 3 (Nagios UNKNOWN) instead of click's 2."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except UsageError as error:
            error.exit_code = UNKNOWN_EXIT  # type: ignore[attr-defined]
            raise


def _split_reference(text: str) -> tuple[str, str]:
    start, separator, end = text.partition("..")
    if not separator or not start.strip() or not end.strip():
        raise InputError(f"--reference must look like SINCE..UNTIL, got {text!r}")
    return start.strip(), end.strip()


def _unknown(message: str, fmt: OutputFormat) -> typer.Exit:
    """Report a run that could not judge anything: one line (or one JSON document)."""
    first_line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    if fmt is OutputFormat.json:
        document: dict[str, Any] = {
            "status": "UNKNOWN",
            "exit_code": UNKNOWN_EXIT,
            "generated_at": datetime.now(UTC).isoformat(),
            "error": first_line,
            "checks": [],
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        sys.stdout.write(f"mlpred check UNKNOWN: {first_line}\n")
    return typer.Exit(code=UNKNOWN_EXIT)


@app.command("check", cls=NagiosCommand, rich_help_panel="Monitoring")
def check_command(
    ctx: typer.Context,
    only: str | None = typer.Option(
        None,
        "--only",
        help="Comma-separated checks to run: performance,drift,freshness,quality (default all).",
    ),
    symbol: str | None = SYMBOL_OPTION,
    model_version: str | None = MODEL_VERSION_OPTION,
    days: float | None = typer.Option(
        None,
        "--days",
        "-d",
        callback=within(MAX_DAYS),
        help="Judge the last N days (default 7 without --since/--until).",
    ),
    since: str | None = SINCE_OPTION,
    until: str | None = UNTIL_OPTION,
    reference: str | None = typer.Option(
        None,
        "--reference",
        help="Reference window SINCE..UNTIL for every model version (ISO 8601, naive = UTC). "
        "Default: each version's first 14 days.",
    ),
    reference_days: int | None = typer.Option(
        None,
        "--reference-days",
        callback=within(MAX_DAYS, 1),
        help="Without --reference: each model version's first N days are its reference "
        "(default 14).",
        show_default=False,
    ),
    webhook: str | None = typer.Option(
        None,
        "--webhook",
        help=f"POST new and resolved alerts to this URL as JSON (default ${WEBHOOK_ENV}).",
        show_default=False,
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing when all is OK."),
    changes_only: bool = typer.Option(
        False,
        "--changes-only",
        help="Print only when an alert opened, escalated or resolved (or the run could not "
        "judge): cron mails each change once. The exit code is the status all the same.",
    ),
    show_all: bool = typer.Option(False, "--all", help="List OK results too (table)."),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Drift, degradation, liveness and data-quality alarms, for cron.

    Exit codes follow the Nagios plugin convention: 0 OK, 1 WARNING, 2 CRITICAL,
    3 UNKNOWN (database unreachable, too little data to judge, bad usage). Alerts are kept
    in the ml_alerts table, so repeated runs update them instead of repeating them.

    Example:

        mlpred check --quiet

        mlpred check --only performance,freshness --days 3 --format json

    Crontab line (cron mails only when something is wrong; --changes-only: only when an
    alert opens, escalates or resolves):

        */15 * * * * mlpred check --quiet
    """
    from mlpred_cli.monitor.check import run_check
    from mlpred_cli.monitor.results import Severity
    from mlpred_cli.monitor.settings import DEFAULT_SETTINGS
    from mlpred_cli.render.check_report import render_check

    try:
        names = [name.strip() for name in only.split(",") if name.strip()] if only else None
        window = _split_reference(reference) if reference is not None else None
        url = webhook if webhook is not None else os.environ.get(WEBHOOK_ENV) or None
        settings = DEFAULT_SETTINGS
        if reference_days is not None:
            settings = replace(settings, reference_days=reference_days)
        report = run_check(
            database_url(ctx),
            only=names,
            symbol=symbol,
            model_version=model_version,
            days=days,
            since=since,
            until=until,
            reference=window,
            webhook=url,
            settings=settings,
        )
    except MlpredError as error:
        raise _unknown(flag_wording(str(error)), fmt) from None
    except KeyboardInterrupt:
        raise _unknown("interrupted", fmt) from None
    except Exception as error:
        message = driver_error_message(error)
        if message is None:
            raise
        raise _unknown(message, fmt) from None
    status = int(report.status)
    silent = quiet and status == 0
    if changes_only and report.alerts is not None and report.status is not Severity.UNKNOWN:
        changes = report.alerts
        silent = silent or not (changes.opened or changes.escalated or changes.resolved)
    if not silent:
        render_check(report, fmt, show_all=show_all)
    if report.webhook is not None and report.webhook.error is not None:
        sys.stderr.write(f"webhook {report.webhook.url} failed: {report.webhook.error}\n")
    raise typer.Exit(code=status)


@app.command("alerts", rich_help_panel="Monitoring")
def alerts_command(
    ctx: typer.Context,
    open_only: bool = typer.Option(False, "--open", help="Only alerts not yet resolved."),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """The alerts ``mlpred check`` has raised: open ones first, then resolved ones.

    Example:

        mlpred alerts --open
    """
    from mlpred_cli.monitor.alert_state import list_alerts
    from mlpred_cli.render.check_report import render_alerts

    with cli_errors():
        rows = list_alerts(database_url(ctx), open_only=open_only)
    if not rows and fmt is OutputFormat.table:
        typer.echo("No open alerts" if open_only else "No alerts recorded")
        return
    render_alerts(rows, fmt)
