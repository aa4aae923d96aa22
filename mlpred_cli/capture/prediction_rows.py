"""Turning a batch of pending predictions into ``ml_predictions`` rows (writer thread only).

Statistics, indicators and interpretation are computed once per batch over stacked arrays,
and the rows are kept column by column (``PredictionColumns``) for the database encoders,
so the cost per row stays a few microseconds.
"""

from __future__ import annotations

import math
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mlpred_cli.capture.pending_prediction import PendingPrediction
from mlpred_cli.derive.feature_stats import feature_stats_arrays
from mlpred_cli.derive.finite_values import floats_or_none
from mlpred_cli.derive.indicators import indicator_columns, settle_markets
from mlpred_cli.derive.raw_outputs import interpret_raw_arrays, prediction_columns
from mlpred_cli.errors import InputError
from mlpred_cli.store.prediction_columns import (
    WRITE_TYPES,
    PredictionColumns,
    microseconds,
    object_array,
)
from mlpred_cli.store.prediction_row import (
    DATETIME_COLUMNS,
    FEATURE_COLUMNS,
    INTERPRETED_COLUMNS,
    MARKET_COLUMNS,
    WRITE_COLUMNS,
    Row,
)

#: Interpretation columns holding labels (text); the others are floats.
_LABELS = frozenset(
    name for name, kind in zip(WRITE_COLUMNS, WRITE_TYPES, strict=True)
    if kind == "varchar" and name in INTERPRETED_COLUMNS
)  # fmt: skip
_ZERO_VARIANCE_POSITION = WRITE_COLUMNS.index("zero_variance_count")


class DuplicateTracker:
    """Remembers the last ``window`` (symbol, model_version, features_hash) keys seen."""

    def __init__(self, window: int) -> None:
        self._window = window
        self._seen: OrderedDict[tuple[str, str, int], None] = OrderedDict()

    def seen_before(self, key: tuple[str, str, int]) -> bool:
        """True when ``key`` was seen recently; records it either way."""
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        self._seen[key] = None
        if len(self._seen) > self._window:
            self._seen.popitem(last=False)
        return False


@dataclass(frozen=True, slots=True)
class BuiltBatch:
    """Rows ready to write, plus what was dropped as a duplicate."""

    rows: Sequence[Row]
    skipped_duplicates: int
    marked_duplicates: int
    #: Predictions whose market data could not be read in the writer (text times that are
    #: not times), with the reason: their rows have no market data and the call's time.
    market_errors: tuple[tuple[PendingPrediction, str], ...] = ()


def _interpreted(batch: Sequence[PendingPrediction]) -> dict[str, np.ndarray]:
    """Interpretation columns: raw outputs through the default layout, the bot's dict on top
    (a None there overrides the raw outputs' value too)."""
    count = len(batch)
    raw_indices = [i for i, item in enumerate(batch) if item.raw_outputs is not None]
    raw = [item.raw_outputs for item in batch if item.raw_outputs is not None]
    derived = interpret_raw_arrays(np.concatenate(raw).reshape(len(raw), -1)) if raw else {}
    columns: dict[str, np.ndarray] = {}
    for name in INTERPRETED_COLUMNS:
        values = derived.get(name)
        if values is not None and len(raw_indices) == count:
            columns[name] = values
            continue
        column = np.full(count, None, dtype=object) if name in _LABELS else np.full(count, np.nan)
        if values is not None:
            column[raw_indices] = values
        columns[name] = column
    for index, item in enumerate(batch):
        if item.predictions is not None:
            for name, value in prediction_columns(item.predictions).items():
                columns[name][index] = np.nan if value is None and name not in _LABELS else value
    return columns


def _moments(batch: Sequence[PendingPrediction]) -> np.ndarray:
    """Each row's ``datetime`` in microseconds since the epoch: the last candle's open time,
    else the time of the call, rounded to the microsecond as ``datetime.fromtimestamp``
    does (half to even)."""
    seconds = np.fromiter((item.logged_at for item in batch), dtype=np.float64, count=len(batch))
    whole = np.trunc(seconds)
    fraction = np.round((seconds - whole) * 1e6)
    carry = fraction >= 1e6
    fraction[carry] -= 1e6
    whole[carry] += 1.0
    moments = whole.astype(np.int64) * 1_000_000 + fraction.astype(np.int64)
    for position, item in enumerate(batch):
        if item.market is not None:
            moments[position] = item.market.last_open_us
    return moments


def _float_column(values: Sequence[float | None]) -> np.ndarray:
    """Plain floats with None as a float64 column (None: NaN, i.e. NULL)."""
    return np.array(values, dtype=np.float64)


