"""Daily performance figures standardized against a reference period.

A day's figure (accuracy, hit rate, mean daily IC, Brier score) is compared with the pooled
reference figure in units of its own standard error. That error is the larger of two
estimates (added as variance components, which on a typical day is the larger of the two):

- analytic: the row variance times the design effect of overlapping horizons (a 12h outcome
  of predictions made every 15 minutes shares 47/48 of its window with its neighbour, so a
  day's rows are worth about ``horizon / cadence`` times fewer independent ones), over the
  day's rows;
- empirical: the day-to-day variance of the reference days beyond the analytic one
  (cross-symbol correlation, market regimes), as a between-day component ``tau²``.

The reference mean's own uncertainty is added to every day's variance.

Pure: arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from mlpred_cli.config import CALIBRATION_BINS, HORIZON_DELTAS

#: Smallest variance a standardized figure may have; below it the figure cannot be judged.
_MIN_VARIANCE = 1e-14


@dataclass(frozen=True)
class PerformanceMetric:
    """A daily figure: its name, its label in messages and its direction."""

    name: str
    label: str
    higher_is_better: bool


ACCURACY = PerformanceMetric("accuracy", "accuracy", higher_is_better=True)
HIT_RATE = PerformanceMetric("hit_rate", "hit rate", higher_is_better=True)
IC = PerformanceMetric("ic", "IC", higher_is_better=True)
BRIER = PerformanceMetric("brier", "Brier", higher_is_better=False)

#: The figures the performance check judges, in report order.
PERFORMANCE_METRICS: tuple[PerformanceMetric, ...] = (ACCURACY, HIT_RATE, IC, BRIER)

_ECE_COLUMNS: tuple[str, ...] = tuple(
    f"ece_{k}_{stem}"
    for k in range(CALIBRATION_BINS)
    for stem in ("n", "correct", "confidence_sum")
)

#: The rollup columns the performance check reads (a narrow ``read_rollup_rows``).
PERFORMANCE_COLUMNS: tuple[str, ...] = (
    "scored",
    "correct",
    "directional",
    "directional_correct",
    "calibration_n",
    "brier_sum",
    *_ECE_COLUMNS,
    "ic_n",
)


def design_effect(horizon: str, cadence: timedelta) -> float:
    """How many rows one independent outcome is worth at ``horizon`` for predictions made
    every ``cadence``: ``horizon / cadence``, at least 1."""
    if cadence <= timedelta(0):
        return 1.0
    return max(1.0, HORIZON_DELTAS[horizon] / cadence)


@dataclass(frozen=True)
class DailyFigures:
    """One metric's figures per day (rows already summed over symbols): ``value`` per day,
    ``n`` the rows behind it (the per-day minimum applies to it), ``weight`` its weight in a
    pooled mean, and ``frame`` the day rows it came from (for metric-specific variances)."""

    value: np.ndarray
    n: np.ndarray
    weight: np.ndarray
    frame: pd.DataFrame


def _ratio(numerator: pd.Series, denominator: pd.Series) -> np.ndarray:
    top = numerator.to_numpy(dtype=float)
    bottom = denominator.to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), np.nan)


def daily_figures(frame: pd.DataFrame, metric: PerformanceMetric) -> DailyFigures:
    """``metric`` per row of ``frame`` (one row per day, the rollup columns summed)."""
    if metric is ACCURACY:
        n = frame["scored"]
        return DailyFigures(
            _ratio(frame["correct"], n), n.to_numpy(float), n.to_numpy(float), frame
        )
    if metric is HIT_RATE:
        n = frame["directional"]
        value = _ratio(frame["directional_correct"], n)
        return DailyFigures(value, n.to_numpy(float), n.to_numpy(float), frame)
    if metric is BRIER:
        n = frame["calibration_n"]
        return DailyFigures(
            _ratio(frame["brier_sum"], n), n.to_numpy(float), n.to_numpy(float), frame
        )
    if metric is IC:
        days = frame["ic_days"]
        value = _ratio(frame["ic_sum"], days)
        pairs = np.where(days.to_numpy(float) > 0, frame["ic_n"].to_numpy(float), 0.0)
        return DailyFigures(value, pairs, days.to_numpy(float), frame)
    raise ValueError(f"unknown metric {metric.name!r}")


def _brier_row_variance(frame: pd.DataFrame, brier: float) -> float:
    """Variance of one row's squared error, from the calibration bins: within a bin of mean
    confidence c and share q correct, (c - y)^2 is (1 - c)^2 with probability q, else c^2.
    Without the bins, the bound B (1 - B) of a figure in [0, 1] with mean B."""
    if not all(column in frame.columns for column in _ECE_COLUMNS):
        return brier * (1.0 - brier)
    fourth = 0.0
    total = 0.0
    for k in range(CALIBRATION_BINS):
        members = float(frame[f"ece_{k}_n"].sum())
        if members <= 0:
            continue
        share = float(frame[f"ece_{k}_correct"].sum()) / members
        confidence = float(frame[f"ece_{k}_confidence_sum"].sum()) / members
        fourth += members * (share * (1 - confidence) ** 4 + (1 - share) * confidence**4)
        total += members
    if total <= 0:
        return brier * (1.0 - brier)
    return max(fourth / total - brier * brier, 0.0)


def row_variance(metric: PerformanceMetric, mean: float, reference_rows: pd.DataFrame) -> float:
    """Variance of one row's contribution to ``metric`` if ``mean`` were the truth (for the
    IC: of one symbol-day IC times its pairs, (1 - rho^2)^2)."""
    if metric is IC:
        return max((1.0 - mean**2) ** 2, 1e-6)
    if metric is BRIER:
        return _brier_row_variance(reference_rows, mean)
    return mean * (1.0 - mean)


def analytic_variance(
    figures: DailyFigures, metric: PerformanceMetric, row: float, effect: float
) -> np.ndarray:
    """Sampling variance of each day's figure for a row variance ``row`` and the design
    effect ``effect`` of overlapping horizons (inf for a day without rows)."""
    rows = figures.n
    if metric is IC:
        # Spearman IC of n pairs: variance ~ (1 - rho^2)^2 / (n - 1); a day's mean of K
        # symbol ICs over N pairs in all: about (1 - rho^2)^2 / (N - K)
        rows = figures.n - figures.weight
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rows > 0, row * effect / np.where(rows > 0, rows, 1.0), np.inf)


@dataclass(frozen=True)
class ReferenceFit:
    """What a reference period says about a figure: its pooled ``mean``, the between-day
    variance ``tau2`` beyond the analytic one, the variance of the mean itself
    (``mean_variance``), the design effect used and the ``days`` it rests on."""

    mean: float
    row_variance: float
    tau2: float
    mean_variance: float
    effect: float
    days: int
    rows: int


def _pooled(value: np.ndarray, weight: np.ndarray) -> float:
    return float(np.sum(value * weight) / np.sum(weight))


def _clip_share(mean: float, rows: float, metric: PerformanceMetric) -> float:
    """Keeps a pooled share off 0 and 1 so its binomial variance is never zero."""
    if metric is IC:
        return mean
    floor = 0.5 / max(rows, 1.0)
    return min(max(mean, floor), 1.0 - floor)


def fit_reference(
    figures: DailyFigures, metric: PerformanceMetric, effect: float
) -> ReferenceFit | None:
    """The ``ReferenceFit`` of the reference days in ``figures`` (None without a day)."""
    days = len(figures.value)
    if days == 0 or float(np.sum(figures.weight)) <= 0:
        return None
    rows = float(np.sum(figures.n))
    mean = _clip_share(_pooled(figures.value, figures.weight), rows, metric)
    row = row_variance(metric, mean, figures.frame)
    analytic = analytic_variance(figures, metric, row, effect)
    finite = np.isfinite(analytic)
    tau2 = 0.0
    if days >= 2 and finite.all():
        spread = float(np.sum((figures.value - mean) ** 2) / (days - 1))
        tau2 = max(0.0, spread - float(np.mean(analytic)))
    weights = figures.weight / np.sum(figures.weight)
    analytic_mean = float(np.sum(weights**2 * np.where(finite, analytic, 0.0)))
    mean_variance = analytic_mean + tau2 / days
    return ReferenceFit(mean, row, tau2, mean_variance, effect, days, int(rows))


def day_variance(figures: DailyFigures, metric: PerformanceMetric, fit: ReferenceFit) -> np.ndarray:
    """Each day's variance around the reference mean: analytic plus ``tau2`` plus the
    reference mean's own variance."""
    analytic = analytic_variance(figures, metric, fit.row_variance, fit.effect)
    return analytic + fit.tau2 + fit.mean_variance


def standardize(figures: DailyFigures, metric: PerformanceMetric, fit: ReferenceFit) -> np.ndarray:
    """Each day's z-score against the reference, oriented so that negative is worse (a
    higher Brier score gives a negative z)."""
    variance = np.maximum(day_variance(figures, metric, fit), _MIN_VARIANCE)
    z = (figures.value - fit.mean) / np.sqrt(variance)
    return np.asarray(z if metric.higher_is_better else -z, dtype=float)


def reference_share(
    figures: DailyFigures, metric: PerformanceMetric, fit: ReferenceFit
) -> np.ndarray:
    """Each day's z-units share of the reference mean's own error: sqrt(var(mean) / var(day)).

    The error is common to every day after the reference, so a CUSUM that sums days adds it
    up instead of averaging it out; the performance check widens its allowance by it."""
    variance = np.maximum(day_variance(figures, metric, fit), _MIN_VARIANCE)
    return np.asarray(np.sqrt(fit.mean_variance / variance), dtype=float)
