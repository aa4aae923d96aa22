"""Commands around the logger: the synthetic end-to-end run and the spool."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mlpred_cli.cli.app import app
from mlpred_cli.cli.common import FORMAT_OPTION, cli_errors, database_url, fail
from mlpred_cli.render.output_format import OutputFormat

if TYPE_CHECKING:
    from mlpred_cli.capture.self_check import LogTestResult

spool_app = typer.Typer(
    help="Rows waiting on disk while the database was unavailable.", no_args_is_help=True
)
app.add_typer(spool_app, name="spool", rich_help_panel="Set up and log")

SPOOL_DIR_OPTION = typer.Option(
    None, "--spool-dir", help="Spool directory (default: the logger's for this database)."
)


@app.command("log-test", rich_help_panel="Set up and log")
def log_test(
    ctx: typer.Context,
    symbols: str = typer.Option("BTCUSDT,ETHUSDT,SOLUSDT", help="Comma-separated symbols."),
    count: int = typer.Option(3, min=1, help="Predictions per symbol (at most 100,000)."),
    candles: int = typer.Option(
        300, min=1, help="Candles of market data per prediction (at most 100,000)."
    ),
    seed: int | None = typer.Option(None, help="Random seed (repeatable runs)."),
    model_version: str = typer.Option("log-test", help="Model version written on the rows."),
    keep: bool = typer.Option(
        False, "--keep", help="Keep the test predictions in the database (default: removed)."
    ),
) -> None:
    """Log synthetic predictions end to end through the real logger and read them back.

    Migrates an empty database first. The test predictions are deleted again once read back
    (the database is left as it was); --keep keeps them. Exits 0 only when every logged
    prediction was saved.

    Example:

        mlpred log-test --symbols BTCUSDT,ETHUSDT --count 5 --seed 42
    """
    names = [name.strip() for name in symbols.split(",") if name.strip()]
    if not names:
        raise fail("--symbols names no symbol", 2)
    from mlpred_cli.capture.self_check import MAX_CANDLES, MAX_COUNT, run_log_test

    for flag, value, limit in (("--count", count, MAX_COUNT), ("--candles", candles, MAX_CANDLES)):
        if value > limit:
            raise fail(f"{flag} must be at most {limit:,}, got {value}", 2)
    from mlpred_cli.render.output import emit_rows

    with cli_errors():
        result = run_log_test(
            database_url(ctx),
            symbols=names,
            count=count,
            candles=candles,
            seed=seed,
            model_version=model_version,
            keep=keep,
        )
    emit_rows(
        [_display_row(row) for row in result.saved_rows],
        OutputFormat.table,
        title="Saved predictions",
    )
    batch = "-" if result.mean_batch_ms is None else f"{result.mean_batch_ms:.1f} ms"
    typer.echo(
        f"Logged {result.logged}, read back {len(result.saved_rows)} from {result.database}. "
        f"Caller overhead p50 {result.overhead_p50_us:.1f} us, "
        f"p99 {result.overhead_p99_us:.1f} us; mean batch save {batch}; "
        f"{result.rows_per_second:,.0f} predictions/s end to end."
    )
    typer.echo(_cleanup_line(result))
    if not result.complete:
        raise fail(f"{len(result.missing)} logged predictions were not saved", 1)


def _cleanup_line(result: LogTestResult) -> str:
    """What became of the test predictions: kept, or removed (and how many)."""
    if result.kept:
        return (
            f"Kept the {len(result.saved_rows)} test predictions in the database "
            "(--keep); they are synthetic and count in accuracy and reports."
        )
    return f"Removed the {result.removed} test predictions it wrote; --keep keeps them."


def _percent(value: object, spec: str) -> str:
    return "-" if not isinstance(value, int | float) else format(value, spec)


def _display_row(row: dict[str, Any]) -> dict[str, object]:
    """One saved prediction as log-test shows it (percentages, rounded milliseconds)."""
    return {
        "Symbol": row["symbol"],
        "Signal": row["signal_type"],
        "Confidence": _percent(row["signal_confidence"], ".1%"),
        "Return 15m": _percent(row["predicted_return_15m"], "+.3%"),
        "Direction": row["direction_15m"],
        "Features": row["features_count"],
        "Inference ms": _percent(row["inference_time_ms"], ".1f"),
    }


@spool_app.command("status")
def spool_status_command(
    ctx: typer.Context,
    spool_dir: Path | None = SPOOL_DIR_OPTION,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Show what waits on disk: journal segments of loggers that are gone (replayable), of
    loggers still running, dead-lettered rows and quarantined bytes.

    Example:

        mlpred spool status --format json
    """
    from mlpred_cli.capture.spool_replay import spool_status
    from mlpred_cli.render.output import emit_object

    with cli_errors():
        status = spool_status(database_url(ctx), spool_dir)
    emit_object(_listing_directories(status.as_dict(), fmt), fmt)


def _listing_directories(payload: dict[str, object], fmt: OutputFormat) -> dict[str, object]:
    """``payload`` with its ``directories`` list as one comma-separated cell outside JSON."""
    directories = payload.get("directories")
    if fmt is not OutputFormat.json and isinstance(directories, list):
        payload = {**payload, "directories": ", ".join(str(path) for path in directories)}
    return payload


@spool_app.command("replay")
def spool_replay_command(
    ctx: typer.Context,
    spool_dir: Path | None = SPOOL_DIR_OPTION,
    dead_letters: bool = typer.Option(
        False, "--dead-letters", help="Also try the dead-lettered rows again (cause fixed)."
    ),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Write what loggers that are gone left on disk into the database now (safe to repeat:
    no row is written twice; a running logger's journal is left to it).

    Example:

        mlpred spool replay --dead-letters
    """
    from mlpred_cli.capture.spool_replay import replay_spool
    from mlpred_cli.render.output import emit_object

    with cli_errors():
        result = replay_spool(database_url(ctx), spool_dir, dead_letters=dead_letters)
    payload: dict[str, object] = {
        "replayed": result.replayed,
        "dead_lettered": result.dead_lettered,
        "quarantined_regions": result.quarantined_regions,
        "remaining_rows": result.remaining.rows,
        "live_rows": result.remaining.live_rows,
        "directory": str(result.remaining.directory),
        "directories": result.remaining.as_dict()["directories"],
    }
    emit_object(_listing_directories(payload, fmt), fmt)


@spool_app.command("export")
def spool_export_command(
    ctx: typer.Context,
    out: Path = typer.Argument(..., help="New JSON-lines file to write (0600)."),
    spool_dir: Path | None = SPOOL_DIR_OPTION,
) -> None:
    """Write the dead-lettered rows and everything quarantined to a JSON-lines file, one
    object per item with a "kind", for a human to inspect or repair.

    Example:

        mlpred spool export rejected.jsonl
    """
    from mlpred_cli.capture.spool_replay import export_spool

    with cli_errors():
        result = export_spool(out, database_url(ctx), spool_dir)
    typer.echo(
        f"Wrote {result.dead_letters} dead letters and {result.quarantined_items} "
        f"quarantined items to {result.path}."
    )
