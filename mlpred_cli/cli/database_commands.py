"""Database administration commands."""

from __future__ import annotations

import typer

from mlpred_cli.cli.app import app
from mlpred_cli.cli.common import cli_errors, open_engine


@app.command("init-db", rich_help_panel="Set up and log")
def init_db(ctx: typer.Context) -> None:
    """Create or migrate the database schema to the newest revision (safe to run again).

    Example:

        mlpred init-db

        mlpred --db postgresql://postgres@127.0.0.1:5432/mlpred init-db
    """
    from mlpred_cli.store.database import mask_url
    from mlpred_cli.store.migrations import current_revision, upgrade_to_head

    with cli_errors():
        engine = open_engine(ctx, require_schema=False)
        before = current_revision(engine)
        revision = upgrade_to_head(engine)
        engine.dispose()
    state = "already at" if before == revision else "migrated to"
    typer.echo(f"Database: {mask_url(engine.url)}")
    typer.echo(f"Revision: {revision} ({state} head)")
