"""Per-symbol accuracy tests: each symbol's current window against its own reference
period, one-sided (only a drop is a problem), every test of a run controlled together with
Benjamini-Hochberg.

The standard error of each window's accuracy has the same two parts as the daily series
(``monitor.standardized``): the binomial variance times the overlap design effect, plus a
between-day variance estimated from the symbol's reference days (over the window's days).

Pure: the per-symbol daily rollup frame in, ``CheckResult`` values out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from scipy import stats

from mlpred_cli.config import HORIZONS
from mlpred_cli.monitor.performance_windows import (
    DayWindow,
    in_window,
    matured_mask,
    model_version_order,
)
from mlpred_cli.monitor.results import CheckResult, Scope, Severity
from mlpred_cli.monitor.settings import DEFAULT_SETTINGS, MonitorSettings
from mlpred_cli.monitor.standardized import design_effect

METRIC = "symbol_accuracy"


@dataclass(frozen=True)
class SymbolTest:
    """One symbol's comparison before the multiple-testing control."""

    symbol: str
    model_version: str
    horizon: str
    reference_accuracy: float
    current_accuracy: float
    reference_rows: int
    current_rows: int
    reference_days: int
    current_days: int
    between_day_sd: float
    design_effect: float
    z: float
    p_value: float


def symbol_test(
    days: pd.Series,
    scored: np.ndarray,
    correct: np.ndarray,
    reference: DayWindow,
    current: DayWindow,
    effect: float,
    min_rows: int,
) -> tuple[float, float, dict[str, float]] | None:
    """(z, one-sided p, figures) of one symbol's current accuracy against its reference,
    None when either window has fewer than ``min_rows`` scored rows. ``days`` holds the
    matured days of ``scored`` / ``correct`` (counts per day)."""
    in_reference = in_window(days, *reference) & (scored > 0)
    judged = in_window(days, max(reference[1], current[0]), current[1]) & (scored > 0)
    reference_rows, current_rows = int(scored[in_reference].sum()), int(scored[judged].sum())
    if reference_rows < max(min_rows, 1) or current_rows < max(min_rows, 1):
        return None
    reference_accuracy = float(correct[in_reference].sum()) / reference_rows
    current_accuracy = float(correct[judged].sum()) / current_rows
    pooled = float(correct[in_reference].sum() + correct[judged].sum()) / (
        reference_rows + current_rows
    )
    floor = 0.5 / (reference_rows + current_rows)
    pooled = min(max(pooled, floor), 1.0 - floor)
    row_variance = pooled * (1.0 - pooled) * effect
    reference_days, current_days = int(in_reference.sum()), int(judged.sum())
    tau2 = 0.0
    if reference_days >= 2:
        values = correct[in_reference] / scored[in_reference]
        spread = float(np.sum((values - reference_accuracy) ** 2)) / (reference_days - 1)
        tau2 = max(0.0, spread - float(np.mean(row_variance / scored[in_reference])))
    variance = (
        row_variance / reference_rows
        + tau2 / reference_days
        + row_variance / current_rows
        + tau2 / current_days
    )
    z = (current_accuracy - reference_accuracy) / math.sqrt(variance)
    figures = {
        "reference_accuracy": reference_accuracy,
        "current_accuracy": current_accuracy,
        "reference_rows": float(reference_rows),
        "current_rows": float(current_rows),
        "reference_days": float(reference_days),
        "current_days": float(current_days),
        "between_day_sd": math.sqrt(tau2),
    }
    return z, float(stats.norm.cdf(z)), figures


