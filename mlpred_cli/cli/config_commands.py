"""`mlpred config` commands: the settings in effect and where each came from."""

from __future__ import annotations

from typing import Any

import typer

from mlpred_cli.cli.app import AppState, app
from mlpred_cli.cli.common import FORMAT_OPTION, cli_errors
from mlpred_cli.render.output_format import OutputFormat

config_app = typer.Typer(
    help="The config file (--config, $MLPRED_CONFIG, else mlpred.toml in the user config "
    "directory) and the settings in effect.",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config", rich_help_panel="Set up and log")

_CHOSEN_BY = {"--config": "from --config", "MLPRED_CONFIG": "from $MLPRED_CONFIG"}


def _cell(value: Any) -> Any:
    """A table cell of a setting: lists and tables of numbers written out in one line."""
    if isinstance(value, dict):
        return " ".join(f"{name}={item:g}" for name, item in value.items())
    if isinstance(value, list):
        return ", ".join(f"{item:g}" for item in value)
    return value


@config_app.command("show")
def show_command(ctx: typer.Context, fmt: OutputFormat = FORMAT_OPTION) -> None:
    """Print the settings in effect and where each came from.

    One line names the config file and how it was chosen (or that there is
    none), one the database in use (password masked); then every key of the
    config file with its value and its source: "default", the config file,
    or "fixed" (set by the database schema).

    Example:

        mlpred config show

        MLPRED_CONFIG=./mlpred.toml mlpred config show --format json
    """
    from rich.markup import escape

    from mlpred_cli import config, config_file
    from mlpred_cli.render.output import emit_object, emit_rows
    from mlpred_cli.store.database import mask_url

    state = ctx.obj if isinstance(ctx.obj, AppState) else AppState()
    with cli_errors():
        url, url_source = config.locate_database_url(state.db)
    loaded = config_file.loaded_config()
    rows = [
        {
            "key": setting.key,
            "value": mask_url(setting.value) if setting.key == "database.url" and setting.value
            else setting.value,
            "source": setting.source,
            "doc": setting.doc,
        }
        for setting in config.effective_settings()
    ]  # fmt: skip
    database = {"url": mask_url(url), "source": url_source}
    if fmt is OutputFormat.json:
        config_info = (
            None
            if loaded is None
            else {"path": str(loaded.path), "source": loaded.source, "keys": sorted(loaded.keys)}
        )
        emit_object(
            {
                "config_file": config_info,
                "default_path": str(config_file.default_config_path()),
                "database": database,
                "settings": rows,
            },
            fmt,
        )
        return
    if fmt is OutputFormat.csv:
        emit_rows(rows, fmt)
        return
    if loaded is None:
        looked = config_file.default_config_path()
        typer.echo(f"Config file: none (all defaults; looked for {looked})")
    else:
        chosen = _CHOSEN_BY.get(loaded.source, "found in the user config directory")
        typer.echo(f"Config file: {loaded.path} ({chosen})")
    typer.echo(f"Database: {database['url']} (from {url_source})")
    file_path = None if loaded is None else str(loaded.path)
    for table in config_file.KEYS_BY_TABLE:
        section = [
            {
                "key": row["key"].partition(".")[2],
                "value": _cell(row["value"]),
                # The first line names the file; its path would not fit 80 columns here.
                "source": "config file" if row["source"] == file_path else row["source"],
            }
            for row in rows
            if row["key"].partition(".")[0] == table
        ]
        emit_rows(
            section,
            fmt,
            title=escape(f"[{table}]"),
            columns=["key", "value", "source"],
            wrap=["value"],
        )
