"""Actual outcomes: ``mlpred import-candles`` and ``mlpred backfill-actuals``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mlpred_cli.cli.app import app
from mlpred_cli.cli.common import (
    cli_errors,
    database_url,
    fail,
    is_interactive,
    progress_bar,
    stderr_console,
)
from mlpred_cli.cli.parsers import parse_horizons, parse_moment, parse_thresholds
from mlpred_cli.config import BACKFILL_RETRY_WINDOW, DEFAULT_BACKFILL_INTERVAL
from mlpred_cli.errors import InputError
from mlpred_cli.render.output_format import OutputFormat

if TYPE_CHECKING:
    from mlpred_cli.outcomes.backfill import BackfillReport
    from mlpred_cli.outcomes.candle_files import ImportReport

#: Invalid rows listed one per line on stderr before "... and N more".
MAX_INVALID_LINES_SHOWN = 50

#: Hints of library messages that name a parameter, and the option that sets it here.
_OPTION_HINTS: tuple[tuple[str, str], ...] = (
    ("pass symbol", "pass --symbol"),
    ("pass file_format 'csv' or 'parquet'", "pass --format csv|parquet"),
    ("leave out symbol", "leave out --symbol"),
)

#: The largest --limit of backfill-actuals (as ``outcomes/backfill.py`` MAX_BACKFILL_LIMIT).
MAX_LIMIT = 1_000_000_000_000


class BackfillFormat(StrEnum):
    """The ``--format`` choices of ``backfill-actuals`` (a report, so no csv)."""

    table = "table"
    json = "json"


@contextmanager
def _option_wording() -> Iterator[None]:
    """Re-raise an ``InputError`` whose hint names a parameter with the option's name."""
    try:
        yield
    except InputError as error:
        message = str(error)
        for parameter, option in _OPTION_HINTS:
            if message.endswith(parameter):
                raise InputError(message[: -len(parameter)] + option) from None
        raise


@app.command("import-candles", rich_help_panel="Outcomes")
def import_candles_command(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="CSV or Parquet file of OHLCV candles."),
    symbol: str | None = typer.Option(
        None,
        "--symbol",
        "-s",
        help="Symbol of every row when the file has no symbol column (with one, it must "
        "say the same).",
    ),
    interval: str | None = typer.Option(
        None,
        "--interval",
        "-i",
        help="Candle interval: 1m, 5m, 15m, 1h, 4h or 1d; refused when the candles' spacing "
        "contradicts it. Default: inferred from the data.",
        show_default=False,
    ),
    file_format: str | None = typer.Option(
        None, "--format", help="csv or parquet. Default: from the file extension."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Abort with nothing written if any row is invalid."
    ),
) -> None:
    """Import OHLCV candles into market_candles (upsert: importing twice changes nothing).

    Columns are found case-insensitively: a time column (datetime, timestamp, time, date,
    open_time, or the index column of a pandas-written CSV), open, high, low, close, volume
    and an optional symbol. Times may be ISO 8601 (naive times are UTC) or epoch seconds,
    milliseconds, microseconds or nanoseconds (told apart by magnitude). Invalid rows
    (missing close, high < low, non-numeric values, times before 2000, in the future or
    off the interval's grid) are skipped, never written, and listed with their line
    numbers. The file is read in chunks: memory stays bounded whatever its size.

    Example:

        mlpred import-candles btc_15m.csv --symbol BTCUSDT --interval 15m

        mlpred import-candles candles.parquet --strict
    """
    from mlpred_cli.outcomes.candle_files import import_candles

    with (
        cli_errors(),
        _option_wording(),
        progress_bar("importing", is_interactive()) as update,
    ):
        written = 0

        def advance(rows: int) -> None:
            nonlocal written
            written += rows
            if update is not None:
                update(written, written)

        report = import_candles(
            database_url(ctx),
            file,
            file_format=file_format,
            symbol=symbol,
            interval=interval,
            strict=strict,
            progress=advance,
        )
    _print_import_report(report)


def _print_import_report(report: ImportReport) -> None:
    """The invalid lines on stderr, then the counts and each symbol's range."""
    for invalid in report.invalid[:MAX_INVALID_LINES_SHOWN]:
        stderr_console().print(f"invalid line {invalid.line}: {invalid.reason}")
    if report.invalid_count > MAX_INVALID_LINES_SHOWN:
        stderr_console().print(f"... and {report.invalid_count - MAX_INVALID_LINES_SHOWN} more")
    typer.echo(
        f"inserted {report.inserted}, updated {report.updated}, unchanged {report.unchanged}, "
        f"invalid {report.invalid_count} (of {report.total_rows} rows; "
        f"interval {report.interval_minutes} min)"
    )
    for entry in report.symbols:
        typer.echo(
            f"  {entry.symbol}: {entry.rows} candles, "
            f"{entry.first.isoformat()} .. {entry.last.isoformat()}"
        )