def _tests(
    frame: pd.DataFrame,
    references: Mapping[str, DayWindow],
    current: DayWindow,
    matured_through: Mapping[str, datetime | None],
    cadence: timedelta,
    min_rows: int,
) -> list[SymbolTest]:
    found: list[SymbolTest] = []
    active = frame[in_window(frame["date"], *current) & (frame["scored"] > 0)]
    for version in model_version_order(list(active["model_version"].unique())):
        reference = references.get(version)
        if reference is None:
            continue
        rows = frame[frame["model_version"] == version]
        for horizon in (h for h in HORIZONS if h in set(rows["horizon"])):
            effect = design_effect(horizon, cadence)
            of_horizon = rows[rows["horizon"] == horizon]
            summed = of_horizon.groupby(["symbol", "date"], sort=True)[["scored", "correct"]]
            per_day = summed.sum().reset_index()
            per_day = per_day[matured_mask(per_day["date"], matured_through.get(horizon))]
            for symbol, part in per_day.groupby("symbol", sort=True):
                outcome = symbol_test(
                    part["date"],
                    part["scored"].to_numpy(float),
                    part["correct"].to_numpy(float),
                    reference,
                    current,
                    effect,
                    min_rows,
                )
                if outcome is None:
                    continue
                z, p_value, figures = outcome
                found.append(
                    SymbolTest(
                        symbol=str(symbol),
                        model_version=version,
                        horizon=horizon,
                        reference_accuracy=figures["reference_accuracy"],
                        current_accuracy=figures["current_accuracy"],
                        reference_rows=int(figures["reference_rows"]),
                        current_rows=int(figures["current_rows"]),
                        reference_days=int(figures["reference_days"]),
                        current_days=int(figures["current_days"]),
                        between_day_sd=figures["between_day_sd"],
                        design_effect=effect,
                        z=z,
                        p_value=p_value,
                    )
                )
    return found


def _result(test: SymbolTest, q_value: float, settings: MonitorSettings) -> CheckResult:
    if q_value <= settings.critical_alpha:
        severity, threshold = Severity.CRITICAL, settings.critical_alpha
    elif q_value <= settings.warning_alpha:
        severity, threshold = Severity.WARNING, settings.warning_alpha
    else:
        severity, threshold = Severity.OK, settings.warning_alpha
    label = f"accuracy {test.horizon} of {test.symbol}"
    if severity is Severity.OK:
        message = (
            f"{label} {test.current_accuracy:.3f} over {test.current_days} days vs "
            f"{test.reference_accuracy:.3f} (reference): q {q_value:.2g}"
        )
    else:
        message = (
            f"{label} fell from {test.reference_accuracy:.3f} (reference) to "
            f"{test.current_accuracy:.3f} over {test.current_days} days: "
            f"q {q_value:.2g} <= {threshold:g}"
        )
    return CheckResult(
        check="performance",
        metric=METRIC,
        scope=Scope(symbol=test.symbol, model_version=test.model_version, horizon=test.horizon),
        severity=severity,
        value=q_value,
        threshold=threshold,
        n=test.current_rows,
        message=message,
        details={
            "reference_accuracy": test.reference_accuracy,
            "current_accuracy": test.current_accuracy,
            "reference_rows": test.reference_rows,
            "reference_days": test.reference_days,
            "current_days": test.current_days,
            "between_day_sd": test.between_day_sd,
            "design_effect": test.design_effect,
            "z": test.z,
            "p_value": test.p_value,
            "q_value": q_value,
            "correction": "benjamini-hochberg",
        },
    )


def symbol_checks(
    symbol_daily: pd.DataFrame,
    *,
    references: Mapping[str, DayWindow],
    current: DayWindow,
    matured_through: Mapping[str, datetime | None],
    cadence: timedelta,
    settings: MonitorSettings = DEFAULT_SETTINGS,
) -> list[CheckResult]:
    """One ``symbol_accuracy`` result per (model version, horizon, symbol) with at least
    ``settings.symbol_min_rows`` matured scored rows in both its reference and the current
    window (days after the reference only); severity from the Benjamini-Hochberg q-value of
    every such test together. ``symbol_daily`` has a ``date`` column of ``datetime.date``
    (see ``performance_checks``, which prepares it)."""
    if symbol_daily.empty:
        return []
    tests = _tests(
        symbol_daily, references, current, matured_through, cadence, settings.symbol_min_rows
    )
    if not tests:
        return []
    q_values = stats.false_discovery_control([test.p_value for test in tests], method="bh")
    return [_result(test, float(q), settings) for test, q in zip(tests, q_values, strict=True)]
