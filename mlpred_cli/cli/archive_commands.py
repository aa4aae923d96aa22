"""`mlpred archive` commands: archive old predictions to Parquet, and restore them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mlpred_cli.cli.app import app
from mlpred_cli.cli.common import (
    FORMAT_OPTION,
    cli_errors,
    database_url,
    fail,
    flag_errors,
    is_interactive,
    progress_bar,
    stderr_console,
)
from mlpred_cli.cli.parsers import parse_moment
from mlpred_cli.errors import InputError
from mlpred_cli.render.output_format import OutputFormat

if TYPE_CHECKING:
    from mlpred_cli.history.archive import ArchiveReport, RestoreReport

archive_app = typer.Typer(
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(archive_app, name="archive", rich_help_panel="History")


@contextmanager
def _before_wording() -> Iterator[None]:
    """Re-raise the library's ``InputError`` about ``before`` naming the ``--before`` flag."""
    try:
        yield
    except InputError as error:
        message = str(error)
        if message.startswith("before "):
            raise InputError(f"--{message}") from None
        raise


@archive_app.callback(invoke_without_command=True)
def archive_command(
    ctx: typer.Context,
    before: str | None = typer.Option(
        None,
        "--before",
        help="Archive every UTC day before this date (a time is floored to its UTC day; "
        "naive = UTC). At most today.",
        show_default=False,
    ),
    to: Path | None = typer.Option(
        None,
        "--to",
        help="Archive directory; files go to DIR/ml_predictions/date=YYYY-MM-DD/.",
        show_default=False,
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Count the days and rows that would be archived; write nothing."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Also archive days with rows whose outcomes are not final yet (they will not be "
        "backfilled) or that are not in the rollups yet (their statistics are lost).",
    ),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Write predictions older than --before to Parquet, verify, then remove them.

    Per UTC day: the rows go to a zstd Parquet file that is read back and checked (row
    count and content digest, SHA-256 in a manifest beside it); only then are they removed
    from ml_predictions (the day's partition dropped on a partitioned table, batched DELETE
    otherwise) and the day listed in ml_archived_days. Rollups (ml_prediction_daily) stay,
    so accuracy and analyze still answer for archived days. A day with rows whose outcomes
    are not final (no actuals_filled_at, and less than 12 h + the backfill's retry window
    old), or newer than the rollups (run mlpred rollup rebuild first), is skipped unless
    --force. Safe to re-run after a failure.

    Example:

        mlpred archive --before 2026-01-01 --to /data/mlpred-archive --dry-run

        mlpred archive --before 2026-01-01 --to /data/mlpred-archive

        mlpred archive restore --from /data/mlpred-archive --since 2025-12-01
    """
    if ctx.invoked_subcommand is not None:
        return
    if before is None or to is None:
        raise fail("give --before DATE and --to DIR (or use: mlpred archive restore --from DIR)")
    if fmt is OutputFormat.csv:
        raise fail("archive prints table or json, not csv")
    with cli_errors(), _before_wording():
        cutoff = parse_moment(before)
        from mlpred_cli.history.archive import archive_predictions

        show_bar = is_interactive() and fmt is OutputFormat.table and not dry_run
        with progress_bar("archiving", show_bar) as update:
            report = archive_predictions(
                database_url(ctx),
                before=cutoff if cutoff is not None else before,
                to=to,
                dry_run=dry_run,
                force=force,
                progress=update,
            )
    _print_archive_report(report, fmt)


def _print_archive_report(report: ArchiveReport, fmt: OutputFormat) -> None:
    """JSON, or a table per day (terminal) and one summary line."""
    from mlpred_cli.render.output import emit_object, emit_rows

    if fmt is OutputFormat.json:
        emit_object(report.as_dict(), fmt)
        return
    for skipped in report.skipped:
        why = (
            f"{skipped.not_final} of {skipped.rows} rows not final"
            if skipped.reason == "not_final"
            else "rows not in the rollups yet (run mlpred rollup rebuild first)"
        )
        stderr_console().print(f"skipped {skipped.day}: {why}; --force archives it anyway")
    mode = " (dry run)" if report.dry_run else ""
    if is_interactive() and report.days:
        rows = [
            {"day": day.day.isoformat(), "rows": day.rows, "not_final": day.not_final}
            | ({} if report.dry_run else {"bytes": day.bytes, "dropped": day.partition_dropped})
            for day in report.days
        ]
        emit_rows(rows, fmt, title=f"archive{mode}")
    if not report.days:
        typer.echo(f"archive{mode}: nothing to archive before {report.before.isoformat()}")
        return
    per_row = "" if report.bytes_per_row is None else f" ({report.bytes_per_row:.0f} B/row)"
    speed = "" if report.rows_per_s is None else f", {report.rows_per_s:,.0f} rows/s"
    verb = "would archive" if report.dry_run else "archived"
    typer.echo(
        f"archive{mode}: {verb} {report.rows} rows of {report.days_archived} days to "
        f"{report.directory}; {report.bytes_written:,} bytes{per_row}; "
        f"{len(report.skipped)} days skipped; {report.seconds:.1f} s{speed}"
    )


@archive_app.command("restore")
def restore_command(
    ctx: typer.Context,
    from_dir: Path = typer.Option(
        ..., "--from", help="Archive directory written by mlpred archive.", show_default=False
    ),
    since: str | None = typer.Option(
        None, "--since", help="Only days starting at or after this ISO date/time (naive = UTC)."
    ),
    until: str | None = typer.Option(
        None, "--until", help="Only days starting before this ISO date/time (naive = UTC)."
    ),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Load archived days back into ml_predictions (whole days, original ids).

    Each file is checked against its manifest first; rows already in the table are
    skipped, so running it twice inserts nothing the second time. Restored days leave
    ml_archived_days. The files stay where they are.

    Example:

        mlpred archive restore --from /data/mlpred-archive

        mlpred archive restore --from /data/mlpred-archive --since 2025-12-01 --until 2025-12-08
    """
    if fmt is OutputFormat.csv:
        raise fail("archive restore prints table or json, not csv")
    with cli_errors(), flag_errors():
        start, end = parse_moment(since), parse_moment(until)
        from mlpred_cli.history.archive import restore_archive

        with progress_bar("restoring", is_interactive() and fmt is OutputFormat.table) as update:
            report = restore_archive(
                database_url(ctx), from_dir=from_dir, since=start, until=end, progress=update
            )
    _print_restore_report(report, fmt)


def _print_restore_report(report: RestoreReport, fmt: OutputFormat) -> None:
    from mlpred_cli.render.output import emit_object

    if fmt is OutputFormat.json:
        emit_object(report.as_dict(), fmt)
        return
    if not report.days:
        typer.echo(f"archive restore: no archived days in the range under {report.directory}")
        return
    typer.echo(
        f"archive restore: {len(report.days)} days, {report.inserted} rows inserted, "
        f"{report.rows - report.inserted} already present; {report.seconds:.1f} s"
    )
