"""Reading archived predictions from Parquet as the frames the database reads give.

``read_archived_predictions`` filters with pyarrow's dataset reader, so only the days in
the selection's time range are opened (the hive ``date=`` directories) and only the row
groups whose statistics can match are read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mlpred_cli.errors import InputError
from mlpred_cli.history.parquet_files import TABLE_DIRECTORY
from mlpred_cli.store.archive_sql import ARCHIVE_COLUMNS, ARROW_SCHEMA
from mlpred_cli.store.prediction_queries import PAYLOAD_COLUMNS, PredictionFilter

_KINDS = dict(ARCHIVE_COLUMNS)
_PARTITIONING = ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive")
#: The dataset's schema: files written before a column was added read it as null.
_DATASET_SCHEMA = ARROW_SCHEMA.append(pa.field("date", pa.date32()))


def _columns(names: Sequence[str] | None) -> list[str]:
    if names is None:
        return [name for name, _ in ARCHIVE_COLUMNS if name not in PAYLOAD_COLUMNS]
    unknown = [name for name in names if name not in _KINDS]
    if unknown:
        raise InputError(f"unknown column {unknown[0]!r} of ml_predictions")
    return list(names)


def _filter(selection: PredictionFilter) -> ds.Expression | None:
    clauses: list[ds.Expression] = []
    timestamp = ARROW_SCHEMA.field("datetime").type
    if selection.since is not None:
        clauses.append(ds.field("date") >= selection.since.date())
        clauses.append(ds.field("datetime") >= pa.scalar(selection.since, type=timestamp))
    if selection.until is not None:
        last_day = (selection.until - timedelta(microseconds=1)).date()
        clauses.append(ds.field("date") <= last_day)
        clauses.append(ds.field("datetime") < pa.scalar(selection.until, type=timestamp))
    if selection.symbol is not None:
        clauses.append(ds.field("symbol") == selection.symbol)
    if selection.model_version is not None:
        clauses.append(ds.field("model_version") == selection.model_version)
    if not clauses:
        return None
    combined = clauses[0]
    for clause in clauses[1:]:
        combined = combined & clause
    return combined


def _series(name: str, column: pa.ChunkedArray) -> pd.Series[Any]:
    """One column as ``store.prediction_queries.read_frame`` gives it for database rows:
    pandas' own inference from Python values (all-null columns are ``object``; integers
    with nulls ``float64``; times ``datetime64[UTC]``; payloads decoded from JSON)."""
    kind = _KINDS[name]
    if column.null_count == len(column):
        values: pd.Series[Any] = pd.Series([None] * len(column), dtype=object, name=name)
        if kind == "timestamp":
            converted: pd.Series[Any] = pd.to_datetime(values, utc=True)
            return converted
        return values
    if kind == "json":
        decoded = [None if text is None else json.loads(text) for text in column.to_pylist()]
        return pd.Series(decoded, dtype=object, name=name)
    if kind == "int32":
        column = column.cast(pa.int64())
    series: pd.Series[Any] = column.to_pandas()
    series.name = name
    if kind in ("string", "uuid") and series.dtype == object:
        series = pd.Series(series.tolist(), name=name)
    return series


def archived_frame(table: pa.Table) -> pd.DataFrame:
    """An archive table's columns as the frame ``read_frame`` builds from database rows."""
    if table.num_rows == 0:
        frame = pd.DataFrame([], columns=table.column_names)
        for name in frame.columns:
            if _KINDS[name] == "timestamp":
                frame[name] = pd.to_datetime(frame[name], utc=True)
        return frame
    return pd.DataFrame({name: _series(name, table.column(name)) for name in table.column_names})


def read_archived_predictions(
    directory: Path | str,
    selection: PredictionFilter,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Archived predictions of ``selection`` (symbol, model version, ``since`` inclusive,
    ``until`` exclusive) from ``directory``, oldest first: the same columns, order and
    dtypes as ``read_predictions`` gives for rows still in the database (all columns but
    the JSON payloads, or ``columns``; ``prediction_id`` as text; times
    ``datetime64[UTC]``). Raises ``InputError`` when ``directory`` holds no archive."""
    root = Path(directory).expanduser() / TABLE_DIRECTORY
    if not root.is_dir():
        raise InputError(
            f"no archive in {root.parent}: expected {root}/date=YYYY-MM-DD/part-0.parquet"
        )
    names = _columns(columns)
    dataset = ds.dataset(root, format="parquet", partitioning=_PARTITIONING, schema=_DATASET_SCHEMA)
    wanted = list(dict.fromkeys([*names, "datetime", "id"]))
    table = dataset.to_table(columns=wanted, filter=_filter(selection))
    if table.num_rows:
        order = pc.sort_indices(table, sort_keys=[("datetime", "ascending"), ("id", "ascending")])
        table = table.take(order)
    return archived_frame(table.select(names))
