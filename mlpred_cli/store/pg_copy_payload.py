"""PostgreSQL's binary COPY format for a ``PredictionColumns`` batch, built column-wise.

The format: a signature and header, then per row an int16 field count and, per field, an
int32 byte length (-1 for NULL) and that many bytes of the value in network order; a
trailer of int16 -1. Here every row is laid out in one ``(rows, width)`` byte matrix: each
column owns a fixed slice of it, wide enough for its longest value, and is filled for all
rows by one array assignment. When some fields are shorter than their slice (NULLs, text of
varying length), a byte mask keeps only the used bytes, in row order. No Python code runs
per row, so the cost is a few array passes over the batch (the GIL is held, but briefly).
"""

from __future__ import annotations

import json

import numpy as np

from mlpred_cli.store.prediction_columns import WRITE_TYPES, PredictionColumns

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
#: Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
_PG_EPOCH_US = 946_684_800_000_000
_JSONB_VERSION = b"\x01"
_NUMERIC_FORMATS = {"float8": ">f8", "int4": ">i4", "int8": ">i8", "timestamptz": ">i8"}


class _Field:
    """One column of the batch as value bytes: ``data`` (rows x width) and the byte length
    of each row's value (-1: NULL); ``lengths`` is a scalar when every row has the same."""

    __slots__ = ("data", "lengths")

    def __init__(self, data: np.ndarray, lengths: np.ndarray | int) -> None:
        self.data = data
        self.lengths = lengths

    @property
    def uniform(self) -> bool:
        """Every row's value has the same length."""
        return isinstance(self.lengths, int)


def copy_payload(batch: PredictionColumns) -> bytes:
    """The whole binary COPY stream (signature, rows, trailer) of ``batch``."""
    rows = len(batch)
    fields = [
        _field(kind, values, nulls, rows)
        for kind, values, nulls in zip(WRITE_TYPES, batch.values, batch.nulls, strict=True)
    ]
    widths = [4 + field.data.shape[1] for field in fields]
    matrix = np.empty((rows, 2 + sum(widths)), dtype=np.uint8)
    matrix[:, :2] = np.frombuffer(np.array(len(fields), dtype=">i2").tobytes(), dtype=np.uint8)
    mask: np.ndarray | None = None
    offset = 2
    for field, width in zip(fields, widths, strict=True):
        lengths = np.asarray(field.lengths, dtype=">i4")
        matrix[:, offset : offset + 4] = lengths.reshape(-1, 1).view(np.uint8).reshape(-1, 4)
        value_width = width - 4
        if value_width:
            matrix[:, offset + 4 : offset + width] = field.data
            if not isinstance(field.lengths, int) or field.lengths < value_width:
                if mask is None:
                    mask = np.ones(matrix.shape, dtype=bool)
                used = np.maximum(np.asarray(field.lengths), 0).reshape(-1, 1)
                mask[:, offset + 4 : offset + width] = np.arange(value_width) < used
        offset += width
    body = matrix.tobytes() if mask is None else matrix[mask].tobytes()
    return SIGNATURE + body + TRAILER


def _field(kind: str, values: np.ndarray, nulls: np.ndarray | None, rows: int) -> _Field:
    if kind in _NUMERIC_FORMATS:
        return _numeric_field(kind, values, nulls, rows)
    if kind == "uuid":
        return _Field(np.ascontiguousarray(values, dtype=np.uint8), 16)
    if kind == "bool":
        return _Field(values.astype(np.uint8).reshape(rows, 1), 1)
    if kind == "varchar":
        return _text_field(values, rows)
    return _bytes_field(
        [None if value is None else _JSONB_VERSION + json.dumps(value).encode() for value in values]
    )


def _numeric_field(kind: str, values: np.ndarray, nulls: np.ndarray | None, rows: int) -> _Field:
    null = ~np.isfinite(values) if kind == "float8" else nulls
    if kind == "timestamptz":
        values = values - _PG_EPOCH_US
    size = 8 if kind != "int4" else 4
    if null is not None and null.all():
        return _Field(np.empty((rows, 0), dtype=np.uint8), -1)
    data = values.astype(_NUMERIC_FORMATS[kind]).view(np.uint8).reshape(rows, size)
    if null is None or not null.any():
        return _Field(data, size)
    return _Field(data, np.where(null, -1, size))


def _text_field(values: np.ndarray, rows: int) -> _Field:
    """UTF-8 text; each distinct value is encoded once (symbols and labels repeat)."""
    codes: dict[object, int] = {}
    positions = np.fromiter(
        (codes.setdefault(value, len(codes)) for value in values), dtype=np.intp, count=rows
    )
    distinct = _bytes_field([None if value is None else str(value).encode() for value in codes])
    if distinct.uniform:
        return _Field(distinct.data[positions], distinct.lengths)
    return _Field(distinct.data[positions], np.asarray(distinct.lengths)[positions])


def _bytes_field(items: list[bytes | None]) -> _Field:
    """Values given as bytes (None: NULL), padded into one matrix."""
    lengths = np.fromiter(
        (-1 if item is None else len(item) for item in items), dtype=np.int64, count=len(items)
    )
    width = int(lengths.max(initial=0))
    data = np.zeros((len(items), width), dtype=np.uint8)
    if width:
        joined = b"".join(item for item in items if item)
        data[np.arange(width) < lengths.reshape(-1, 1)] = np.frombuffer(joined, dtype=np.uint8)
    if len(items) and (lengths == lengths[0]).all() and lengths[0] == width:
        return _Field(data, width)
    return _Field(data, lengths)
