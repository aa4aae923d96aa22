"""Planted monitoring scenarios: predictions over real-looking 15-minute candles, with
outcomes computed the way the backfill does (close(t + h) / entry - 1, thresholds of
``DEFAULT_DIRECTION_THRESHOLDS``), so ``mlpred check`` can be run on a database that holds
a known truth: an accuracy drop, a feature shift, a symbol that stops logging.

Prices: a random walk per symbol with a common market factor (correlated symbols) and
volatility near 0.3 % per candle; predicted direction at each horizon equals the actual one
with probability ``accuracy`` (else one of the other two classes), so correctness of long
horizons comes in runs, as with real overlapping outcomes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from mlpred_cli.config import DEFAULT_DIRECTION_THRESHOLDS, HORIZON_DELTAS, HORIZONS

CANDLE = timedelta(minutes=15)
PER_DAY = 96


def recent_start(days: int) -> datetime:
    """The start that makes ``days`` of candles end at the last 15-minute boundary before
    now, so the newest candle has closed and the CLI's clock sees fresh data."""
    now = datetime.now(UTC)
    boundary = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    return boundary - timedelta(days=days)


CLASSES = np.array(["LONG", "SHORT", "NEUTRAL"], dtype=object)
CLASS_INDEX = {"LONG": 0, "SHORT": 1, "NEUTRAL": 2}


@dataclass
class Scenario:
    """What to plant. Day numbers count from 0 at ``start``."""

    days: int = 45
    symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT")
    accuracy: float = 0.60
    #: From this day on, accuracy is ``degraded_accuracy`` (None: never).
    degrade_from: int | None = None
    degraded_accuracy: float = 0.50
    #: From this day on, ``features_mean`` is shifted by this many of its standard deviations.
    shift_from: int | None = None
    shift_sd: float = 0.5
    #: This symbol logs nothing after ``stop_at`` (a time offset from the end).
    stopped_symbol: str | None = None
    stop_before_end: timedelta = timedelta(hours=6)
    model_version: str = "v1"
    #: False: no outcome is filled (the backfill never ran).
    outcomes: bool = True
    #: From day ``drop_from`` on, ``drop_column`` is no longer logged (null).
    drop_column: str | None = None
    drop_from: int = 0
    seed: int = 7
    #: First candle's open time (None: ``recent_start(days)``).
    start_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def start(self) -> datetime:
        """The first candle's open time."""
        if self.start_at is None:
            self.start_at = recent_start(self.days)
        return self.start_at

    @property
    def end(self) -> datetime:
        """The open time just after the last candle."""
        return self.start + timedelta(days=self.days)


def _prices(rng: np.random.Generator, count: int, symbols: int) -> np.ndarray:
    market = rng.normal(0.0, 0.0022, count)
    own = rng.normal(0.0, 0.0018, (symbols, count))
    steps = market[None, :] + own
    return np.asarray(100.0 * np.exp(np.cumsum(steps, axis=1)))


def _actual_direction(returns: np.ndarray, threshold: float) -> np.ndarray:
    direction = np.full(returns.shape, "NEUTRAL", dtype=object)
    direction[returns > threshold + 1e-12] = "LONG"
    direction[returns < -threshold - 1e-12] = "SHORT"
    return direction


