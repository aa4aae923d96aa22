"""Analysis commands: ``analyze``, ``accuracy``, ``high-confidence``, ``recent``."""

from __future__ import annotations

from pathlib import Path

import typer

from mlpred_cli.cli.app import app
from mlpred_cli.cli.bounds import MAX_COUNT, MAX_DAYS, MAX_HOURS, within
from mlpred_cli.cli.common import (
    FORMAT_OPTION,
    cli_errors,
    database_url,
    flag_errors,
    say_empty,
)
from mlpred_cli.config import HORIZONS
from mlpred_cli.render.output_format import OutputFormat

SYMBOL_OPTION = typer.Option(None, "--symbol", "-s", help="Only this symbol, e.g. BTCUSDT.")
MODEL_VERSION_OPTION = typer.Option(None, "--model-version", "-m", help="Only this model version.")
DAYS_OPTION = typer.Option(
    None,
    "--days",
    "-d",
    callback=within(MAX_DAYS),
    help="Only the last N days (up to now). Excludes --since/--until.",
)
SINCE_OPTION = typer.Option(
    None,
    "--since",
    help="From this time on (ISO 8601, e.g. 2026-03-01T12:00; naive times are UTC).",
)
UNTIL_OPTION = typer.Option(
    None, "--until", help="Before this time (ISO 8601; naive times are UTC)."
)