def build_rows(
    batch: Sequence[PendingPrediction],
    duplicates: DuplicateTracker,
    *,
    on_duplicate: str,
    store_features: bool,
    now: datetime | None = None,
) -> BuiltBatch:
    """Compute statistics, indicators and interpretation for a batch and build its rows.

    Work is done column by column over the whole batch, into a ``PredictionColumns``.
    """
    count = len(batch)
    written_at = microseconds([now or datetime.now(UTC)])[0]
    markets, reasons = settle_markets([item.market for item in batch])
    market_errors = []
    for item, settled, reason in zip(batch, markets, reasons, strict=True):
        item.market = settled  # settled (or None: unreadable), so a rebuild does not redo it
        if reason is not None:
            market_errors.append((item, reason))
    stats = feature_stats_arrays([item.features for item in batch])
    interpreted = _interpreted(batch)
    indicators = (
        {name: _float_column(values) for name, values in indicator_columns(markets).items()}
        if any(markets)
        else dict.fromkeys(MARKET_COLUMNS, np.full(count, np.nan))
    )
    moments = _moments(batch)
    flags = np.fromiter(
        (
            duplicates.seen_before((item.symbol, item.model_version, features_hash))
            for item, features_hash in zip(batch, stats["features_hash"].tolist(), strict=True)
        ),
        dtype=bool,
        count=count,
    )
    no_payload = np.full(count, None, dtype=object)
    zero_variance = stats["zero_variance_count"]
    stamps = np.full(count, written_at, dtype=np.int64)
    values: list[np.ndarray] = [
        np.frombuffer(b"".join(item.prediction_id.bytes for item in batch), dtype=np.uint8)
        .reshape(count, 16),
        object_array([item.symbol for item in batch]),
        np.trunc(moments / 1e6 * 1000).astype(np.int64),
        moments,
        *(stats[name] for name in FEATURE_COLUMNS),
        flags,
        *(indicators[name] for name in MARKET_COLUMNS),
        *(interpreted[name] for name in INTERPRETED_COLUMNS),
        object_array([item.model_version for item in batch]),
        _float_column([item.inference_time_ms for item in batch]),
        object_array([floats_or_none(item.features) for item in batch])
        if store_features
        else no_payload,
        object_array([_raw_payload(item) for item in batch]) if store_features else no_payload,
        _attribution_payloads(batch, no_payload),
        stamps,
        stamps,
    ]  # fmt: skip
    nulls: list[np.ndarray | None] = [None] * len(values)
    nulls[_ZERO_VARIANCE_POSITION] = zero_variance < 0
    rows = PredictionColumns(values, nulls)
    duplicate_count = int(flags.sum())
    if on_duplicate == "skip" and duplicate_count:
        return BuiltBatch(rows.take(~flags), duplicate_count, 0, tuple(market_errors))
    return BuiltBatch(rows, 0, duplicate_count, tuple(market_errors))


def _attribution_payloads(batch: Sequence[PendingPrediction], no_payload: np.ndarray) -> np.ndarray:
    """``feature_attributions`` of each row: a JSON list (null for NaN), or null when none
    were given (stored whatever ``store_features`` says: the caller asked by giving them)."""
    if all(item.attributions is None for item in batch):
        return no_payload
    return object_array(
        [None if item.attributions is None else floats_or_none(item.attributions) for item in batch]
    )


def _raw_payload(item: PendingPrediction) -> list[Any] | None:
    return None if item.raw_outputs is None else floats_or_none(item.raw_outputs)


def row_to_json(row: Row) -> dict[str, Any]:
    """A row as a JSON-ready mapping (UUID and datetimes as text) for the spool."""
    record: dict[str, Any] = {}
    for name, value in zip(WRITE_COLUMNS, row, strict=True):
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, float) and not math.isfinite(value):
            value = None
        record[name] = value
    return record


def row_from_json(record: dict[str, Any]) -> Row:
    """The inverse of ``row_to_json``; unknown keys are an error, missing keys are null."""
    unknown = set(record) - set(WRITE_COLUMNS)
    if unknown:
        raise InputError(f"unknown columns in spooled row: {sorted(unknown)}")
    values: list[Any] = []
    for name in WRITE_COLUMNS:
        value = record.get(name)
        if value is not None and name == "prediction_id":
            value = uuid.UUID(value)
        elif value is not None and name in DATETIME_COLUMNS:
            value = datetime.fromisoformat(value)
        values.append(value)
    return tuple(values)
