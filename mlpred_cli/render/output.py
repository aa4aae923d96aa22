"""One renderer for every read command: rows or objects out as table, JSON or CSV.

JSON is stable and machine-readable: numbers stay numbers, unknown values (None, NaN, inf)
become ``null``, times are ISO 8601 in UTC, UUIDs are strings.

Tables never split a cell across lines: when the table is wider than the console (80
columns in a pipe or under cron, else the terminal's width or ``$COLUMNS``), columns are
left out (``table_layout``) and a line under the table says which. Times are shown to the
minute in UTC (JSON and CSV keep them whole).
"""

from __future__ import annotations

import csv
import json
import math
import sys
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TextIO

import numpy as np
import pandas as pd
from rich.console import Console

from mlpred_cli.render.output_format import OutputFormat
from mlpred_cli.render.table_layout import build_table, fit_columns


def to_jsonable(value: Any) -> Any:
    """Convert a value (recursively) to plain JSON types; NaN and inf become None."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | Decimal):
        return to_jsonable(float(value))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return [to_jsonable(item) for item in value.tolist()]
    if isinstance(value, Sequence):
        return [to_jsonable(item) for item in value]
    return str(value)


#: How a time is written in a table cell (UTC, to the minute).
TABLE_TIME_FORMAT = "%Y-%m-%d %H:%M"


def format_cell(value: Any) -> str:
    """Human-readable text for one table cell (an aware time: UTC, to the minute)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).strftime(TABLE_TIME_FORMAT)
    if isinstance(value, pd.Timestamp) and value is not pd.NaT and value.tzinfo is not None:
        return value.tz_convert(UTC).strftime(TABLE_TIME_FORMAT)
    plain = to_jsonable(value)
    if plain is None:
        return "-"
    if isinstance(plain, bool):
        return "yes" if plain else "no"
    if isinstance(plain, float):
        if abs(plain) < 1:
            text = f"{plain:.6f}".rstrip("0").rstrip(".")
            return "0" if text in ("-0", "") else text
        return f"{plain:,.4f}".rstrip("0").rstrip(".") if abs(plain) < 1e6 else f"{plain:,.0f}"
    if isinstance(plain, int):
        return f"{plain:,}" if abs(plain) >= 10_000 else str(plain)
    return str(plain)


def _stdout_console() -> Console:
    return Console(file=sys.stdout, soft_wrap=False)


def emit_rows(
    rows: Sequence[Mapping[str, Any]],
    fmt: OutputFormat,
    *,
    title: str | None = None,
    columns: Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
    drop_first: Sequence[str] = (),
    wrap: Sequence[str] = (),
    out: TextIO | None = None,
) -> None:
    """Print a list of records; ``columns`` fixes their order (default: keys of the first row).

    Table only: ``drop_first`` names the columns to leave out first when the table is too
    wide for the console (most expendable first); ``wrap`` the free-text columns whose cells
    may wrap at spaces (every other cell stays on one line)."""
    stream = out or sys.stdout
    names = list(columns) if columns is not None else (list(rows[0].keys()) if rows else [])
    if fmt is OutputFormat.json:
        payload = [{name: to_jsonable(row.get(name)) for name in names} for row in rows]
        stream.write(json.dumps(payload, indent=2) + "\n")
        return
    if fmt is OutputFormat.csv:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow(["" if (v := to_jsonable(row.get(n))) is None else v for n in names])
        return
    console = Console(file=stream, soft_wrap=False) if out is not None else _stdout_console()
    labels = headers or {}
    cells = [{name: format_cell(row.get(name)) for name in names} for row in rows]
    fit = fit_columns(console, names, cells, labels, drop_first, wrap)
    console.print(build_table(title, fit.shown, cells, labels, wrap))
    left_out = [labels.get(name, name) for name in names if name not in fit.shown]
    if left_out:
        wider = -(-fit.full_width // 10) * 10
        console.print(
            f"(left out at {console.width} columns: {', '.join(left_out)}; "
            f"see COLUMNS={wider} or --format csv)",
            markup=False,
            highlight=False,
        )


def emit_object(
    payload: Mapping[str, Any], fmt: OutputFormat, *, out: TextIO | None = None
) -> None:
    """Print one JSON object (``json``) or its top-level fields as a two-column table."""
    stream = out or sys.stdout
    if fmt is OutputFormat.json:
        stream.write(json.dumps(to_jsonable(payload), indent=2) + "\n")
        return
    rows = [{"field": key, "value": value} for key, value in payload.items()]
    emit_rows(rows, fmt, columns=["field", "value"], wrap=["value"], out=out)