@app.command("analyze", rich_help_panel="Analysis")
def analyze_command(
    ctx: typer.Context,
    symbol: str | None = SYMBOL_OPTION,
    model_version: str | None = MODEL_VERSION_OPTION,
    days: float | None = typer.Option(
        None,
        "--days",
        "-d",
        callback=within(MAX_DAYS),
        help="Only the last N days (default 7 when no --since/--until is given).",
    ),
    since: str | None = SINCE_OPTION,
    until: str | None = UNTIL_OPTION,
    export: Path | None = typer.Option(
        None, "--export", help="Also write the selected predictions to FILE.csv or FILE.parquet."
    ),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """How good is the model: accuracy, calibration, IC and input health of a selection.

    Sections: overview, signal distribution, accuracy per horizon (95% Wilson intervals,
    hit rate, base rate, MAE, RMSE, IC), confidence bins and calibration, per symbol, input
    health, inference time. JSON: one object; CSV: section,item,metric,value rows.

    Example:

        mlpred analyze --symbol BTCUSDT --days 30

        mlpred analyze --since 2026-03-01 --until 2026-03-08 --format json
    """
    from mlpred_cli.analysis.prediction_views import analyze
    from mlpred_cli.render.analysis import render_report

    with cli_errors(), flag_errors():
        report = analyze(
            database_url(ctx),
            symbol=symbol,
            model_version=model_version,
            days=days,
            since=since,
            until=until,
            export=export,
        )
    if report.empty:
        say_empty(f"No predictions {report.selection['description']}", fmt)
        if fmt is OutputFormat.table:
            return
    render_report(report, fmt)


@app.command("accuracy", rich_help_panel="Analysis")
def accuracy_command(
    ctx: typer.Context,
    by: str = typer.Option(
        "symbol", "--by", help="Group by symbol, model_version, signal_type or day (UTC)."
    ),
    horizon: str = typer.Option("all", "--horizon", help="15m, 1h, 4h, 12h or all."),
    min_count: int = typer.Option(
        0,
        "--min-count",
        callback=within(MAX_COUNT),
        help="Leave out groups with fewer predictions than this.",
    ),
    symbol: str | None = SYMBOL_OPTION,
    model_version: str | None = MODEL_VERSION_OPTION,
    days: float | None = DAYS_OPTION,
    since: str | None = SINCE_OPTION,
    until: str | None = UNTIL_OPTION,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Accuracy per group with 95% Wilson intervals, largest group first (days: in order).

    Example:

        mlpred accuracy --by symbol --horizon 1h --min-count 100

        mlpred accuracy --by day --days 7 --format json
    """
    from mlpred_cli.analysis.prediction_views import (
        accuracy_table,
        describe_selection,
        frame_records,
    )
    from mlpred_cli.render.analysis import render_accuracy

    with cli_errors(), flag_errors():
        table = accuracy_table(
            database_url(ctx),
            by=by,
            horizons=None if horizon == "all" else [horizon],
            min_count=min_count,
            symbol=symbol,
            model_version=model_version,
            days=days,
            since=since,
            until=until,
        )
        if table.empty:
            selection = describe_selection(
                symbol=symbol, model_version=model_version, days=days, since=since, until=until
            )
            what = f"group of {min_count:,} or more predictions" if min_count > 1 else "predictions"
            say_empty(f"No {what} {selection}", fmt)
            if fmt is OutputFormat.table:
                return
    chosen = HORIZONS if horizon == "all" else (horizon,)
    render_accuracy(frame_records(table), fmt, by, chosen, columns=list(table.columns))


@app.command("high-confidence", rich_help_panel="Analysis")
def high_confidence_command(
    ctx: typer.Context,
    min_confidence: float = typer.Option(
        0.8,
        "--min-confidence",
        help="Only signal_confidence above this (0-1).",
    ),
    limit: int = typer.Option(
        100, "--limit", "-n", callback=within(MAX_COUNT), help="At most this many, newest first."
    ),
    include_neutral: bool = typer.Option(
        False, "--include-neutral", help="Also show NEUTRAL signals."
    ),
    symbol: str | None = SYMBOL_OPTION,
    model_version: str | None = MODEL_VERSION_OPTION,
    days: float | None = DAYS_OPTION,
    since: str | None = SINCE_OPTION,
    until: str | None = UNTIL_OPTION,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """The newest high-confidence signals and, where backfilled, what actually happened.

    Example:

        mlpred high-confidence --min-confidence 0.8 --limit 20

        mlpred high-confidence --symbol BTCUSDT --days 7 --format csv
    """
    from mlpred_cli.analysis.prediction_views import (
        PREDICTION_VIEW_COLUMNS,
        describe_selection,
        frame_records,
        high_confidence,
    )
    from mlpred_cli.render.analysis import render_predictions

    with cli_errors(), flag_errors():
        frame = high_confidence(
            database_url(ctx),
            min_confidence=min_confidence,
            limit=limit,
            include_neutral=include_neutral,
            symbol=symbol,
            model_version=model_version,
            days=days,
            since=since,
            until=until,
        )
        if frame.empty:
            selection = describe_selection(
                symbol=symbol, model_version=model_version, days=days, since=since, until=until
            )
            kinds = "signals" if include_neutral else "LONG/SHORT signals"
            say_empty(f"No {kinds} with confidence > {min_confidence:g} {selection}", fmt)
            if fmt is OutputFormat.table:
                return
    render_predictions(
        frame_records(frame),
        fmt,
        PREDICTION_VIEW_COLUMNS,
        title=f"Signals with confidence > {min_confidence:g}",
    )


@app.command("recent", rich_help_panel="Analysis")
def recent_command(
    ctx: typer.Context,
    hours: float | None = typer.Option(
        None,
        "--hours",
        callback=within(MAX_HOURS),
        help="Only the last N hours (default 1 when no other window is given).",
    ),
    limit: int = typer.Option(
        50, "--limit", "-n", callback=within(MAX_COUNT), help="At most this many, newest first."
    ),
    symbol: str | None = SYMBOL_OPTION,
    model_version: str | None = MODEL_VERSION_OPTION,
    days: float | None = DAYS_OPTION,
    since: str | None = SINCE_OPTION,
    until: str | None = UNTIL_OPTION,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """The most recent predictions, newest first, with outcomes where backfilled.

    Example:

        mlpred recent --hours 1 --limit 50

        mlpred recent --symbol ETHUSDT --hours 6 --format json
    """
    from mlpred_cli.analysis.prediction_views import (
        PREDICTION_VIEW_COLUMNS,
        frame_records,
        recent_predictions,
        recent_selection,
    )
    from mlpred_cli.render.analysis import render_predictions

    with cli_errors(), flag_errors():
        frame = recent_predictions(
            database_url(ctx),
            hours=hours,
            limit=limit,
            symbol=symbol,
            model_version=model_version,
            days=days,
            since=since,
            until=until,
        )
        if frame.empty:
            selection = recent_selection(
                symbol=symbol,
                model_version=model_version,
                hours=hours,
                days=days,
                since=since,
                until=until,
            )
            say_empty(f"No predictions {selection.describe()}", fmt)
            if fmt is OutputFormat.table:
                return
    render_predictions(
        frame_records(frame), fmt, PREDICTION_VIEW_COLUMNS, title="Recent predictions"
    )
