"""Caller-supplied feature attributions: through the logger (array, index and name mappings),
refused input, the journal (new and old record format), the spool, the archive (with the
column and from files written before it) and the bulk loader."""

from __future__ import annotations

import hashlib
import json
import math
import struct
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlpred_cli import MLPredictionLogger, load_predictions
from mlpred_cli.capture.journal import Journal, segment_files
from mlpred_cli.capture.journal_records import decode, encode_prediction, frame
from mlpred_cli.capture.pending_prediction import PendingPrediction
from mlpred_cli.capture.prediction_rows import row_from_json, row_to_json
from mlpred_cli.capture.spool import Spool
from mlpred_cli.capture.spool_replay import replay_spool
from mlpred_cli.errors import InputError
from mlpred_cli.history import parquet_files
from mlpred_cli.history.archive import archive_predictions, restore_archive
from mlpred_cli.history.archived_rows import read_archived_predictions
from mlpred_cli.outcomes.rollups import rebuild_rollups
from mlpred_cli.store.archive_sql import ARROW_SCHEMA
from mlpred_cli.store.attribution_vectors import attribution_lengths, load_attribution_matrix
from mlpred_cli.store.prediction_queries import PredictionFilter
from mlpred_cli.store.prediction_row import WRITE_COLUMNS
from mlpred_cli.store.prediction_writes import write_rows
from mlpred_cli.store.tables import predictions_table
from tests.cli_helpers import run_cli
from tests.factories import written_rows

pytestmark = pytest.mark.both_layouts  # PostgreSQL also on the table partitioned by day

P = predictions_table.c
RAW = np.linspace(-1, 1, 20)
NAMES = ("rsi", "macd", "atr", "volume", "trend", "spread")
ATTRIBUTIONS = WRITE_COLUMNS.index("feature_attributions")


def _stored(engine: Engine) -> dict[uuid.UUID, Any]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(P.prediction_id, P.feature_attributions)).all()
    return dict(rows)


def _sql_nulls(engine: Engine) -> int:
    """Rows whose ``feature_attributions`` is SQL NULL (not JSON null)."""
    with engine.connect() as conn:
        statement = sa.select(sa.func.count()).where(P.feature_attributions.is_(None))
        return int(conn.execute(statement).scalar_one())


# ---------------------------------------------------------------- through the logger


