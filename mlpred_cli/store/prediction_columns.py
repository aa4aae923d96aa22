"""A batch of ``ml_predictions`` rows held column by column: what the writer builds.

Each column of ``WRITE_COLUMNS`` is one numpy array, so a batch is encoded for the database
in a few array operations instead of one Python tuple per row. The conventions by kind:

* ``uuid``: ``(n, 16)`` uint8, the UUIDs' bytes;
* ``float8``: float64; a value that is not finite is NULL (the writer never stores NaN or
  inf in a float column: every derived figure maps them to None);
* ``int4`` / ``int8`` / ``timestamptz``: int64 (timestamps: microseconds since the Unix
  epoch, UTC), with a boolean mask of NULLs where the column has any;
* ``bool``: bool;
* ``varchar`` / ``jsonb``: object arrays of ``str`` / JSON-ready values, None for NULL.

A ``PredictionColumns`` is also a ``Sequence[Row]``: indexing gives the row tuple the
tuple path writes (UUID, aware datetimes, plain floats and ints, None), slicing gives a
``PredictionColumns`` of views, so ``write_isolating`` splits it like a list of rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, overload

import numpy as np

from mlpred_cli.store.prediction_row import DATETIME_COLUMNS, JSON_COLUMNS, WRITE_COLUMNS, Row

#: PostgreSQL type of each written column (its binary COPY format).
COLUMN_TYPES: dict[str, str] = {
    "prediction_id": "uuid",
    "symbol": "varchar",
    "timestamp": "int8",
    "features_count": "int4",
    "features_hash": "int8",
    "lookback_periods": "int4",
    "zero_variance_count": "int4",
    "nan_count": "int4",
    "inf_count": "int4",
    "is_duplicate": "bool",
    "model_version": "varchar",
    "signal_type": "varchar",
    "signal_timeframe": "varchar",
    **dict.fromkeys(DATETIME_COLUMNS, "timestamptz"),
    **dict.fromkeys(JSON_COLUMNS, "jsonb"),
}
#: The type of every written column, in ``WRITE_COLUMNS`` order.
WRITE_TYPES: tuple[str, ...] = tuple(
    COLUMN_TYPES.get(
        name, "varchar" if name.startswith("direction_") and "conf" not in name else "float8"
    )
    for name in WRITE_COLUMNS
)
#: Kinds whose arrays are int64 with a NULL mask.
MASKED_TYPES = frozenset({"int4", "int8", "timestamptz"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PredictionColumns(Sequence[Row]):
    """``ml_predictions`` rows of one batch, column by column in ``WRITE_COLUMNS`` order."""

    __slots__ = ("_nulls", "_size", "_values")

    def __init__(
        self, values: Sequence[np.ndarray], nulls: Sequence[np.ndarray | None] | None = None
    ) -> None:
        """``values``: one array per written column (see the module docstring); ``nulls``:
        per column a boolean NULL mask (int and timestamp columns only) or None."""
        if len(values) != len(WRITE_COLUMNS):
            raise ValueError(f"expected {len(WRITE_COLUMNS)} columns, got {len(values)}")
        size = len(values[0])
        masks = list(nulls) if nulls is not None else [None] * len(values)
        for name, kind, array, mask in zip(WRITE_COLUMNS, WRITE_TYPES, values, masks, strict=True):
            if len(array) != size or (mask is not None and len(mask) != size):
                raise ValueError(f"column {name} has {len(array)} values, expected {size}")
            if mask is not None and kind not in MASKED_TYPES:
                raise ValueError(f"column {name} ({kind}) takes no NULL mask")
        self._values = tuple(values)
        self._nulls = tuple(mask if mask is not None and mask.any() else None for mask in masks)
        self._size = size

    @property
    def values(self) -> tuple[np.ndarray, ...]:
        """The column arrays, in ``WRITE_COLUMNS`` order."""
        return self._values

    @property
    def nulls(self) -> tuple[np.ndarray | None, ...]:
        """Per column, the NULL mask of an int or timestamp column that has NULLs."""
        return self._nulls

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, index: int) -> Row: ...

    @overload
    def __getitem__(self, index: slice) -> PredictionColumns: ...

    def __getitem__(self, index: int | slice) -> Row | PredictionColumns:
        if isinstance(index, slice):
            return self.take(index)
        if not -self._size <= index < self._size:
            raise IndexError(f"row {index} of {self._size}")
        return tuple(
            _python_value(kind, array[index], mask is not None and bool(mask[index]))
            for kind, array, mask in zip(WRITE_TYPES, self._values, self._nulls, strict=True)
        )

    def __iter__(self) -> Iterator[Row]:
        for index in range(self._size):
            yield self[index]

    def take(self, selection: slice | np.ndarray) -> PredictionColumns:
        """The rows a slice, a boolean mask or an index array selects."""
        return PredictionColumns(
            [array[selection] for array in self._values],
            [None if mask is None else mask[selection] for mask in self._nulls],
        )


def _python_value(kind: str, value: Any, null: bool) -> Any:
    """One cell as the tuple path holds it."""
    if null:
        return None
    if kind == "float8":
        number = float(value)
        return number if np.isfinite(number) else None
    if kind in ("int4", "int8"):
        return int(value)
    if kind == "timestamptz":
        return _EPOCH + timedelta(microseconds=int(value))
    if kind == "uuid":
        return uuid.UUID(bytes=bytes(value))
    if kind == "bool":
        return bool(value)
    return value  # varchar and jsonb: already Python objects


def microseconds(moments: Sequence[datetime]) -> np.ndarray:
    """Aware datetimes as int64 microseconds since the Unix epoch."""
    return np.fromiter(
        ((moment - _EPOCH) // timedelta(microseconds=1) for moment in moments),
        dtype=np.int64,
        count=len(moments),
    )


def object_array(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array of ``values`` (lists stay single cells, unlike ``np.array``)."""
    return np.fromiter(values, dtype=object, count=len(values))
