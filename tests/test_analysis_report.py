"""``analyze`` on a small hand-computed data set, on both databases."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from mlpred_cli.analysis.prediction_views import analyze
from mlpred_cli.errors import InputError
from tests.factories import insert_predictions as insert_rows
from tests.factories import prediction_row

pytestmark = pytest.mark.both_layouts

BASE = datetime.now(UTC).replace(microsecond=0)


def insert_predictions(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Insert rows that may name different columns (missing ones are NULL)."""
    names = {name for row in rows for name in row}
    insert_rows(engine, [{name: row.get(name) for name in names} for row in rows])


def _row(
    hours_ago: float, signal: str, confidence: float, timeframe: str, **extra: Any
) -> dict[str, Any]:
    return prediction_row(
        extra.pop("symbol", "BTCUSDT"),
        BASE - timedelta(hours=hours_ago),
        signal_type=signal,
        signal_confidence=confidence,
        signal_timeframe=timeframe,
        **extra,
    )


def _h15(
    direction: str, conf: float, predicted: float, actual: str, actual_return: float
) -> dict[str, Any]:
    return {
        "direction_15m": direction,
        "direction_15m_confidence": conf,
        "predicted_return_15m": predicted,
        "actual_direction_15m": actual,
        "actual_return_15m": actual_return,
        "accuracy_15m": direction == actual,
    }


def sample_rows() -> list[dict[str, Any]]:
    """Seven rows in the last 6 hours plus one 10 days old (outside --days 1)."""
    return [
        _row(1, "LONG", 1.0, "15m", nan_count=2, features_mean=1.0, inference_time_ms=1.0,
             **_h15("LONG", 0.9, 0.010, "LONG", 0.012)),
        _row(2, "SHORT", 0.8, "15m", is_duplicate=True, features_mean=1.0, inference_time_ms=2.0,
             **_h15("SHORT", 0.8, -0.005, "LONG", 0.004)),
        _row(3, "NEUTRAL", 0.55, "15m", features_mean=1.0, inference_time_ms=3.0,
             **_h15("NEUTRAL", 0.6, 0.0, "NEUTRAL", 0.001)),
        _row(4, "LONG", 0.3, "15m", features_mean=0.0, inference_time_ms=4.0,
             **_h15("LONG", 0.7, 0.002, "SHORT", -0.003)),
        # primary horizon 4h, from its signal_timeframe
        _row(5, "LONG", 0.85, "4h", features_mean=0.0, inference_time_ms=5.0,
             direction_4h="LONG", actual_direction_4h="LONG", accuracy_4h=True),
        # signal_timeframe is not a horizon: the 1h fallback is used
        _row(6, "SHORT", 0.65, "1d", features_mean=0.0, inference_time_ms=6.0,
             direction_1h="SHORT", actual_direction_1h="SHORT", accuracy_1h=True),
        _row(0.5, "LONG", 0.45, "15m", symbol="ETHUSDT", nan_count=3, features_mean=1.0,
             inference_time_ms=100.0),
        _row(240, "SHORT", 0.99, "15m", **_h15("SHORT", 0.9, -0.01, "LONG", 0.02)),
    ]  # fmt: skip


@pytest.fixture
def sample(engine: Engine) -> Engine:
    insert_predictions(engine, sample_rows())
    return engine


def test_overview_and_signals(sample: Engine) -> None:
    report = analyze(sample, days=1)
    overview = report.overview
    assert overview["predictions"] == 7
    assert overview["symbols"] == ["BTCUSDT", "ETHUSDT"]
    assert overview["model_versions"] == ["v1"]
    assert overview["with_outcomes"] == 6
    assert overview["outcome_share"] == pytest.approx(6 / 7)
    assert overview["first"] == BASE - timedelta(hours=6)
    assert overview["last"] == BASE - timedelta(hours=0.5)
    assert overview["avg_confidence"] == pytest.approx(
        (1.0 + 0.8 + 0.55 + 0.3 + 0.85 + 0.65 + 0.45) / 7
    )
    signals = {s["signal_type"]: (s["count"], s["share"]) for s in report.signals}
    assert signals == {"LONG": (4, 4 / 7), "SHORT": (2, 2 / 7), "NEUTRAL": (1, 1 / 7)}


def test_horizon_metrics(sample: Engine) -> None:
    horizons = {h["horizon"]: h for h in analyze(sample, days=1).horizons}
    h15 = horizons["15m"]
    assert h15["n"] == 4
    assert h15["accuracy"] == 0.5
    assert h15["accuracy_low"] == pytest.approx(0.150036, abs=1e-5)  # Wilson 2/4
    assert h15["accuracy_high"] == pytest.approx(0.849964, abs=1e-5)
    assert h15["n_directional"] == 3
    assert h15["hit_rate"] == pytest.approx(1 / 3)
    assert h15["base_rate"] == 0.5  # LONG, LONG, NEUTRAL, SHORT
    assert h15["mae"] == pytest.approx((0.002 + 0.009 + 0.001 + 0.005) / 4)
    assert h15["rmse"] == pytest.approx(math.sqrt((4 + 81 + 1 + 25) * 1e-6 / 4))
    # ranks predicted [4, 1, 2, 3] vs actual [4, 3, 2, 1]: 1 - 6 * 8 / (4 * 15)
    assert h15["ic"] == pytest.approx(0.2)
    assert h15["ic_n"] == 4
    assert (horizons["4h"]["n"], horizons["4h"]["accuracy"]) == (1, 1.0)
    assert horizons["12h"]["n"] == 0
    assert horizons["12h"]["accuracy"] is None
    assert horizons["12h"]["ic"] is None


