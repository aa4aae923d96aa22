"""The ranges of the numeric options, named once: what the library can actually serve.

An option declares its range with ``callback=within(...)``: a value out of range
(``1e10``, ``inf``, ``nan``, ``99999999999999999999``) is a one-line usage error, exit 2.
Lower bounds that the library already checks (``--days must be positive``) are left to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import typer

# ``--days`` at most 100 years back (no prediction log goes further), ``--hours`` the same:
# the limits of the config file's window keys, re-exported for the commands.
from mlpred_cli.config_file import MAX_DAYS as MAX_DAYS
from mlpred_cli.config_file import MAX_HOURS as MAX_HOURS

#: ``--limit``, ``--min-count``, ``--top``: a 32-bit count (SQL LIMIT on every backend).
MAX_COUNT = 2**31 - 1
#: ``--days-ahead``: a year of day partitions made at once.
MAX_DAYS_AHEAD = 366

Number = TypeVar("Number", int, float)


def _text(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def within(
    maximum: Number, minimum: Number | None = None
) -> Callable[[Number | None], Number | None]:
    """An option callback refusing NaN and values above ``maximum`` (or below ``minimum``)."""

    def check(value: Number | None) -> Number | None:
        if value is None:
            return None
        if isinstance(value, float) and math.isnan(value):
            raise typer.BadParameter("nan is not a number")
        if value > maximum:
            raise typer.BadParameter(f"must be at most {_text(maximum)}, got {_text(value)}")
        if minimum is not None and value < minimum:
            raise typer.BadParameter(f"must be at least {_text(minimum)}, got {_text(value)}")
        return value

    return check
