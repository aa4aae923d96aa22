"""Helpers shared by the command modules: the engine, error handling, common options.

Kept light on purpose: every command module imports it at start-up, so rich, SQLAlchemy and
the library are imported only when a command runs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from mlpred_cli.cli.app import AppState
from mlpred_cli.config import resolve_database_url
from mlpred_cli.errors import MlpredError
from mlpred_cli.render.output_format import OutputFormat

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.engine import Engine


class _StderrConsole:
    """A rich ``Console`` on stderr, created on first use (rich costs start-up time)."""

    _console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, soft_wrap=True, highlight=False)
        return getattr(self._console, name)


stderr_console: Any = _StderrConsole()

FORMAT_OPTION = typer.Option(
    OutputFormat.table, "--format", "-f", help="Output format: table, json or csv."
)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error to stderr and return the ``Exit`` to raise."""
    first_line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    stderr_console.print(f"[bold red]Error:[/] {first_line}", markup=True, highlight=False)
    return typer.Exit(code=code)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn library errors into a one-line message and exit code (2 input, 1 failure)."""
    try:
        yield
    except MlpredError as error:
        raise fail(str(error), error.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None


def database_url(ctx: typer.Context) -> str:
    """The database URL the global options and environment resolve to."""
    state = ctx.obj if isinstance(ctx.obj, AppState) else AppState()
    return resolve_database_url(state.db)


def open_engine(ctx: typer.Context, *, require_schema: bool = True) -> Engine:
    """An engine for the configured database, checked to be reachable (and migrated)."""
    from mlpred_cli.store.database import check_connection, create_engine, normalize_url
    from mlpred_cli.store.migrations import require_schema as check_schema

    engine = create_engine(normalize_url(database_url(ctx)))
    if require_schema:
        check_schema(engine)
    else:
        check_connection(engine)
    return engine


def is_interactive() -> bool:
    """True when stdout is a terminal (progress bars); False under cron and pipes."""
    return sys.stdout.isatty()
