"""Which rows count at a horizon: only those with a predicted AND an actual direction.

A row whose model made no call at a horizon (NaN logits, or a bot dict without it) is
neither right nor wrong there; every figure must agree on that.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from mlpred_cli.analysis.prediction_views import accuracy_table, analyze
from tests.factories import insert_predictions, prediction_row


def test_rows_without_a_predicted_direction_are_not_scored(engine: Engine) -> None:
    moment = datetime.now(UTC) - timedelta(hours=2)
    insert_predictions(
        engine,
        [
            prediction_row(
                "BTCUSDT", moment, direction_15m="LONG", direction_15m_confidence=0.7,
                actual_direction_15m="LONG", accuracy_15m=True, signal_timeframe="15m",
            ),
            prediction_row(
                "BTCUSDT", moment + timedelta(minutes=15), direction_15m=None,
                direction_15m_confidence=None, actual_direction_15m="SHORT", accuracy_15m=None,
                signal_timeframe="15m",
            ),
        ],
    )  # fmt: skip
    table = accuracy_table(engine, by="symbol", horizons=["15m"])
    row = table.iloc[0]
    assert row["total"] == 2
    assert row["n_15m"] == 1
    assert row["accuracy_15m"] == 1.0

    report = analyze(engine, days=1)
    horizon = next(item for item in report.horizons if item["horizon"] == "15m")
    calibration = next(item for item in report.calibration if item["horizon"] == "15m")
    assert horizon["n"] == 1
    assert horizon["accuracy"] == 1.0
    assert calibration["n"] == 1
    assert calibration["accuracy"] == 1.0
    top_bin = [item for item in report.confidence_bins if item.get("count")]
    assert sum(item["count"] for item in top_bin) == 2
