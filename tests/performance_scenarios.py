"""Simulated daily rollups for the performance check (shared by the tests and
``bench/bench_check_alarms.py``).

Per symbol, a 15-minute random-walk log price (a common market factor plus symbol noise);
per horizon, the actual direction from the future return and ``DEFAULT_DIRECTION_THRESHOLDS``.
Whether a prediction is right comes from a latent "skill" process built like an outcome: a
moving sum of innovations over the horizon's window (common to all symbols in part), so the
correctness of predictions whose outcome windows overlap is correlated as in real data (runs
at 12h), and the correctness of symbols on the same day is correlated too. The prediction is
the actual direction when right, else one of the two other classes. ``regime_sd`` shifts the
day's skill for every symbol (regime noise). The predicted return has a given rank
correlation with the actual one; the direction confidence is drawn around a level.

The rows are aggregated into the columns of ``ml_prediction_daily`` the check reads, per
(day, symbol, model_version, horizon) and summed over symbols per (day, model_version,
horizon), as ``store.rollup_reads.read_rollup_rows`` returns them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pandas as pd
from scipy import stats

from mlpred_cli.config import CALIBRATION_BINS, DEFAULT_DIRECTION_THRESHOLDS, HORIZON_DELTAS

CADENCE = timedelta(minutes=15)
PER_DAY = 96
START = date(2026, 1, 1)


@dataclass(frozen=True)
class Scenario:
    """A simulated model: ``accuracy`` (probability a prediction is right) until
    ``drop_day`` (0-based, None: never), ``accuracy_after`` from then on for the
    ``degraded`` symbols (indices; None: all). ``confidence`` / ``confidence_after`` are the
    mean direction confidences before and after the drop day, ``ic`` / ``ic_after`` the rank
    correlation of predicted and actual return. ``skill_common`` is the share of the skill
    process common to all symbols; ``regime_sd`` the day-to-day sd of skill (probit scale)."""

    days: int = 60
    symbols: int = 3
    accuracy: float = 0.60
    accuracy_after: float | None = None
    drop_day: int | None = None
    degraded: tuple[int, ...] | None = None
    confidence: float = 0.60
    confidence_after: float | None = None
    ic: float = 0.10
    ic_after: float | None = None
    step_sd: float = 0.003
    market_share: float = 0.5
    skill_common: float = 0.3
    regime_sd: float = 0.05
    model_version: str = "v1"
    start: date = START
    horizons: tuple[str, ...] = ("15m", "1h", "4h", "12h")


@dataclass
class SimulatedRollups:
    """A simulated model's rollups: ``daily`` by (day, model_version, horizon),
    ``symbol_daily`` by (day, symbol, model_version, horizon), every day matured."""

    daily: pd.DataFrame
    symbol_daily: pd.DataFrame
    first_day: date
    days: int
    matured_through: dict[str, datetime | None] = field(default_factory=dict)
    cadence: timedelta = CADENCE

    def day(self, index: int) -> date:
        """The ``index``-th simulated day (0-based)."""
        return self.first_day + timedelta(days=index)


def _moving_sum(innovations: np.ndarray, window: int, length: int) -> np.ndarray:
    """Normalized sums of ``innovations`` over (t, t + window], t < length (last axis)."""
    total = np.cumsum(innovations, axis=-1)
    total = np.concatenate([np.zeros((*total.shape[:-1], 1)), total], axis=-1)
    difference = total[..., window : window + length] - total[..., :length]
    return np.asarray(difference / np.sqrt(window), dtype=float)


def _per_day_level(
    scenario: Scenario, before: float, after: float | None, symbols: int
) -> np.ndarray:
    level = np.full((symbols, scenario.days), before)
    if after is not None and scenario.drop_day is not None:
        chosen = range(symbols) if scenario.degraded is None else scenario.degraded
        for symbol in chosen:
            level[symbol, scenario.drop_day :] = after
    return level


def _spearman_by_day(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Spearman correlation along the last axis (no ties in continuous draws)."""
    n = predicted.shape[-1]
    rank_p = predicted.argsort(axis=-1).argsort(axis=-1).astype(float)
    rank_a = actual.argsort(axis=-1).argsort(axis=-1).astype(float)
    squared = np.sum((rank_p - rank_a) ** 2, axis=-1)
    return np.asarray(1.0 - 6.0 * squared / (n * (n * n - 1)), dtype=float)