def test_array_index_and_name_attributions_round_trip(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    features = np.arange(6, dtype=np.float64)
    window = np.vstack([features, features + 1, features + 2])  # vector = last row
    with MLPredictionLogger(
        db_url, spool_dir=tmp_path / "spool", feature_names=NAMES, flush_interval_s=0.02,
        handle_signals=False,
    ) as logger:  # fmt: skip
        given = [0.5, -0.25, float("nan"), 1e-300, -3, 7]
        buffer = np.array(given)
        as_array = logger.log_prediction_sync(
            symbol="BTCUSDT", features=features, model_outputs=RAW, attributions=buffer
        )
        buffer[:] = 99.0  # the caller reuses its buffer: the logged copy is unchanged
        by_index = logger.log_prediction_sync(
            symbol="BTCUSDT", features=window, model_outputs=RAW,
            attributions={0: 1.5, np.int64(3): -2, 5: np.float32(0.125)},
        )  # fmt: skip
        by_name = logger.log_prediction_sync(
            symbol="ETHUSDT", features=features, model_outputs=RAW,
            attributions={"atr": 0.25, "spread": -1.0},
        )  # fmt: skip
        one_sample = logger.log_prediction_sync(
            symbol="ETHUSDT", features=features, model_outputs=RAW,
            attributions=np.arange(6).reshape(1, 6),  # what explainer.shap_values(x[None]) gives
        )  # fmt: skip
        # a pandas Series keyed by name, in the explainer's order: aligned by name
        by_series = logger.log_prediction_sync(
            symbol="ETHUSDT", features=features, model_outputs=RAW,
            attributions=pd.Series({"spread": -1.0, "atr": 0.25}),
        )  # fmt: skip
        without = logger.log_prediction_sync(symbol="SOLUSDT", features=features, model_outputs=RAW)
        assert logger.flush_sync(timeout=30)
    stored = _stored(engine)
    assert stored[uuid.UUID(as_array)] == [0.5, -0.25, None, 1e-300, -3.0, 7.0]
    assert stored[uuid.UUID(by_index)] == [1.5, None, None, -2.0, None, 0.125]
    assert stored[uuid.UUID(by_name)] == [None, None, 0.25, None, None, -1.0]
    assert stored[uuid.UUID(one_sample)] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert stored[uuid.UUID(by_series)] == [None, None, 0.25, None, None, -1.0]
    assert stored[uuid.UUID(without)] is None
    assert _sql_nulls(engine) == 1  # SQL NULL, not a JSON null

    frame = load_predictions(db_url, columns=["prediction_id", "feature_attributions"])
    by_id = dict(zip(frame["prediction_id"], frame["feature_attributions"], strict=True))
    assert by_id[by_name] == [None, None, 0.25, None, None, -1.0]
    assert by_id[without] is None
    assert "feature_attributions" not in load_predictions(db_url).columns


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("attributions", "message"),
    [
        ([0.1, 0.2], "attributions have 2 values, the feature vector has 6"),
        (np.zeros((2, 6)), "attributions must be 1-D, got shape (2, 6)"),
        (["a"] * 6, "attributions must be numbers"),
        ([True] * 6, "attributions must be numbers, got a bool"),
        (np.array([True] * 6), "attributions must be numbers, got dtype bool"),
        ([0.1, True, 0, 0, 0, 0], "attributions must be numbers, got a bool"),
        ({0: 10**400}, "attributions[0] is out of the float64 range"),
        ({0: np.longdouble("1e4000")}, "attributions[0] must not be infinite"),
        ([0.1, None, 0, 0, 0, 0], "attributions must be numbers, got dtype object"),
        ([0, 0, math.inf, 0, 0, 0], "attributions must not be infinite (index 2)"),
        ({6: 1.0}, "feature index 6 is out of range 0..5"),
        ({-1: 1.0}, "feature index -1 is out of range 0..5"),
        ({0: True}, "attributions[0] must be a number, got True"),
        ({0: "0.1"}, "attributions[0] must be a number, got '0.1'"),
        ({1: -math.inf}, "attributions[1] must not be infinite"),
        ({1.0: 0.5}, "attributions keys must be feature indices or names, got 1.0"),
        ({"nope": 0.5}, "unknown feature name 'nope'"),
        ({"rsi": 0.5, 0: 0.1}, "feature 0 is given twice"),
    ],
)
def test_bad_attributions_raise_one_line_and_queue_nothing(
    tmp_path: Path, attributions: Any, message: str
) -> None:
    with MLPredictionLogger(
        f"sqlite:///{tmp_path / 'x.db'}", spool_dir=tmp_path / "spool", feature_names=NAMES,
        handle_signals=False,
    ) as logger:  # fmt: skip
        with pytest.raises(InputError) as raised:
            logger.log_prediction_sync(
                symbol="BTCUSDT", features=np.zeros(6), model_outputs=RAW,
                attributions=attributions,
            )  # fmt: skip
        assert isinstance(raised.value, ValueError)
        assert message in str(raised.value) and "\n" not in str(raised.value)
        assert (logger.stats()["logged"], logger.stats()["journaled"]) == (0, 0)
    assert segment_files(tmp_path / "spool") == []


