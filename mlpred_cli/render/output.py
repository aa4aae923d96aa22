"""One renderer for every read command: rows or objects out as table, JSON or CSV.

JSON is stable and machine-readable: numbers stay numbers, unknown values (None, NaN, inf)
become ``null``, times are ISO 8601 in UTC, UUIDs are strings.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import uuid
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, TextIO

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table

from mlpred_cli.render.output_format import OutputFormat


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


def format_cell(value: Any) -> str:
    """Human-readable text for one table cell."""
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
    out: TextIO | None = None,
) -> None:
    """Print a list of records; ``columns`` fixes their order (default: keys of the first row)."""
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
    table = Table(
        title=title,
        header_style="bold",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        show_edge=False,
    )
    labels = headers or {}
    for name in names:
        table.add_column(labels.get(name, name), overflow="fold")
    for row in rows:
        table.add_row(*(format_cell(row.get(name)) for name in names))
    console = Console(file=stream, soft_wrap=False) if out is not None else _stdout_console()
    console.print(table)


def emit_object(
    payload: Mapping[str, Any], fmt: OutputFormat, *, out: TextIO | None = None
) -> None:
    """Print one JSON object (``json``) or its top-level fields as a two-column table."""
    stream = out or sys.stdout
    if fmt is OutputFormat.json:
        stream.write(json.dumps(to_jsonable(payload), indent=2) + "\n")
        return
    rows = [{"field": key, "value": value} for key, value in payload.items()]
    emit_rows(rows, fmt, columns=["field", "value"], out=out)