def _horizon_rows(
    scenario: Scenario,
    rng: np.random.Generator,
    log_price: np.ndarray,
    horizon: str,
    regime: np.ndarray,
) -> dict[str, np.ndarray]:
    symbols, days = scenario.symbols, scenario.days
    steps = days * PER_DAY
    window = int(HORIZON_DELTAS[horizon] / CADENCE)
    log_return = log_price[:, window : window + steps] - log_price[:, :steps]
    actual_return = np.expm1(log_return)
    threshold = DEFAULT_DIRECTION_THRESHOLDS[horizon]
    actual = np.where(
        actual_return > threshold + 1e-12, 0, np.where(actual_return < -threshold - 1e-12, 1, 2)
    )
    common = _moving_sum(rng.standard_normal(steps + window), window, steps)
    own = _moving_sum(rng.standard_normal((symbols, steps + window)), window, steps)
    skill = np.sqrt(scenario.skill_common) * common + np.sqrt(1 - scenario.skill_common) * own
    accuracy = _per_day_level(scenario, scenario.accuracy, scenario.accuracy_after, symbols)
    limit = stats.norm.ppf(accuracy) + regime[None, :]
    correct = skill.reshape(symbols, days, PER_DAY) < limit[:, :, None]
    actual = actual.reshape(symbols, days, PER_DAY)
    other = (actual + 1 + rng.integers(0, 2, size=actual.shape)) % 3
    predicted = np.where(correct, actual, other)
    level = _per_day_level(scenario, scenario.confidence, scenario.confidence_after, symbols)
    confidence = np.clip(
        level[:, :, None] + 0.08 * rng.standard_normal(actual.shape), 1 / 3 + 1e-6, 0.999
    )
    ic = _per_day_level(scenario, scenario.ic, scenario.ic_after, symbols)[:, :, None]
    standardized = (log_return / (scenario.step_sd * np.sqrt(window))).reshape(actual.shape)
    predicted_return = ic * standardized + np.sqrt(1 - ic**2) * rng.standard_normal(actual.shape)
    hit = correct.astype(float)
    directional = predicted != 2
    rows = {
        "scored": np.full((symbols, days), PER_DAY),
        "correct": correct.sum(axis=-1),
        "directional": directional.sum(axis=-1),
        "directional_correct": (directional & correct).sum(axis=-1),
        "calibration_n": np.full((symbols, days), PER_DAY),
        "calibration_correct": correct.sum(axis=-1),
        "calibration_confidence_sum": confidence.sum(axis=-1),
        "brier_sum": ((confidence - hit) ** 2).sum(axis=-1),
        "return_pairs": np.full((symbols, days), PER_DAY),
        "ic_n": np.full((symbols, days), PER_DAY),
    }
    bins = np.minimum((confidence * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    key = (np.arange(symbols * days).reshape(symbols, days, 1) * CALIBRATION_BINS + bins).ravel()
    size = symbols * days * CALIBRATION_BINS
    shape = (symbols, days, CALIBRATION_BINS)
    counts = np.bincount(key, minlength=size).reshape(shape)
    hits = np.bincount(key, weights=hit.ravel(), minlength=size).reshape(shape)
    sums = np.bincount(key, weights=confidence.ravel(), minlength=size).reshape(shape)
    for k in range(CALIBRATION_BINS):
        rows[f"ece_{k}_n"] = counts[:, :, k]
        rows[f"ece_{k}_correct"] = hits[:, :, k].round().astype(int)
        rows[f"ece_{k}_confidence_sum"] = sums[:, :, k]
    daily_ic = _spearman_by_day(predicted_return, actual_return.reshape(actual.shape))
    rows["ic_sum"] = daily_ic
    rows["ic_sq_sum"] = daily_ic**2
    rows["ic_days"] = np.ones((symbols, days), dtype=int)
    return rows


def simulate(scenario: Scenario, seed: int) -> SimulatedRollups:
    """The daily rollups of ``scenario`` drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    symbols, days = scenario.symbols, scenario.days
    longest = max(int(HORIZON_DELTAS[h] / CADENCE) for h in scenario.horizons)
    steps = days * PER_DAY + longest + 1
    market = rng.standard_normal(steps)
    own = rng.standard_normal((symbols, steps))
    share = scenario.market_share
    increments = scenario.step_sd * (np.sqrt(share) * market + np.sqrt(1 - share) * own)
    log_price = np.cumsum(increments, axis=-1)
    regime = scenario.regime_sd * rng.standard_normal(days)
    day_text = [(scenario.start + timedelta(days=d)).isoformat() for d in range(days)]
    symbol_names = [f"SYM{index:02d}USDT" for index in range(symbols)]
    parts = []
    for horizon in scenario.horizons:
        rows = _horizon_rows(scenario, rng, log_price, horizon, regime)
        part = pd.DataFrame({name: values.ravel() for name, values in rows.items()})
        part.insert(0, "day", np.tile(day_text, symbols))
        part.insert(1, "symbol", np.repeat(symbol_names, days))
        part.insert(2, "model_version", scenario.model_version)
        part.insert(3, "horizon", horizon)
        parts.append(part)
    symbol_daily = pd.concat(parts, ignore_index=True)
    symbol_daily["predictions"] = PER_DAY
    keys = ["day", "model_version", "horizon"]
    summed = [name for name in symbol_daily.columns if name not in (*keys, "symbol")]
    daily = symbol_daily.groupby(keys, sort=False)[summed].sum().reset_index()
    end = datetime.combine(scenario.start + timedelta(days=days), time(), tzinfo=UTC)
    return SimulatedRollups(
        daily=daily,
        symbol_daily=symbol_daily,
        first_day=scenario.start,
        days=days,
        matured_through=dict.fromkeys(scenario.horizons, end),
    )