def _predicted(rng: np.random.Generator, actual: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """``actual`` where a draw is below ``accuracy``, else one of the two other classes."""
    right = rng.random(actual.shape) < accuracy
    actual_index = np.array([CLASS_INDEX[str(value)] for value in actual])
    wrong = CLASSES[(actual_index + rng.integers(1, 3, actual.shape)) % 3]
    return np.where(right, actual, wrong)


def scenario_rows(scenario: Scenario) -> list[dict[str, Any]]:
    """The scenario's ``ml_predictions`` rows, outcomes filled where they are due by the
    scenario's end."""
    rng = np.random.default_rng(scenario.seed)
    candles = scenario.days * PER_DAY
    lookahead = int(HORIZON_DELTAS["12h"] / CANDLE) + 1
    closes = _prices(rng, candles + lookahead, len(scenario.symbols))
    times = [scenario.start + k * CANDLE for k in range(candles)]
    day_of = np.arange(candles) // PER_DAY
    accuracy = np.full(candles, scenario.accuracy)
    if scenario.degrade_from is not None:
        accuracy[day_of >= scenario.degrade_from] = scenario.degraded_accuracy
    rows: list[dict[str, Any]] = []
    filled_at = scenario.end
    for s, symbol in enumerate(scenario.symbols):
        entry = closes[s, :candles]
        features_mean = rng.normal(0.0, 0.05, candles)
        if scenario.shift_from is not None:
            features_mean[day_of >= scenario.shift_from] += scenario.shift_sd * 0.05
        features_std = 1.0 + rng.normal(0.0, 0.02, candles)
        confidence = rng.uniform(0.4, 0.9, candles)
        horizons: dict[str, dict[str, np.ndarray]] = {}
        for horizon in HORIZONS:
            steps = int(HORIZON_DELTAS[horizon] / CANDLE)
            # the candle opening at t + h closes at t + h + 15m: due once that has passed
            due = np.array([t + HORIZON_DELTAS[horizon] + CANDLE <= scenario.end for t in times])
            actual_return = closes[s, steps : steps + candles] / entry - 1.0
            actual = _actual_direction(actual_return, DEFAULT_DIRECTION_THRESHOLDS[horizon])
            predicted = _predicted(rng, actual, accuracy)
            predicted_return = 0.5 * actual_return + rng.normal(0.0, 0.004, candles)
            horizons[horizon] = {
                "due": due,
                "actual_return": actual_return,
                "actual": actual,
                "predicted": predicted,
                "predicted_return": predicted_return,
            }
        for k, moment in enumerate(times):
            if (
                scenario.stopped_symbol == symbol
                and moment >= scenario.end - scenario.stop_before_end
            ):
                break
            row: dict[str, Any] = {
                "prediction_id": uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | k << 8 | s),
                "symbol": symbol,
                "timestamp": int(moment.timestamp() * 1000),
                "datetime": moment,
                "features_count": 240,
                "features_hash": int(rng.integers(1, 2**50)),
                "lookback_periods": 1,
                "features_mean": float(features_mean[k]),
                "features_std": float(features_std[k]),
                "features_min": float(features_mean[k] - 3.0),
                "features_max": float(features_mean[k] + 3.0),
                "nan_count": 0,
                "inf_count": 0,
                "is_duplicate": False,
                "close_price": float(entry[k]),
                "volume": 1000.0,
                "signal_type": str(horizons["1h"]["predicted"][k]),
                "signal_confidence": float(confidence[k]),
                "signal_timeframe": "1h",
                "risk_score": 0.3,
                "model_version": scenario.model_version,
                "inference_time_ms": float(5.0 + rng.gamma(2.0, 1.0)),
            }
            if scenario.drop_column is not None and day_of[k] >= scenario.drop_from:
                row[scenario.drop_column] = None
            any_outcome = False
            for horizon, values in horizons.items():
                predicted = str(values["predicted"][k])
                row[f"predicted_return_{horizon}"] = float(values["predicted_return"][k])
                row[f"direction_{horizon}"] = predicted
                row[f"direction_{horizon}_confidence"] = float(confidence[k])
                if scenario.outcomes and values["due"][k]:
                    actual = str(values["actual"][k])
                    actual_return = float(values["actual_return"][k])
                    row[f"actual_return_{horizon}"] = actual_return
                    row[f"actual_direction_{horizon}"] = actual
                    row[f"accuracy_{horizon}"] = predicted == actual
                    row[f"return_error_{horizon}"] = (
                        float(values["predicted_return"][k]) - actual_return
                    )
                    any_outcome = True
            if any_outcome:
                row["actuals_filled_at"] = filled_at
            rows.append(row)
    return rows