@pytest.mark.sqlite_only
def test_names_need_the_loggers_feature_names(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with MLPredictionLogger(url, spool_dir=tmp_path / "a", handle_signals=False) as logger:
        with pytest.raises(InputError, match="need the logger's feature_names"):
            logger.log_prediction_sync(
                symbol="BTCUSDT", features=np.zeros(6), model_outputs=RAW,
                attributions={"rsi": 0.1},
            )  # fmt: skip
        assert logger.stats()["logged"] == 0
    with (
        MLPredictionLogger(
            url, spool_dir=tmp_path / "b", feature_names=NAMES[:4], handle_signals=False
        ) as logger,
        pytest.raises(InputError, match="4 feature_names, the feature vector has 6"),
    ):
        logger.log_prediction_sync(
            symbol="BTCUSDT", features=np.zeros(6), model_outputs=RAW,
            attributions={"rsi": 0.1},
        )  # fmt: skip
    for names, message in (("rsi", "got a string"), (["a", "a"], "repeat a"), ([""], "non-empty")):
        with pytest.raises(InputError, match=message):
            MLPredictionLogger(url, spool_dir=tmp_path / "c", feature_names=names)


# ---------------------------------------------------------------- the journal and the spool


def _pending(index: int, attributions: np.ndarray | None) -> PendingPrediction:
    return PendingPrediction(
        prediction_id=uuid.uuid4(),
        symbol=f"SYM{index}",
        model_version="v-journal",
        features=np.arange(6, dtype=np.float64) + index,
        raw_outputs=RAW.copy(),
        predictions=None,
        market=None,
        inference_time_ms=1.5,
        logged_at=1_764_000_000.5 + index,
        attributions=attributions,
    )


def _old_format_record(item: PendingPrediction) -> bytes:
    """A prediction record exactly as the journal wrote it before attributions existed
    (flags 0, no market data, no predictions dict)."""
    symbol, version = item.symbol.encode(), item.model_version.encode()
    head = struct.pack(
        "<BBB16sddHHIIIIIq", 1, 1, 0, item.prediction_id.bytes, item.logged_at,
        item.inference_time_ms, len(symbol), len(version), 0, item.features.shape[0],
        RAW.shape[0], 0xFFFFFFFF, 0xFFFFFFFF, 0,
    )  # fmt: skip
    return frame(head + symbol + version + item.features.tobytes() + RAW.tobytes())


def test_journal_records_carry_attributions_and_old_records_still_decode() -> None:
    with_nan = _pending(0, np.array([0.5, np.nan, -1.0, 0.0, 2.0, 1e-12]))
    decoded = decode(encode_prediction(with_nan)[12:])
    assert isinstance(decoded, PendingPrediction) and decoded.attributions is not None
    np.testing.assert_array_equal(decoded.attributions, with_nan.attributions)

    old = _pending(1, None)
    record = _old_format_record(old)
    assert record == encode_prediction(old)  # no attributions: the bytes are unchanged
    decoded = decode(record[12:])
    assert isinstance(decoded, PendingPrediction)
    assert decoded.attributions is None and decoded.prediction_id == old.prediction_id
    np.testing.assert_array_equal(decoded.features, old.features)


def test_replay_of_new_and_old_journal_records(db_url: str, engine: Engine, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    dead = Journal(spool_dir)
    new = _pending(0, np.array([0.5, np.nan, -1.0, 0.0, 2.0, 1e-12]))
    old = _pending(1, None)
    dead.append(encode_prediction(new))
    dead.append(_old_format_record(old))
    dead.close()  # as a killed process leaves it
    result = replay_spool(db_url, spool_dir)
    assert result.replayed == 2
    stored = _stored(engine)
    assert stored == {
        new.prediction_id: [0.5, None, -1.0, 0.0, 2.0, 1e-12],
        old.prediction_id: None,
    }
    assert _sql_nulls(engine) == 1


def test_dead_lettered_rows_keep_their_attributions(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    (row,) = written_rows(1, feature_attributions=[0.25, None, -4.0])
    Spool(spool_dir).dead_letter(row, "rejected by a trigger")
    code, _out, err = run_cli("--db", db_url, "spool", "replay", "--dead-letters",
                              "--spool-dir", str(spool_dir))  # fmt: skip
    assert code == 0, err
    assert _stored(engine) == {row[0]: [0.25, None, -4.0]}


@pytest.mark.sqlite_only
def test_spooled_rows_from_before_the_column_read_as_null() -> None:
    (row,) = written_rows(1, feature_attributions=[1.0, None])
    record = row_to_json(row)
    assert json.loads(json.dumps(record))["feature_attributions"] == [1.0, None]
    assert row_from_json(record)[ATTRIBUTIONS] == [1.0, None]
    del record["feature_attributions"]  # a spool line written by the previous version
    assert row_from_json(record)[ATTRIBUTIONS] is None


# ---------------------------------------------------------------- the archive

DAYS = (date(2026, 1, 10), date(2026, 1, 11))
NOW = datetime(2026, 2, 1, tzinfo=UTC)


def _seed(engine: Engine, day: date, rows: int = 12) -> dict[uuid.UUID, Any]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    batch = []
    for i in range(rows):
        moment = start + timedelta(minutes=37 * i)
        given = [0.1 * i, None, -1.5, 1e-300] if i % 3 else None
        batch += written_rows(1, moment, timestamp=int(moment.timestamp() * 1000),
                              feature_attributions=given)  # fmt: skip
    write_rows(engine, batch)
    with engine.begin() as conn:  # final: outcomes filled long ago
        conn.execute(sa.update(predictions_table).values(actuals_filled_at=start))
    return {row[0]: row[ATTRIBUTIONS] for row in batch}


def test_archive_and_restore_keep_attributions(engine: Engine, tmp_path: Path) -> None:
    expected = {**_seed(engine, DAYS[0]), **_seed(engine, DAYS[1])}
    rebuild_rollups(engine, now=NOW)
    report = archive_predictions(engine, before=DAYS[1] + timedelta(days=1), to=tmp_path, now=NOW)
    assert report.rows == 24 and _stored(engine) == {}
    archived = read_archived_predictions(
        tmp_path, PredictionFilter(), ["prediction_id", "feature_attributions"]
    )
    assert {uuid.UUID(p): v for p, v in archived.itertuples(index=False)} == expected
    restored = restore_archive(engine, from_dir=tmp_path)
    assert restored.inserted == 24
    assert _stored(engine) == expected
    assert _sql_nulls(engine) == 8


def _rewrite_without_attributions(root: Path, day: date) -> None:
    """Make ``day``'s file and manifest what a version before the column wrote."""
    found = parquet_files.day_file(root, day)
    assert found is not None
    table = pq.read_table(found.path).drop_columns(["feature_attributions"])
    assert table.schema.equals(parquet_files.LEGACY_SCHEMA)
    pq.write_table(table, found.path, compression="zstd")
    digest = parquet_files.ContentDigest(table.schema.names)
    for batch in table.to_batches():
        digest.update(batch)
    manifest_path = found.directory / parquet_files.MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest.update(
        file_sha256=hashlib.sha256(found.path.read_bytes()).hexdigest(),
        content_sha256=digest.hexdigest(),
        bytes=found.path.stat().st_size,
    )
    manifest_path.write_text(json.dumps(manifest))


def test_an_archive_written_before_the_column_verifies_and_restores(
    engine: Engine, tmp_path: Path
) -> None:
    old_day = _seed(engine, DAYS[0])
    new_day = _seed(engine, DAYS[1])
    rebuild_rollups(engine, now=NOW)
    archive_predictions(engine, before=DAYS[1] + timedelta(days=1), to=tmp_path, now=NOW)
    _rewrite_without_attributions(tmp_path, DAYS[0])

    found = parquet_files.day_file(tmp_path, DAYS[0])
    assert found is not None and found.verified
    assert parquet_files.read_back(found.path) == (12, found.content_sha256)
    archived = read_archived_predictions(
        tmp_path, PredictionFilter(), ["prediction_id", "feature_attributions"]
    )
    by_id = {uuid.UUID(p): v for p, v in archived.itertuples(index=False)}
    assert by_id == {**dict.fromkeys(old_day), **new_day}

    restored = restore_archive(engine, from_dir=tmp_path)
    assert restored.inserted == 24
    assert _stored(engine) == {**dict.fromkeys(old_day), **new_day}


def test_archiving_a_day_again_merges_an_old_file_into_the_new_schema(
    engine: Engine, tmp_path: Path
) -> None:
    old_rows = _seed(engine, DAYS[0])
    newer = _seed(engine, DAYS[1])  # stays in the table (SQLite would reuse ids otherwise)
    rebuild_rollups(engine, now=NOW)
    archive_predictions(engine, before=DAYS[1], to=tmp_path, now=NOW)
    _rewrite_without_attributions(tmp_path, DAYS[0])
    late_rows = _seed(engine, DAYS[0], rows=3)  # rows of the day that arrived later
    rebuild_rollups(engine, now=NOW)

    report = archive_predictions(engine, before=DAYS[1], to=tmp_path, now=NOW)

    assert report.days[0].merged_from_file == 12
    found = parquet_files.day_file(tmp_path, DAYS[0])
    assert found is not None and found.verified and found.rows == 15
    assert pq.ParquetFile(found.path).schema_arrow.equals(ARROW_SCHEMA)
    restore_archive(engine, from_dir=tmp_path)
    assert _stored(engine) == {**dict.fromkeys(old_rows), **late_rows, **newer}


def test_a_file_damaged_after_the_column_was_dropped_is_still_refused(
    engine: Engine, tmp_path: Path
) -> None:
    _seed(engine, DAYS[0])
    rebuild_rollups(engine, now=NOW)
    archive_predictions(engine, before=DAYS[1], to=tmp_path, now=NOW)
    _rewrite_without_attributions(tmp_path, DAYS[0])
    manifest_path = parquet_files.day_directory(tmp_path, DAYS[0]) / parquet_files.MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest["content_sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(Exception, match="does not match its manifest"):
        restore_archive(engine, from_dir=tmp_path)
    assert _stored(engine) == {}


# ---------------------------------------------------------------- the bulk loader


def _loader_rows(engine: Engine) -> list[tuple[int, list[Any] | None, float | None, float | None]]:
    """(timestamp, attributions, predicted_return_15m, actual_return_15m) of each row."""
    cases: list[tuple[int, list[Any] | None, float | None, float | None]] = [
        (3_000, [0.5, None, -1.0], 0.01, 0.02),
        (1_000, [1.0, 2.0, 3.0], -0.005, None),
        (2_000, [0.0, 0.25, 1e-300], None, -0.01),
        (4_000, [9.0, 9.0], 0.03, 0.03),  # another length: skipped
        (5_000, None, 0.01, 0.01),  # no attributions: not a candidate
    ]
    moment = datetime(2026, 3, 1, tzinfo=UTC)
    rows = []
    for stamp, given, predicted, _actual in cases:
        rows += written_rows(1, moment + timedelta(seconds=stamp), timestamp=stamp,
                             symbol="BTCUSDT", feature_attributions=given,
                             predicted_return_15m=predicted)  # fmt: skip
    write_rows(engine, rows)
    with engine.begin() as conn:
        for stamp, _given, _predicted, actual in cases:
            conn.execute(
                sa.update(predictions_table)
                .where(P.timestamp == stamp)
                .values(actual_return_15m=actual)
            )
    return cases


def test_attribution_matrix_reads_vectors_in_bulk(engine: Engine) -> None:
    _loader_rows(engine)
    everything = PredictionFilter()
    with engine.connect() as conn:
        assert attribution_lengths(conn, everything) == {3: 3, 2: 1}
        matrix = load_attribution_matrix(conn, everything, "15m")
        matured = load_attribution_matrix(conn, everything, "15m", matured_only=True)
        short = load_attribution_matrix(conn, everything, "15m", width=2)
        absent = load_attribution_matrix(conn, everything, "15m", width=7)
        other_symbol = load_attribution_matrix(conn, PredictionFilter(symbol="ETHUSDT"), "1h")

    assert matrix.width == 3 and matrix.count == 3 and matrix.skipped == 1
    np.testing.assert_array_equal(matrix.timestamps, [1_000, 2_000, 3_000])  # oldest first
    np.testing.assert_array_equal(
        matrix.attributions, [[1.0, 0.0, 0.5], [2.0, 0.25, np.nan], [3.0, 1e-300, -1.0]]
    )
    np.testing.assert_array_equal(matrix.predicted_returns, [-0.005, np.nan, 0.01])
    np.testing.assert_array_equal(matrix.actual_returns, [np.nan, -0.01, 0.02])

    assert matured.count == 2 and matured.skipped == 1
    np.testing.assert_array_equal(matured.timestamps, [2_000, 3_000])
    assert short.width == 2 and short.skipped == 3
    np.testing.assert_array_equal(short.attributions, [[9.0], [9.0]])
    assert absent.attributions.shape == (7, 0) and absent.skipped == 4
    assert other_symbol.attributions.shape == (0, 0) and other_symbol.skipped == 0


@pytest.mark.sqlite_only
def test_attribution_matrix_refuses_bad_options(engine: Engine) -> None:
    with engine.connect() as conn:
        with pytest.raises(InputError, match="unknown horizon '2h'"):
            load_attribution_matrix(conn, PredictionFilter(), "2h")
        with pytest.raises(InputError, match="width must be >= 1"):
            load_attribution_matrix(conn, PredictionFilter(), "15m", width=0)
