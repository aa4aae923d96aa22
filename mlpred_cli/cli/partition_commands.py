"""`mlpred partitions` commands: daily partitions of ml_predictions on PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from mlpred_cli.cli.app import app
from mlpred_cli.cli.bounds import MAX_DAYS_AHEAD, within
from mlpred_cli.cli.common import FORMAT_OPTION, cli_errors, database_url
from mlpred_cli.config import PARTITION_DAYS_AHEAD
from mlpred_cli.errors import InputError
from mlpred_cli.render.output_format import OutputFormat

if TYPE_CHECKING:
    from mlpred_cli.history.partitioning import PartitionReport

DAYS_AHEAD_DEFAULT = PARTITION_DAYS_AHEAD

partitions_app = typer.Typer(
    help="Daily partitions of ml_predictions (PostgreSQL; see `mlpred init-db --partitioned`).",
    no_args_is_help=True,
)
app.add_typer(partitions_app, name="partitions", rich_help_panel="Set up and log")

DAYS_AHEAD_OPTION = typer.Option(
    DAYS_AHEAD_DEFAULT,
    "--days-ahead",
    "-n",
    callback=within(MAX_DAYS_AHEAD),
    help="Keep partitions ready from yesterday to this many days after today (UTC).",
)


def days_ahead_value(days_ahead: int) -> int:
    """``--days-ahead`` checked: zero or more days."""
    if days_ahead < 0:
        raise InputError(f"--days-ahead must be zero or positive, got {days_ahead}")
    return days_ahead


def layout_line(report: PartitionReport) -> str:
    """One line saying how ml_predictions is stored."""
    if not report.partitioned:
        return "Layout: single table (not partitioned)"
    days = report.partitions
    if not days:
        return "Layout: partitioned by day (no day partitions yet; all rows in the default)"
    span = f"{days[0].day.isoformat()} to {days[-1].day.isoformat()}"
    count = f"{len(days)} day partition{'s' if len(days) != 1 else ''}"
    return f"Layout: partitioned by day ({count}, {span}, plus the default partition)"


def report_fields(report: PartitionReport, fmt: OutputFormat) -> dict[str, Any]:
    """The report as the fields ``partitions ensure`` prints (days created: a list in JSON,
    one comma-separated cell otherwise)."""
    days = report.partitions
    created = [day.isoformat() for day in report.created]
    return {
        "layout": report.layout,
        "created": created if fmt is OutputFormat.json else ", ".join(created) or "none",
        "moved_from_default": report.moved_rows,
        "day_partitions": len(days),
        "first_day": days[0].day if days else None,
        "last_day": days[-1].day if days else None,
    }


@partitions_app.command("ensure")
def ensure_command(
    ctx: typer.Context,
    days_ahead: int = DAYS_AHEAD_OPTION,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Create the coming days' partitions and empty the default partition.

    Creates the missing day partitions from yesterday to --days-ahead days after today
    (UTC), and moves rows that landed in the default partition into their own day's new
    partition. Safe to run at any time and from cron; does nothing on SQLite or on a table
    that is not partitioned (it says so). Loggers and backfill runs do this on their own.

    Example:

        mlpred partitions ensure --days-ahead 14

        mlpred --db postgresql://postgres@127.0.0.1:5432/mlpred partitions ensure -f json
    """
    from mlpred_cli.history.partitioning import ensure_partitions_for
    from mlpred_cli.render.output import emit_object

    with cli_errors():
        report = ensure_partitions_for(database_url(ctx), days_ahead=days_ahead_value(days_ahead))
    if fmt is OutputFormat.table and not report.partitioned:
        typer.echo(f"{layout_line(report)}: nothing to do")
        return
    emit_object(report_fields(report, fmt), fmt)


@partitions_app.command("list")
def list_command(ctx: typer.Context, fmt: OutputFormat = FORMAT_OPTION) -> None:
    """List the partitions of ml_predictions with their day and row estimate.

    Each day partition with its UTC day and the planner's row estimate (not an exact
    count), then the default partition, which should hold no rows (`mlpred partitions
    ensure` moves any it holds).

    Example:

        mlpred partitions list

        mlpred partitions list --format json
    """
    from mlpred_cli.history.partitioning import partitions_of
    from mlpred_cli.render.output import emit_rows

    with cli_errors():
        partitions = partitions_of(database_url(ctx))
    rows = [
        {
            "partition": partition.name,
            "day": partition.day,
            "kind": "default" if partition.is_default else "day",
            "rows_estimate": partition.estimated_rows,
        }
        for partition in partitions
    ]
    if not rows and fmt is OutputFormat.table:
        typer.echo("No partitions: ml_predictions is a single table (not partitioned).")
        return
    emit_rows(rows, fmt, columns=["partition", "day", "kind", "rows_estimate"])
