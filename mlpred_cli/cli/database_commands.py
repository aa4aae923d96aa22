"""Database administration commands."""

from __future__ import annotations

import typer

from mlpred_cli.cli.app import app
from mlpred_cli.cli.common import cli_errors, database_url, open_engine
from mlpred_cli.cli.partition_commands import DAYS_AHEAD_OPTION, days_ahead_value, layout_line


@app.command("init-db", rich_help_panel="Set up and log")
def init_db(
    ctx: typer.Context,
    partitioned: bool = typer.Option(
        False,
        "--partitioned",
        help="PostgreSQL: store ml_predictions partitioned by day (converts an existing "
        "table, keeping every row). A partitioned database stays partitioned without it.",
    ),
    days_ahead: int = DAYS_AHEAD_OPTION,
    create: bool = typer.Option(
        False,
        "--create",
        help="PostgreSQL: create the database first if it does not exist (CREATE DATABASE "
        "through the server's 'postgres' database, same credentials; needs the CREATEDB "
        "privilege). Harmless when it exists; SQLite creates its file anyway.",
    ),
) -> None:
    """Create or migrate the database schema to the newest revision (safe to run again).

    With --partitioned (PostgreSQL only) ml_predictions becomes a table partitioned by
    day: one partition per UTC day from the oldest row to --days-ahead days after today,
    plus a default partition for any other day. Converting a table that holds rows copies
    them in one transaction, during which loggers wait.

    A PostgreSQL database that does not exist is an error naming how to create it;
    --create creates it.

    Example:

        mlpred init-db

        mlpred --db postgresql://postgres@127.0.0.1:5432/mlpred init-db --partitioned

        mlpred --db postgresql://postgres@127.0.0.1:5432/mlpred init-db --create
    """
    from mlpred_cli.history.partitioning import set_up_database
    from mlpred_cli.store.database import mask_url, normalize_url
    from mlpred_cli.store.database_creation import ensure_database

    with cli_errors():
        ahead = days_ahead_value(days_ahead)
        url = normalize_url(database_url(ctx))
        created = ensure_database(url, create=create)
        engine = open_engine(ctx, require_schema=False)
        try:
            setup = set_up_database(engine, partitioned=partitioned, days_ahead=ahead)
        finally:
            engine.dispose()
    state = "migrated to" if setup.migrated else "already at"
    if created:
        typer.echo(f"Created database {url.database}")
    typer.echo(f"Database: {mask_url(engine.url)}")
    typer.echo(f"Revision: {setup.revision} ({state} head)")
    typer.echo(layout_line(setup.partitions))
    if setup.partitions.converted:
        typer.echo(f"Converted: {setup.partitions.rows_converted} rows kept")
