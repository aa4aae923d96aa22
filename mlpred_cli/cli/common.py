"""Helpers shared by the command modules: the engine, error handling, common options.

The library names its parameters (``days must be positive``); ``flag_errors`` re-words its
``InputError`` messages with the flags the user typed (``--days must be positive``).

Kept light on purpose: every command module imports it at start-up, so rich, SQLAlchemy and
the library are imported only when a command runs.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from mlpred_cli.cli.app import AppState
from mlpred_cli.config import resolve_database_url
from mlpred_cli.errors import InputError, MlpredError
from mlpred_cli.render.output_format import OutputFormat

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.engine import Engine


@functools.cache
def stderr_console() -> Console:
    """The rich console on stderr, created on first use (rich costs start-up time)."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False)


FORMAT_OPTION = typer.Option(
    OutputFormat.table, "--format", "-f", help="Output format: table, json or csv."
)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error to stderr and return the ``Exit`` to raise."""
    from rich.markup import escape

    first_line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    stderr_console().print(
        f"[bold red]Error:[/] {escape(first_line)}", markup=True, highlight=False
    )
    return typer.Exit(code=code)


def say_empty(message: str, fmt: OutputFormat) -> None:
    """Say that a listing matched nothing: on stdout for the table format, on stderr for
    JSON/CSV (whose empty document the caller still prints)."""
    if fmt is OutputFormat.table:
        typer.echo(message)
    else:
        stderr_console().print(message, markup=False)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn library errors into a one-line message and exit code (2 input, 1 failure); a
    raw database driver error that escaped the library is one line too (exit 1)."""
    try:
        yield
    except MlpredError as error:
        raise fail(str(error), error.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    except Exception as error:
        message = driver_error_message(error)
        if message is None:
            raise
        raise fail(message, 1) from None


def driver_error_message(error: BaseException) -> str | None:
    """The one line a database driver's error (SQLAlchemy, psycopg, sqlite3) that escaped
    the library is reported with: its kind and the first line of the driver's message,
    password masked; None for any other error (a bug keeps its traceback)."""
    driver = type(error).__module__.split(".")[0]
    if driver not in ("sqlalchemy", "psycopg", "sqlite3"):
        return None
    from mlpred_cli.store.driver_errors import describe_error, mask_passwords, translate

    translated = translate(error)
    if translated is not None:
        return str(translated)
    return f"database error: {mask_passwords(describe_error(error))}"


#: Library parameters that are CLI flags of the same name (``min_count`` -> ``--min-count``).
FLAG_PARAMETERS = frozenset(
    {"days", "hours", "since", "until", "limit", "min_confidence", "min_count", "export", "top"}
)

_PARAMETER_WORD = re.compile(r"^([a-z_]+(?:/[a-z_]+)*)([:,]?)$")


def _is_number(word: str) -> bool:
    try:
        float(word.replace(",", ""))
    except ValueError:
        return False
    return True


def flag_wording(message: str) -> str:
    """``message`` with each word that is a parameter of ``FLAG_PARAMETERS`` (or a
    ``days/hours`` pair of them) written as its flag: ``give days/hours or since/until`` ->
    ``give --days/--hours or --since/--until``. Quoted values and paths are left alone."""
    words = message.split(" ")
    for index, word in enumerate(words):
        match = _PARAMETER_WORD.match(word)
        if match is None or (index and _is_number(words[index - 1])):
            continue  # "in the last 30 days" is a duration, not the parameter
        names = match.group(1).split("/")
        if all(name in FLAG_PARAMETERS for name in names):
            flags = "/".join(f"--{name.replace('_', '-')}" for name in names)
            words[index] = flags + match.group(2)
    return " ".join(words)


@contextmanager
def flag_errors() -> Iterator[None]:
    """Re-raise the library's ``InputError`` with its parameters named as flags."""
    try:
        yield
    except InputError as error:
        raise InputError(flag_wording(str(error))) from None


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


@contextmanager
def progress_bar(label: str, show: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr when ``show``; yields its update(done, total) callback."""
    if not show:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr_console(), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
