"""Turning a batch of pending predictions into ``ml_predictions`` rows (writer thread only).

Statistics and interpretation are computed once per batch over stacked arrays, so the cost
per row stays a few microseconds.
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
from mlpred_cli.derive.feature_stats import feature_stats_columns
from mlpred_cli.derive.finite_values import floats_or_none
from mlpred_cli.derive.indicators import indicator_columns
from mlpred_cli.derive.raw_outputs import interpret_raw_outputs, prediction_columns
from mlpred_cli.errors import InputError
from mlpred_cli.store.prediction_row import (
    DATETIME_COLUMNS,
    FEATURE_COLUMNS,
    INTERPRETED_COLUMNS,
    MARKET_COLUMNS,
    WRITE_COLUMNS,
    Row,
)


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

    rows: list[Row]
    skipped_duplicates: int
    marked_duplicates: int


def _interpreted(batch: Sequence[PendingPrediction]) -> dict[str, list[Any]]:
    """Interpretation columns: raw outputs through the default layout, the bot's dict on top."""
    count = len(batch)
    columns: dict[str, list[Any]] = {name: [None] * count for name in INTERPRETED_COLUMNS}
    raw_indices = [i for i, item in enumerate(batch) if item.raw_outputs is not None]
    if raw_indices:
        stacked = np.vstack([batch[i].raw_outputs for i in raw_indices])  # type: ignore[misc]
        derived = interpret_raw_outputs(stacked)
        for name, values in derived.items():
            if len(raw_indices) == count:
                columns[name] = list(values)
            else:
                target = columns[name]
                for position, index in enumerate(raw_indices):
                    target[index] = values[position]
    for index, item in enumerate(batch):
        if item.predictions is not None:
            for name, value in prediction_columns(item.predictions).items():
                columns[name][index] = value
    return columns


def build_rows(
    batch: Sequence[PendingPrediction],
    duplicates: DuplicateTracker,
    *,
    on_duplicate: str,
    store_features: bool,
    now: datetime | None = None,
) -> BuiltBatch:
    """Compute statistics, indicators and interpretation for a batch and build its rows.

    Work is done column by column over the whole batch; rows are zipped at the end.
    """
    count = len(batch)
    written_at = now or datetime.now(UTC)
    stats = feature_stats_columns([item.features for item in batch])
    interpreted = _interpreted(batch)
    market = indicator_columns([item.market for item in batch])
    moments = [
        item.market.last_open_time
        if item.market is not None
        else datetime.fromtimestamp(item.logged_at, UTC)
        for item in batch
    ]
    flags = [
        duplicates.seen_before((item.symbol, item.model_version, features_hash))
        for item, features_hash in zip(batch, stats["features_hash"], strict=True)
    ]
    no_payload: list[Any] = [None] * count
    columns: list[list[Any]] = [
        [item.prediction_id for item in batch],
        [item.symbol for item in batch],
        [int(moment.timestamp() * 1000) for moment in moments],
        moments,
        *(stats[name] for name in FEATURE_COLUMNS),
        flags,
        *(market[name] for name in MARKET_COLUMNS),
        *(interpreted[name] for name in INTERPRETED_COLUMNS),
        [item.model_version for item in batch],
        [item.inference_time_ms for item in batch],
        [floats_or_none(item.features) for item in batch] if store_features else no_payload,
        [_raw_payload(item) for item in batch] if store_features else no_payload,
        _attribution_payloads(batch, no_payload),
        [written_at] * count,
        [written_at] * count,
    ]
    rows: list[Row] = list(zip(*columns, strict=True))
    duplicate_count = sum(flags)
    if on_duplicate == "skip" and duplicate_count:
        rows = [row for row, flag in zip(rows, flags, strict=True) if not flag]
        return BuiltBatch(rows=rows, skipped_duplicates=duplicate_count, marked_duplicates=0)
    return BuiltBatch(rows=rows, skipped_duplicates=0, marked_duplicates=duplicate_count)


def _attribution_payloads(batch: Sequence[PendingPrediction], no_payload: list[Any]) -> list[Any]:
    """``feature_attributions`` of each row: a JSON list (null for NaN), or null when none
    were given (stored whatever ``store_features`` says: the caller asked by giving them)."""
    if all(item.attributions is None for item in batch):
        return no_payload
    return [
        None if item.attributions is None else floats_or_none(item.attributions) for item in batch
    ]


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
