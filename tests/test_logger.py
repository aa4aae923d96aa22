"""The prediction logger end to end on both backends: every column, concurrency, failures."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlpred_cli import MLPredictionLogger
from mlpred_cli.capture.synthetic_market import raw_model_outputs
from mlpred_cli.store.tables import predictions_table
from tests.factories import install_poison_rule

pytestmark = pytest.mark.both_layouts

RAW_OUTPUTS = np.array(
    [
        0.002, -0.003, 0.01, -0.02,  # predicted returns 15m, 1h, 4h, 12h
        2.0, 0.5, 0.1,  # 15m logits LONG, SHORT, NEUTRAL
        0.0, 1.0, 0.0,  # 1h
        0.3, 0.3, 3.0,  # 4h
        -1.0, 2.5, 0.0,  # 12h
        -0.004, 0.006, -0.012, 0.015,  # drawdown 1h, rally 1h, drawdown 4h, rally 4h
    ]
)  # fmt: skip


def _softmax(logits: list[float]) -> np.ndarray:
    exps = np.exp(np.array(logits) - max(logits))
    return exps / exps.sum()


def _fetch(engine: Engine, prediction_id: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(predictions_table).order_by(predictions_table.c.id)
    if prediction_id is not None:
        query = query.where(predictions_table.c.prediction_id == uuid.UUID(prediction_id))
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def _count(engine: Engine) -> tuple[int, int]:
    """(rows, distinct prediction ids)."""
    with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count(sa.distinct(predictions_table.c.prediction_id)),
                )
            ).one()
        )


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def logger(db_url: str, spool_dir: Path) -> Iterator[MLPredictionLogger]:
    created = MLPredictionLogger(
        db_url, model_version="v-test", batch_size=50, flush_interval_s=0.05, spool_dir=spool_dir
    )
    yield created
    created.close_sync()


def _candles(count: int) -> pd.DataFrame:
    index = pd.date_range("2026-03-01 00:00", periods=count, freq="15min", tz="UTC")
    close = 100 + np.arange(count, dtype=float) * 0.1
    return pd.DataFrame(
        {
            "open": close - 0.05,
            "high": close + 0.2,
            "low": close - 0.2,
            "close": close,
            "volume": np.full(count, 10.0),
        },
        index=index,
    )


def test_round_trip_of_every_column(logger: MLPredictionLogger, engine: Engine) -> None:
    rng = np.random.default_rng(7)
    window = rng.normal(size=(30, 240))
    window[:, 5] = 3.0  # constant over the window
    window[:, 6] = -1.0  # constant too
    window[-1, 10] = np.nan
    window[-1, 11] = np.inf
    market = _candles(60)
    prediction_id = logger.log_prediction_sync(
        symbol="BTCUSDT",
        features=window,
        model_outputs=RAW_OUTPUTS,
        market_data=market,
        inference_time_ms=4.5,
    )
    assert logger.flush_sync(timeout=30)
    [row] = _fetch(engine, prediction_id)

    vector = window[-1]
    finite = vector[np.isfinite(vector)]
    assert row["symbol"] == "BTCUSDT"
    assert row["model_version"] == "v-test"
    assert row["features_count"] == 240
    assert row["lookback_periods"] == 30
    assert row["nan_count"] == 1
    assert row["inf_count"] == 1
    assert row["zero_variance_count"] == 2
    assert row["features_mean"] == pytest.approx(finite.mean())
    assert row["features_std"] == pytest.approx(finite.std())
    assert row["features_min"] == pytest.approx(finite.min())
    assert row["features_max"] == pytest.approx(finite.max())
    md5 = hashlib.md5(window.astype("<f4").tobytes()).hexdigest()
    assert row["features_hash"] == int(md5[:15], 16)
    assert row["is_duplicate"] is False

    last_open = market.index[-1].to_pydatetime()
    assert row["datetime"] == last_open
    assert row["timestamp"] == int(last_open.timestamp() * 1000)
    assert row["close_price"] == pytest.approx(market["close"].iloc[-1])
    assert row["volume"] == pytest.approx(10.0)
    assert row["volume_ratio"] == pytest.approx(1.0)
    assert row["rsi"] == pytest.approx(100.0)  # closes only rise
    assert row["inference_time_ms"] == pytest.approx(4.5)

    expected = {
        "15m": ("LONG", _softmax([2.0, 0.5, 0.1]).max()),
        "1h": ("SHORT", _softmax([0.0, 1.0, 0.0]).max()),
        "4h": ("NEUTRAL", _softmax([0.3, 0.3, 3.0]).max()),
        "12h": ("SHORT", _softmax([-1.0, 2.5, 0.0]).max()),
    }
    for position, (horizon, (direction, confidence)) in enumerate(expected.items()):
        assert row[f"predicted_return_{horizon}"] == pytest.approx(RAW_OUTPUTS[position])
        assert row[f"direction_{horizon}"] == direction
        assert row[f"direction_{horizon}_confidence"] == pytest.approx(confidence)
    assert row["signal_type"] in {"LONG", "SHORT", "NEUTRAL"}
    assert 0.0 <= row["signal_confidence"] <= 1.0
    assert row["actual_return_15m"] is None
    assert row["created_at"] is not None
    assert row["features_array"] is None  # store_features is off by default


def test_bot_predictions_dict_is_stored(logger: MLPredictionLogger, engine: Engine) -> None:
    predictions = {
        "returns_1h": 0.004,
        "direction_1h": "long",
        "confidence_1h": 0.81,
        "signal_type": "LONG",
        "signal_confidence": 0.81,
        "primary_timeframe": "1h",
        "risk_score": 0.2,
        "max_drawdown": -0.01,
        "max_rally": 0.02,
    }
    prediction_id = logger.log_prediction_sync(
        symbol="ETHUSDT", features=np.ones(240), predictions=predictions
    )
    assert logger.flush_sync(timeout=30)
    [row] = _fetch(engine, prediction_id)
    assert row["predicted_return_1h"] == pytest.approx(0.004)
    assert row["direction_1h"] == "LONG"
    assert row["direction_1h_confidence"] == pytest.approx(0.81)
    assert row["signal_type"] == "LONG"
    assert row["signal_timeframe"] == "1h"
    assert row["max_drawdown_predicted"] == pytest.approx(-0.01)
    assert row["max_rally_predicted"] == pytest.approx(0.02)
    assert row["zero_variance_count"] is None  # one vector: no window
    assert row["close_price"] is None  # no market data: null indicators, never 0


def test_nan_and_inf_features_are_stored_as_null_json(db_url: str, engine: Engine) -> None:
    features = np.array([1.0, np.nan, np.inf, -np.inf, 2.0])
    with MLPredictionLogger(db_url, store_features=True, flush_interval_s=0.05) as logger:
        prediction_id = logger.log_prediction_sync(
            symbol="BTCUSDT", features=features, model_outputs=RAW_OUTPUTS
        )
    [row] = _fetch(engine, prediction_id)
    assert row["nan_count"] == 1
    assert row["inf_count"] == 2
    assert row["features_mean"] == pytest.approx(1.5)
    assert row["features_array"] == [1.0, None, None, None, 2.0]
    assert row["model_outputs_raw"] == pytest.approx(list(RAW_OUTPUTS))


def test_duplicates_are_marked_or_skipped(db_url: str, engine: Engine) -> None:
    features = np.arange(240, dtype=float)
    with MLPredictionLogger(db_url, flush_interval_s=0.05) as marking:
        first = marking.log_prediction_sync(
            symbol="X", features=features, model_outputs=RAW_OUTPUTS
        )
        second = marking.log_prediction_sync(
            symbol="X", features=features, model_outputs=RAW_OUTPUTS
        )
        other_symbol = marking.log_prediction_sync(
            symbol="Y", features=features, model_outputs=RAW_OUTPUTS
        )
        assert marking.flush_sync(timeout=30)
        assert marking.stats()["duplicates"] == 1
    flags = {str(row["prediction_id"]): row["is_duplicate"] for row in _fetch(engine)}
    assert flags == {first: False, second: True, other_symbol: False}

    with MLPredictionLogger(db_url, flush_interval_s=0.05, on_duplicate="skip") as skipping:
        skipping.log_prediction_sync(symbol="Z", features=features, model_outputs=RAW_OUTPUTS)
        skipped = skipping.log_prediction_sync(
            symbol="Z", features=features, model_outputs=RAW_OUTPUTS
        )
        assert skipping.flush_sync(timeout=30)
        stats = skipping.stats()
    assert stats["duplicates"] == 1
    assert stats["saved"] == 1
    assert _fetch(engine, skipped) == []


def test_ten_thousand_from_eight_threads_land_exactly_once(
    db_url: str, engine: Engine, spool_dir: Path
) -> None:
    per_thread = 1250
    ids: list[list[str]] = [[] for _ in range(8)]
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(per_thread, 240))
    with MLPredictionLogger(
        db_url, batch_size=100, flush_interval_s=0.05, spool_dir=spool_dir
    ) as logger:

        def produce(slot: int) -> None:
            for i in range(per_thread):
                ids[slot].append(
                    logger.log_prediction_sync(
                        symbol=f"SYM{slot}", features=vectors[i], model_outputs=RAW_OUTPUTS
                    )
                )

        threads = [threading.Thread(target=produce, args=(slot,)) for slot in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert logger.flush_sync(timeout=120)
        stats = logger.stats()
    assert stats["logged"] == 10_000
    assert stats["saved"] == 10_000
    assert _count(engine) == (10_000, 10_000)
    with engine.connect() as conn:
        stored = {str(pid) for pid in conn.scalars(sa.select(predictions_table.c.prediction_id))}
    assert stored == {pid for chunk in ids for pid in chunk}


def test_ten_thousand_from_asyncio_tasks_land_exactly_once(db_url: str, engine: Engine) -> None:
    async def scenario() -> list[str]:
        async with MLPredictionLogger(db_url, batch_size=100, flush_interval_s=0.05) as logger:

            async def produce(slot: int) -> list[str]:
                out = []
                for i in range(500):
                    out.append(
                        await logger.log_prediction(
                            symbol=f"A{slot}",
                            features=np.full(240, float(i)),
                            model_outputs=RAW_OUTPUTS,
                        )
                    )
                    if i % 50 == 0:
                        await asyncio.sleep(0)
                return out

            results = await asyncio.gather(*(produce(slot) for slot in range(20)))
            assert await logger.flush(timeout=120)
        return [pid for chunk in results for pid in chunk]

    ids = asyncio.run(scenario())
    assert len(ids) == 10_000
    assert _count(engine) == (10_000, 10_000)


def test_close_writes_pending_rows(db_url: str, engine: Engine) -> None:
    logger = MLPredictionLogger(db_url, batch_size=10_000, flush_interval_s=3600)
    ids = [
        logger.log_prediction_sync(
            symbol="BTCUSDT", features=np.full(240, i), model_outputs=RAW_OUTPUTS
        )
        for i in range(37)
    ]
    assert logger.stats()["pending"] == 37
    logger.close_sync(timeout=30)
    assert _count(engine) == (37, 37)
    assert {str(row["prediction_id"]) for row in _fetch(engine)} == set(ids)
    with pytest.raises(Exception, match="closed"):
        logger.log_prediction_sync(symbol="BTCUSDT", features=np.ones(3), model_outputs=RAW_OUTPUTS)


def test_poison_row_is_dead_lettered_and_the_rest_saved(
    db_url: str, engine: Engine, spool_dir: Path
) -> None:
    install_poison_rule(engine)
    with MLPredictionLogger(
        db_url, batch_size=1000, flush_interval_s=0.05, spool_dir=spool_dir
    ) as logger:
        ids = []
        for i in range(40):
            symbol = "POISON" if i == 17 else "BTCUSDT"
            ids.append(
                logger.log_prediction_sync(
                    symbol=symbol, features=np.full(240, float(i)), model_outputs=RAW_OUTPUTS
                )
            )
        assert logger.flush_sync(timeout=60)
        stats = logger.stats()
    assert stats["dead_lettered"] == 1
    assert stats["saved"] == 39
    stored = {str(row["prediction_id"]) for row in _fetch(engine)}
    assert stored == set(ids) - {ids[17]}
    dead = (spool_dir / "dead-letter.jsonl").read_text().splitlines()
    assert len(dead) == 1
    assert ids[17] in dead[0]
    assert "poison" in dead[0].lower()


def test_invalid_input_raises_value_error(logger: MLPredictionLogger) -> None:
    good = {"features": np.ones(240), "model_outputs": RAW_OUTPUTS}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"symbol": "", **good}, "symbol"),
        ({"symbol": "X" * 21, **good}, "symbol"),
        ({"symbol": 42, **good}, "symbol"),
        ({"symbol": "BTC", "features": np.ones((2, 2, 2)), "model_outputs": RAW_OUTPUTS}, "3-D"),
        ({"symbol": "BTC", "features": ["a", "b"], "model_outputs": RAW_OUTPUTS}, "numeric"),
        ({"symbol": "BTC", "features": [], "model_outputs": RAW_OUTPUTS}, "empty"),
        ({"symbol": "BTC", "features": np.ones(240), "model_outputs": np.ones(19)}, "20"),
        ({"symbol": "BTC", "features": np.ones(240)}, "model_outputs"),
        (
            {"symbol": "BTC", "features": np.ones(240), "predictions": {"returns_30m": 0.1}},
            "returns_30m",
        ),
        (
            {"symbol": "BTC", **good, "market_data": pd.DataFrame({"open": [1.0]})},
            "close",
        ),
        ({"symbol": "BTC", **good, "inference_time_ms": -1}, "inference_time_ms"),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(ValueError, match=fragment):
            logger.log_prediction_sync(**kwargs)
    assert logger.stats()["logged"] == 0
    # numpy scalars are numbers too
    logger.log_prediction_sync(symbol="BTC", **good, inference_time_ms=np.float32(3.5))
    assert logger.stats()["logged"] == 1


def test_constructor_rejects_bad_settings(db_url: str) -> None:
    with pytest.raises(ValueError, match="on_duplicate"):
        MLPredictionLogger(db_url, on_duplicate="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        MLPredictionLogger(db_url, batch_size=0)


def test_debug_level_prints_a_panel(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    with MLPredictionLogger(db_url, flush_interval_s=0.05) as logger:
        logger.log_prediction_sync(
            symbol="BTCUSDT",
            features=np.ones(240),
            model_outputs=raw_model_outputs(np.random.default_rng(3)),
        )
        assert logger.flush_sync(timeout=30)
    err = capsys.readouterr().err
    for section in [
        "INPUT FEATURES",
        "KEY INDICATORS",
        "PREDICTED RETURNS",
        "RISK METRICS",
        "FINAL SIGNAL",
    ]:
        assert section in err
    assert "saved 1 predictions" in err


def test_feature_importance_snapshot_goes_through_the_writer(db_url: str, engine: Engine) -> None:
    from mlpred_cli.store.tables import feature_importance_table

    with MLPredictionLogger(db_url, model_version="v9", flush_interval_s=0.05) as logger:
        logger.log_feature_importance(["rsi", "macd", "volume"], [0.2, 0.5, 0.1], horizon="1h")
        with pytest.raises(ValueError, match="same length"):
            logger.log_feature_importance(["a", "b"], [1.0])
        with pytest.raises(ValueError, match="NaN"):
            logger.log_feature_importance(["a", "b"], [1.0, float("nan")])
        with pytest.raises(ValueError, match="duplicate"):
            logger.log_feature_importance(["a", "a"], [1.0, 2.0])
        assert logger.flush_sync(timeout=30)
        assert logger.stats()["importance_snapshots"] == 1
    with engine.connect() as conn:
        rows = (
            conn.execute(
                sa.select(feature_importance_table).order_by(
                    feature_importance_table.c.importance_rank
                )
            )
            .mappings()
            .all()
        )
    assert [(r["feature_name"], r["importance_rank"]) for r in rows] == [
        ("macd", 1),
        ("rsi", 2),
        ("volume", 3),
    ]
    assert {r["model_version"] for r in rows} == {"v9"}
    assert {r["horizon"] for r in rows} == {"1h"}
    assert len({r["calculated_at"] for r in rows}) == 1
