"""`mlpred rollup` commands: the daily rollups behind the analysis."""

from __future__ import annotations

import typer

from mlpred_cli.cli.app import app
from mlpred_cli.cli.common import (
    FORMAT_OPTION,
    cli_errors,
    database_url,
    is_interactive,
    progress_bar,
)
from mlpred_cli.render.output_format import OutputFormat

rollup_app = typer.Typer(
    help="The daily rollups (ml_prediction_daily) that answer accuracy and analyze.",
    no_args_is_help=True,
)
app.add_typer(rollup_app, name="rollup", rich_help_panel="Outcomes")


@rollup_app.command("rebuild")
def rebuild_command(
    ctx: typer.Context,
    since: str | None = typer.Option(
        None,
        "--since",
        help="First UTC day to rebuild (ISO date or time; naive = UTC). Default: all history.",
        show_default=False,
    ),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Recompute the daily rollups from raw rows (archived days keep theirs).

    The backfill keeps the rollups current by itself; run this once after upgrading a
    database that already holds predictions, or after changing rows by hand.

    Example:

        mlpred rollup rebuild

        mlpred rollup rebuild --since 2026-11-01
    """
    from mlpred_cli.outcomes.rollups import rebuild_rollups
    from mlpred_cli.render.output import emit_object

    with cli_errors():
        url = database_url(ctx)
        with progress_bar("rebuilding rollups", is_interactive()) as update:
            report = rebuild_rollups(url, since=since, progress=update)
    if fmt is OutputFormat.json:
        emit_object(report.as_dict(), fmt)
        return
    if report.status == "locked":
        typer.echo("a backfill or another rebuild is running; nothing done")
        return
    scope = "all history" if report.full else f"days from {since}"
    typer.echo(
        f"rollup rebuild ({scope}): {report.days} days, {report.rows} rollup rows, complete "
        f"through id {report.complete_through_id}, {report.elapsed_s:.1f} s"
    )
