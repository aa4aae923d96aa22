"""The Typer application object and the global options every command shares."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from mlpred_cli.__about__ import __version__

app = typer.Typer(
    name="mlpred",
    help=(
        "Log every prediction of an ML trading model, backfill what the market did, "
        "and measure how good the model really is.\n\n"
        "Database: --db, else $MLPRED_DATABASE_URL, else an embedded SQLite file."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class AppState:
    """What the global options resolved to; commands read it from ``ctx.obj``."""

    db: str | None = None


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"mlpred {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    db: str | None = typer.Option(
        None,
        "--db",
        help="Database URL (postgresql://user@host/db or sqlite:///path.db) or a SQLite file "
        "path. Default: $MLPRED_DATABASE_URL, else the embedded SQLite file.",
        show_default=False,
    ),
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Global options."""
    ctx.obj = AppState(db=db)
