"""``mlpred report``: the periodic HTML report (optional extra ``mlpred[report]``)."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import typer

from mlpred_cli.cli.analysis_commands import (
    MODEL_VERSION_OPTION,
    SINCE_OPTION,
    SYMBOL_OPTION,
    UNTIL_OPTION,
)
from mlpred_cli.cli.app import app
from mlpred_cli.cli.common import cli_errors, database_url, flag_errors
from mlpred_cli.errors import InputError

#: Reproducible builds' convention: when set (seconds since the epoch), the report is dated
#: then instead of by the clock, so the same data gives the same bytes.
SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"


class ImageOption(StrEnum):
    """How the charts are embedded."""

    svg = "svg"
    png = "png"


def _report_time() -> datetime:
    epoch = os.environ.get(SOURCE_DATE_EPOCH)
    if not epoch:
        return datetime.now(UTC)
    try:
        return datetime.fromtimestamp(int(epoch), UTC)
    except (ValueError, OverflowError, OSError):
        message = f"{SOURCE_DATE_EPOCH} must be whole seconds since 1970, got {epoch!r}"
        raise InputError(message) from None


@app.command("report", rich_help_panel="Monitoring")
def report_command(
    ctx: typer.Context,
    symbol: str | None = SYMBOL_OPTION,
    model_version: str | None = MODEL_VERSION_OPTION,
    days: float | None = typer.Option(
        None, "--days", "-d", help="The last N days up to now (default 7 without --since/--until)."
    ),
    since: str | None = SINCE_OPTION,
    until: str | None = UNTIL_OPTION,
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write the report to FILE.html ('-': standard output)."
    ),
    out_dir: Path | None = typer.Option(
        None,
        "--out-dir",
        help="Write DIR/mlpred-report-YYYY-MM-DD.html and update DIR/latest.html (for cron).",
    ),
    sidecar: Path | None = typer.Option(
        None, "--json", help="Also write every figure of the report to FILE.json."
    ),
    images: ImageOption = typer.Option(
        ImageOption.svg, "--images", help="svg (default) or png, for mail clients that strip SVG."
    ),
    monitoring: bool = typer.Option(
        True, "--check/--no-check", help="Include the drift and alert results of `mlpred check`."
    ),
) -> None:
    r"""A self-contained HTML report of a window: no JavaScript, no external links.

    Status per horizon, accuracy and IC over time, calibration, realized returns by
    predicted quintile and confidence, signal economics (before costs), symbols, model
    versions, drift and alerts, input health. Needs the report extra:
    pip install 'mlpred-cli\[report]'. SOURCE_DATE_EPOCH, when set, dates the report.

    Example:

        mlpred report --days 30 --out report.html

        mlpred report --days 1 --out-dir reports --json reports/latest.json
    """
    from mlpred_cli.report.extra import require_report_extra

    with cli_errors(), flag_errors():
        require_report_extra()
        from mlpred_cli.report.content import report_content
        from mlpred_cli.report.files import check_targets, write_atomically, write_report
        from mlpred_cli.report.html import render_html

        to_stdout = out is not None and str(out) == "-"
        check_targets(None if to_stdout else out, out_dir, sidecar)
        moment = _report_time()
        document = report_content(
            database_url(ctx),
            symbol=symbol,
            model_version=model_version,
            days=days,
            since=since,
            until=until,
            now=moment,
            images=images.value,
            monitoring=monitoring,
        )
        html = render_html(document)
        sidecar_text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        if to_stdout:
            sys.stdout.flush()
            sys.stdout.buffer.write(html.encode("utf-8"))  # UTF-8 whatever the locale
            sys.stdout.buffer.flush()
            if sidecar is not None:
                write_atomically(sidecar, sidecar_text.encode("utf-8"))
            return
        written = write_report(
            html,
            day=moment.date(),
            out=out,
            out_dir=out_dir,
            sidecar=sidecar,
            sidecar_text=sidecar_text,
        )
    predictions = document["overview"]["predictions"]
    note = "no predictions in the window" if document["empty"] else f"{predictions:,} predictions"
    typer.echo(f"wrote {written.paths[0]} ({written.size / 1024:,.0f} KB, {note})")
    for path in written.paths[1:]:
        typer.echo(f"wrote {path}")