@app.command("backfill-actuals", rich_help_panel="Outcomes")
def backfill_actuals_command(
    ctx: typer.Context,
    source: str = typer.Option(
        "market_candles",
        "--source",
        help="Price table: market_candles, or raw_market_data (the original bot's table).",
    ),
    interval: str = typer.Option(
        DEFAULT_BACKFILL_INTERVAL, "--interval", "-i", help="Candle interval to read closes from."
    ),
    symbol: str | None = typer.Option(None, "--symbol", "-s", help="Only this symbol."),
    since: str | None = typer.Option(
        None,
        "--since",
        help="Only predictions at or after this ISO time (naive = UTC). Default: "
        f"{BACKFILL_RETRY_WINDOW.total_seconds() / 3600:g} h before the newest completed "
        "prediction (all on the first run).",
    ),
    until: str | None = typer.Option(
        None, "--until", help="Only predictions at or before this ISO time (naive = UTC)."
    ),
    horizons: str | None = typer.Option(
        None, "--horizons", help="Comma-separated horizons to fill. Default: 15m,1h,4h,12h."
    ),
    thresholds: str | None = typer.Option(
        None,
        "--thresholds",
        help="Direction thresholds as fractions, e.g. 15m=0.0015,1h=0.003,4h=0.007,12h=0.01 "
        "(unnamed horizons keep their defaults).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Count what would be filled; write nothing."
    ),
    limit: int | None = typer.Option(
        None,
        "--limit",
        help=f"Look at no more than this many pending predictions (1 to {MAX_LIMIT}).",
    ),
    output: BackfillFormat = typer.Option(
        BackfillFormat.table, "--format", "-f", help="Output format: table or json."
    ),
) -> None:
    """Fill actual returns, directions, accuracy and return errors from candles.

    Safe for cron: only null outcomes are written, a rerun with nothing new writes nothing,
    and when another backfill is running this one prints so and exits 0. A row whose candle
    at t + h is missing stays null and is counted as missing (never guessed).

    Example:

        mlpred backfill-actuals

        mlpred backfill-actuals --symbol BTCUSDT --since 2026-03-01 --horizons 15m,1h --dry-run

        mlpred backfill-actuals --format json
    """
    fmt = OutputFormat(output.value)
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise fail(f"--limit must be between 1 and {MAX_LIMIT}", 2)
    with cli_errors():
        chosen = parse_horizons(horizons)
        levels = parse_thresholds(thresholds)
        start, end = parse_moment(since), parse_moment(until)
        if start is not None and end is not None and start > end:
            raise InputError(
                f"--since {since} is after --until {until}: no prediction is in between"
            )
        from mlpred_cli.outcomes.backfill import backfill_actuals

        show_bar = is_interactive() and fmt is OutputFormat.table
        with progress_bar("backfilling", show_bar) as update:
            report = backfill_actuals(
                database_url(ctx),
                source=source,
                interval=interval,
                symbol=symbol,
                since=start,
                until=end,
                horizons=chosen,
                thresholds=levels,
                dry_run=dry_run,
                limit=limit,
                progress=update,
            )
    _print_backfill_report(report, fmt)


def _print_backfill_report(report: BackfillReport, fmt: OutputFormat) -> None:
    """JSON, a table (terminal) or one summary line (cron, pipes)."""
    from mlpred_cli.render.output import emit_object, emit_rows

    if fmt is OutputFormat.json:
        emit_object(report.as_dict(), fmt)
        return
    if report.status == "locked":
        typer.echo("another backfill is running; nothing done")
        return
    if is_interactive():
        rows = [vars(counts) for counts in report.horizons]
        title = "backfill-actuals (dry run)" if report.dry_run else "backfill-actuals"
        emit_rows(rows, fmt, title=title, columns=["horizon", "filled", "pending", "missing"])
        typer.echo(
            f"{report.rows_updated} rows updated in {report.elapsed_s:.1f} s; "
            f"{report.outside_window} incomplete rows before the window (not retried)"
        )
        return
    per_horizon = "; ".join(
        f"{c.horizon} filled={c.filled} pending={c.pending} missing={c.missing}"
        for c in report.horizons
    )
    mode = " (dry run)" if report.dry_run else ""
    typer.echo(
        f"backfill-actuals{mode}: {per_horizon}; rows_updated={report.rows_updated} "
        f"outside_window={report.outside_window} elapsed={report.elapsed_s:.1f}s"
    )