def test_confidence_bins_include_exact_edges(sample: Engine) -> None:
    bins = {b["bin"]: b for b in analyze(sample, days=1).confidence_bins}
    assert list(bins) == ["[0, 0.5)", "[0.5, 0.6)", "[0.6, 0.7)", "[0.7, 0.8)", "[0.8, 1.0]"]
    top = bins["[0.8, 1.0]"]  # 0.8 and 1.0 both land here, with 0.85
    assert top["count"] == 3
    assert top["avg_confidence"] == pytest.approx((0.8 + 0.85 + 1.0) / 3)
    assert (top["share_LONG"], top["share_SHORT"], top["share_NEUTRAL"]) == pytest.approx(
        (2 / 3, 1 / 3, 0.0)
    )
    # primary horizons: 15m right, 15m wrong, 4h right
    assert (top["n_primary"], top["accuracy"]) == (3, pytest.approx(2 / 3))
    low = bins["[0, 0.5)"]
    assert (low["count"], low["n_primary"], low["accuracy"]) == (2, 1, 0.0)
    assert bins["[0.6, 0.7)"]["accuracy"] == 1.0  # 1h fallback for signal_timeframe 1d
    assert bins["[0.7, 0.8)"]["count"] == 0
    assert bins["[0.7, 0.8)"]["accuracy"] is None


def test_calibration(sample: Engine) -> None:
    calibration = {c["horizon"]: c for c in analyze(sample, days=1).calibration}
    h15 = calibration["15m"]
    assert h15["n"] == 4
    # confidences 0.9, 0.8, 0.6, 0.7 against correct 1, 0, 1, 0; one per ECE bin
    assert h15["brier"] == pytest.approx((0.01 + 0.64 + 0.16 + 0.49) / 4)
    assert h15["ece"] == pytest.approx((0.1 + 0.8 + 0.4 + 0.7) / 4)
    assert calibration["12h"]["ece"] is None


def test_symbols_input_health_performance(sample: Engine) -> None:
    report = analyze(sample, days=1)
    symbols = {s["symbol"]: s for s in report.symbols}
    assert symbols["BTCUSDT"]["predictions"] == 6
    assert symbols["BTCUSDT"]["accuracy_15m"] == 0.5
    assert symbols["BTCUSDT"]["ic_15m"] == pytest.approx(0.2)
    assert symbols["ETHUSDT"]["n_15m"] == 0
    assert symbols["ETHUSDT"]["accuracy_15m"] is None
    assert symbols["ETHUSDT"]["ic_15m"] is None

    health = report.input_health
    assert (health["nan_total"], health["rows_with_nan"]) == (5, 2)
    assert (health["inf_total"], health["rows_with_inf"]) == (0, 0)
    assert health["duplicate_share"] == pytest.approx(1 / 7)
    assert health["avg_features_count"] == 240
    assert health["avg_zero_variance_count"] is None
    # split at 3.25 h ago: the 4, 5, 6 h old rows (features_mean 0) vs the rest (1)
    assert health["features_mean_first_half"] == 0.0
    assert health["features_mean_second_half"] == 1.0
    assert health["features_mean_drift"] == 1.0
    assert health["features_std_drift"] == 0.0

    performance = report.performance
    assert performance["n"] == 7
    assert performance["inference_time_ms_p50"] == 4.0
    assert performance["inference_time_ms_p95"] == pytest.approx(6 + 0.7 * 94)
    assert performance["inference_time_ms_p99"] == pytest.approx(6 + 0.94 * 94)


def test_symbol_filter_and_empty_selection(sample: Engine) -> None:
    btc = analyze(sample, symbol="BTCUSDT", days=30)
    assert btc.overview["predictions"] == 7  # includes the 10-day-old row
    assert btc.overview["symbols"] == ["BTCUSDT"]
    empty = analyze(sample, symbol="SOLUSDT", days=30)
    assert empty.empty
    assert empty.selection["description"] == "for SOLUSDT in the last 30 days"
    assert empty.horizons == []


def test_no_outcomes_yet(engine: Engine) -> None:
    insert_predictions(engine, [prediction_row("BTCUSDT", BASE - timedelta(hours=1))])
    report = analyze(engine)
    assert report.overview["with_outcomes"] == 0
    assert all(h["n"] == 0 and h["accuracy"] is None for h in report.horizons)
    assert all(c["ece"] is None and c["brier"] is None for c in report.calibration)
    assert report.confidence_bins[3]["count"] == 1  # 0.7 -> [0.7, 0.8)


def test_export(sample: Engine, tmp_path: Path) -> None:
    target = tmp_path / "btc.parquet"
    analyze(sample, symbol="BTCUSDT", days=1, export=target)
    frame = pd.read_parquet(target)
    assert len(frame) == 6
    assert set(frame["symbol"]) == {"BTCUSDT"}
    csv_target = tmp_path / "all.csv"
    analyze(sample, days=1, export=csv_target)
    assert len(pd.read_csv(csv_target)) == 7
    with pytest.raises(InputError, match=r"\.csv or \.parquet"):
        analyze(sample, export=tmp_path / "out.xlsx")
