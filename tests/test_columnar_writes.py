"""The column-wise writer path writes exactly what the row-by-row path wrote.

The reference is the tuple-per-row construction the writer used before rows were kept column
by column (``_reference_rows`` below: the list-returning derive functions zipped into
tuples), written through the tuple path (psycopg ``write_row`` COPY / sqlite3 values per
row). The writer's ``build_rows`` gives a ``PredictionColumns`` written through the
column-wise encoders (one binary COPY payload / per-column SQLite parameters). Every column
of every row must be equal, in Python and as stored, on every backend.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlpred_cli import MLPredictionLogger
from mlpred_cli.capture.pending_prediction import PendingPrediction
from mlpred_cli.capture.prediction_rows import DuplicateTracker, build_rows
from mlpred_cli.capture.synthetic_market import random_walk_candles, raw_model_outputs
from mlpred_cli.derive.feature_stats import feature_stats_columns
from mlpred_cli.derive.finite_values import floats_or_none
from mlpred_cli.derive.indicators import extract_market_data, indicator_columns, settle_markets
from mlpred_cli.derive.raw_outputs import interpret_raw_outputs, prediction_columns
from mlpred_cli.store.database import create_engine
from mlpred_cli.store.pg_copy_payload import copy_payload
from mlpred_cli.store.prediction_columns import PredictionColumns
from mlpred_cli.store.prediction_row import (
    FEATURE_COLUMNS,
    INTERPRETED_COLUMNS,
    MARKET_COLUMNS,
    WRITE_COLUMNS,
    Row,
)
from mlpred_cli.store.prediction_writes import write_rows
from mlpred_cli.store.tables import predictions_table

NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _reference_rows(
    batch: Sequence[PendingPrediction], *, store_features: bool, now: datetime
) -> list[Row]:
    """Rows as the writer built them one tuple per row (the pre-columnar ``build_rows``)."""
    count = len(batch)
    markets, _ = settle_markets([item.market for item in batch])  # what the old caller parsed
    stats = feature_stats_columns([item.features for item in batch])
    interpreted: dict[str, list[Any]] = {name: [None] * count for name in INTERPRETED_COLUMNS}
    raw_indices = [i for i, item in enumerate(batch) if item.raw_outputs is not None]
    if raw_indices:
        derived = interpret_raw_outputs(np.vstack([batch[i].raw_outputs for i in raw_indices]))  # type: ignore[misc]
        for name, values in derived.items():
            for position, index in enumerate(raw_indices):
                interpreted[name][index] = values[position]
    for index, item in enumerate(batch):
        if item.predictions is not None:
            for name, value in prediction_columns(item.predictions).items():
                interpreted[name][index] = value
    market = indicator_columns(markets)
    moments = [
        settled.last_open_time
        if settled is not None
        else datetime.fromtimestamp(item.logged_at, UTC)
        for item, settled in zip(batch, markets, strict=True)
    ]
    tracker = DuplicateTracker(100)
    flags = [
        tracker.seen_before((item.symbol, item.model_version, features_hash))
        for item, features_hash in zip(batch, stats["features_hash"], strict=True)
    ]
    none: list[Any] = [None] * count
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
        [floats_or_none(item.features) for item in batch] if store_features else none,
        [None if item.raw_outputs is None else floats_or_none(item.raw_outputs) for item in batch]
        if store_features
        else none,
        [None if i.attributions is None else floats_or_none(i.attributions) for i in batch],
        [now] * count,
        [now] * count,
    ]  # fmt: skip
    return list(zip(*columns, strict=True))


def _varied_batch(seed: int = 5) -> list[PendingPrediction]:
    """Every shape of input the writer meets: vectors and windows, NaN / inf / all-NaN
    features, raw outputs with gaps, a dict with and without raw outputs (None overriding),
    market data or none, inference times, attributions, a repeated feature vector."""
    rng = np.random.default_rng(seed)
    market = extract_market_data(
        random_walk_candles(rng, 120, end=datetime(2026, 1, 1, tzinfo=UTC))
    )
    short_market = extract_market_data(
        random_walk_candles(rng, 10, end=datetime(2026, 1, 2, tzinfo=UTC))
    )
    text_candles = random_walk_candles(rng, 40, end=datetime(2026, 1, 3, tzinfo=UTC)).reset_index()
    text_candles["datetime"] = text_candles["datetime"].dt.strftime("%Y-%m-%d %H:%M:%S")
    text_market = extract_market_data(text_candles.iloc[::-1])  # unsorted: settled by the writer
    assert text_market is not None and text_market.text_times is not None
    items: list[PendingPrediction] = []
    repeated = rng.normal(size=240)
    for i in range(60):
        kind = i % 12
        features: np.ndarray = rng.normal(size=240)
        if kind == 1:
            features[[3, 7]] = np.nan
            features[11] = np.inf
        elif kind == 2:
            features[:] = np.nan
        elif kind == 3:
            features = rng.normal(size=(5, 240))
            features[:, 4] = 1.5
            features[:, 9] = np.nan
        elif kind == 4:
            features = repeated.copy()
        elif kind == 5:
            features = rng.normal(size=(1, 30))
        raw: np.ndarray | None = raw_model_outputs(rng)
        predictions: dict[str, Any] | None = None
        if kind == 6:
            raw[[0, 5]] = np.nan  # type: ignore[index]
            raw[9] = np.inf  # type: ignore[index]
        elif kind == 7:
            raw = None
            predictions = {"returns_1h": 0.0123, "direction_1h": "LONG", "confidence_1h": 0.71,
                           "signal_type": "LONG", "signal_confidence": 0.71,
                           "primary_timeframe": "1h"}  # fmt: skip
        elif kind == 8:
            predictions = {"returns_4h": None, "signal_type": "SHORT", "risk_score": 0.4,
                           "direction_15m": None}  # fmt: skip
        attributions = None
        if kind in (3, 9):
            width = features.shape[-1]
            attributions = rng.normal(size=width)
            attributions[1] = np.nan
        items.append(
            PendingPrediction(
                prediction_id=uuid.uuid4(),
                symbol="BTCUSDT" if kind == 4 else ("BTCUSDT", "ETHUSDT", "DOGE", "ÄPFEL-€")[i % 4],
                model_version=("v1", "v2.1-rc")[i % 2],
                features=features,
                raw_outputs=raw,
                predictions=predictions,
                market=(market, None, short_market, text_market)[i % 4] if kind != 10 else None,
                inference_time_ms=None if kind == 11 else float(rng.uniform(0, 40)),
                logged_at=1_767_225_600.0 + i * 0.3337 + (0.0000005 if kind == 0 else 0.0),
                attributions=attributions,
            )
        )
    return items


def _build(batch: list[PendingPrediction], *, store_features: bool, skip: bool = False) -> Any:
    return build_rows(
        batch,
        DuplicateTracker(100),
        on_duplicate="skip" if skip else "mark",
        store_features=store_features,
        now=NOW,
    )


@pytest.mark.parametrize("store_features", [False, True])
def test_columns_hold_the_reference_rows(store_features: bool) -> None:
    batch = _varied_batch()
    built = _build(batch, store_features=store_features)
    assert isinstance(built.rows, PredictionColumns)
    reference = _reference_rows(batch, store_features=store_features, now=NOW)
    assert (
        built.marked_duplicates
        == sum(row[WRITE_COLUMNS.index("is_duplicate")] for row in reference)
        > 0
    )
    for position, (ours, theirs) in enumerate(zip(built.rows, reference, strict=True)):
        for name, mine, expected in zip(WRITE_COLUMNS, ours, theirs, strict=True):
            assert type(mine) is type(expected) and mine == expected, (
                position,
                name,
                mine,
                expected,
            )


def test_skipped_duplicates_leave_the_other_rows() -> None:
    batch = _varied_batch()
    marked = _build(batch, store_features=False)
    skipped = _build(batch, store_features=False, skip=True)
    flag = WRITE_COLUMNS.index("is_duplicate")
    kept = [row for row in marked.rows if not row[flag]]
    assert skipped.skipped_duplicates == marked.marked_duplicates > 0
    assert list(skipped.rows) == kept


def test_rows_written_at_the_half_microsecond_round_as_datetime_does() -> None:
    rng = np.random.default_rng(0)
    moments = [1_767_225_600.0000005, 1_767_225_600.0000015, 1_700_000_000.9999996, 0.5e-6]
    moments += (1.7e9 + rng.uniform(0, 1e7, 2000)).tolist()  # ~12 % round differently naively
    batch = [
        PendingPrediction(uuid.uuid4(), "BTCUSDT", "v1", np.ones(3), None, {"risk_score": 0.1},
                          None, None, moment)
        for moment in moments
    ]  # fmt: skip
    rows = _build(batch, store_features=False).rows
    position = WRITE_COLUMNS.index("datetime")
    stamp = WRITE_COLUMNS.index("timestamp")
    for row, moment in zip(rows, moments, strict=True):
        expected = datetime.fromtimestamp(moment, UTC)
        assert row[position] == expected
        assert row[stamp] == int(expected.timestamp() * 1000)


def _stored(engine: Engine) -> list[dict[str, Any]]:
    columns = ", ".join(f'"{name}"' for name in WRITE_COLUMNS)
    with engine.connect() as conn:
        result = conn.exec_driver_sql(
            f'SELECT {columns} FROM ml_predictions ORDER BY "timestamp", prediction_id'
        )
        return [dict(row._mapping) for row in result]


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        return left == right or (math.isnan(left) and math.isnan(right))
    return bool(left == right)


@pytest.mark.both_layouts
@pytest.mark.parametrize("store_features", [False, True])
def test_both_paths_store_the_same_rows(engine: Engine, store_features: bool) -> None:
    batch = _varied_batch(seed=9)
    reference = _reference_rows(batch, store_features=store_features, now=NOW)
    assert write_rows(engine, reference) == len(reference)
    before = _stored(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM ml_predictions")
    built = _build(batch, store_features=store_features)
    assert write_rows(engine, built.rows) == len(batch)
    after = _stored(engine)
    assert len(after) == len(before) == len(batch)
    for old, new in zip(before, after, strict=True):
        for name in WRITE_COLUMNS:
            assert _same(old[name], new[name]), (name, old[name], new[name])
    # idempotent: the same batch again adds nothing (the staging-table path on PostgreSQL)
    assert write_rows(engine, built.rows[10:40]) == 30
    assert len(_stored(engine)) == len(batch)


def test_a_slice_is_a_batch_of_its_rows() -> None:
    rows = _build(_varied_batch(), store_features=True).rows
    part = rows[7:19]
    assert isinstance(part, PredictionColumns)
    assert list(part) == list(rows)[7:19]
    assert part[-1] == rows[18]
    with pytest.raises(IndexError):
        rows[len(rows)]


def test_payload_is_postgresql_binary_copy() -> None:
    rows = _build(_varied_batch(), store_features=False).rows
    payload = copy_payload(rows)
    assert payload.startswith(b"PGCOPY\n\xff\r\n\x00") and payload.endswith(b"\xff\xff")
    # the first row: its field count, then the prediction_id's length and bytes
    body = payload[19:]
    assert int.from_bytes(body[:2], "big") == len(WRITE_COLUMNS)
    assert int.from_bytes(body[2:6], "big") == 16
    assert uuid.UUID(bytes=body[6:22]) == rows[0][0]


def test_empty_columns_are_refused_when_misaligned() -> None:
    with pytest.raises(ValueError, match="expected"):
        PredictionColumns([np.zeros(2)])
    good = list(_build(_varied_batch(), store_features=False).rows.values)
    good[5] = good[5][:-1]
    with pytest.raises(ValueError, match=WRITE_COLUMNS[5]):
        PredictionColumns(good)


def test_stored_rows_read_back(engine: Engine) -> None:
    rows = _build(_varied_batch(seed=2), store_features=False).rows
    write_rows(engine, rows)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM ml_predictions")).scalar_one()
    assert count == len(rows)


def test_text_times_the_writer_cannot_read_leave_the_row_without_market_data(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Text times are parsed by the writer, not the caller: one that is not a time, in the
    middle of the column, is counted and logged, and that row keeps the call's time."""
    rng = np.random.default_rng(4)
    candles = random_walk_candles(rng, 60, end=datetime(2026, 2, 1, tzinfo=UTC)).reset_index()
    candles["datetime"] = candles["datetime"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    broken = candles.copy()
    broken.loc[30, "datetime"] = "yesterday-ish"
    raw = raw_model_outputs(rng)
    before = datetime.now(UTC)
    with MLPredictionLogger(db_url, spool_dir=tmp_path / "journal") as logger:
        good = logger.log_prediction_sync(
            symbol="BTCUSDT", features=rng.normal(size=240), model_outputs=raw, market_data=candles
        )
        bad = logger.log_prediction_sync(
            symbol="BTCUSDT", features=rng.normal(size=240), model_outputs=raw, market_data=broken
        )
        assert logger.flush_sync(timeout=60)
        stats = logger.stats()
    assert stats["market_data_unread"] == 1 and stats["saved"] == 2
    assert "yesterday-ish" in caplog.text and bad in caplog.text
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = {
                str(row.prediction_id): row
                for row in conn.execute(
                    sa.select(predictions_table.c.prediction_id, predictions_table.c.datetime,
                              predictions_table.c.close_price)
                )
            }  # fmt: skip
    finally:
        engine.dispose()
    assert rows[good].close_price == pytest.approx(float(candles["close"].iloc[-1]))
    assert _aware(rows[good].datetime) == datetime(2026, 2, 1, tzinfo=UTC)
    assert rows[bad].close_price is None
    assert before <= _aware(rows[bad].datetime) <= datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
