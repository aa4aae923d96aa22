"""The ``executemany`` parameters of a ``PredictionColumns`` batch for SQLite, built per column.

They are exactly what the tuple path binds (``prediction_writes._sqlite_values``): the UUID
as 32 hex digits, booleans as 0/1, timestamps as the naive-UTC text SQLAlchemy's SQLite
``DateTime`` stores (``YYYY-MM-DD HH:MM:SS.ffffff``), JSON as text, None for NULL (a float
that is not finite included).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mlpred_cli.store.prediction_columns import WRITE_TYPES, PredictionColumns


def sqlite_parameters(batch: PredictionColumns) -> list[tuple[Any, ...]]:
    """One parameter tuple per row, in ``WRITE_COLUMNS`` order."""
    columns = [
        _column(kind, values, nulls)
        for kind, values, nulls in zip(WRITE_TYPES, batch.values, batch.nulls, strict=True)
    ]
    return list(zip(*columns, strict=True))


def _column(kind: str, values: np.ndarray, nulls: np.ndarray | None) -> list[Any]:
    if kind == "float8":
        return _with_nulls(values.tolist(), ~np.isfinite(values))
    if kind in ("int4", "int8"):
        return _with_nulls(values.tolist(), nulls)
    if kind == "timestamptz":
        return _with_nulls(_datetime_texts(values), nulls)
    if kind == "uuid":
        digits = np.ascontiguousarray(values, dtype=np.uint8).tobytes().hex()
        return [digits[start : start + 32] for start in range(0, len(digits), 32)]
    if kind == "bool":
        flags: list[Any] = values.astype(np.int64).tolist()
        return flags
    if kind == "jsonb":
        return [None if value is None else json.dumps(value) for value in values]
    texts: list[Any] = values.tolist()
    return texts


def _with_nulls(cells: list[Any], nulls: np.ndarray | None) -> list[Any]:
    if nulls is not None and nulls.any():
        for position in np.flatnonzero(nulls).tolist():
            cells[position] = None
    return cells


def _datetime_texts(microseconds: np.ndarray) -> list[str]:
    """Naive-UTC text of each timestamp; each distinct moment is formatted once."""
    distinct, positions = np.unique(microseconds, return_inverse=True)
    iso = np.datetime_as_string(distinct.astype("datetime64[us]"), unit="us").tolist()
    texts = np.array([text[:10] + " " + text[11:] for text in iso], dtype=object)
    out: list[str] = texts[positions].tolist()
    return out
