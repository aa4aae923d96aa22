"""The Typer application object and the global options every command shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from mlpred_cli.__about__ import __version__
from mlpred_cli.cli.usage_errors import OneLineErrorGroup

app = typer.Typer(
    name="mlpred",
    help=(
        "Log every prediction of an ML trading model, backfill what the market did, "
        "and measure how good the model really is.\n\n"
        "Database: --db, else $MLPRED_DATABASE_URL, else an embedded SQLite file."
    ),
    cls=OneLineErrorGroup,
    no_args_is_help=True,
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
    config_path: str | None = typer.Option(
        None,
        "--config",
        metavar="FILE",
        help="TOML config file. Default: $MLPRED_CONFIG, else mlpred.toml in the user config "
        "directory. 'mlpred config show' prints the settings in effect.",
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
    if config_path is not None:
        _check_config_was_loaded(config_path)
    ctx.obj = AppState(db=db)


def _check_config_was_loaded(path: str) -> None:
    """``--config`` takes effect when ``mlpred`` starts (``console_script.main`` reads it before
    any setting is imported); refuse it where that did not happen, e.g. an in-process call of
    ``app`` after the settings were loaded from elsewhere."""
    from mlpred_cli import config_file

    loaded = config_file.loaded_config()
    if loaded is None or loaded.path != Path(path).expanduser().resolve():
        raise typer.BadParameter(
            "the config file is read when mlpred starts: run the mlpred command "
            "(or python -m mlpred_cli) with --config before the command name",
            param_hint="'--config'",
        )
