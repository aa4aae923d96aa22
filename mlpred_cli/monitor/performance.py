"""The performance check: per model version and horizon, each matured day's accuracy, hit
rate, mean daily IC and Brier score standardized against the model version's reference
period (``monitor.standardized``), a one-sided CUSUM over the days since the reference
(``monitor.cusum``) for sustained drops, one extreme day as a warning, and per-symbol tests
controlled together with Benjamini-Hochberg (``monitor.symbol_tests``).

Pure: the daily rollup frames of ``store.rollup_reads.read_rollup_rows`` in, ``CheckResult``
values out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from mlpred_cli.config import HORIZONS
from mlpred_cli.monitor.cusum import excursion, lower_cusum
from mlpred_cli.monitor.performance_windows import (
    DayWindow,
    check_window,
    day_dates,
    default_reference,
    in_window,
    matured_mask,
    model_version_order,
    per_day,
)
from mlpred_cli.monitor.results import CheckResult, Scope, Severity, in_reference_period
from mlpred_cli.monitor.settings import DEFAULT_SETTINGS, MonitorSettings
from mlpred_cli.monitor.standardized import (
    BRIER,
    PERFORMANCE_COLUMNS,
    PERFORMANCE_METRICS,
    DailyFigures,
    PerformanceMetric,
    daily_figures,
    design_effect,
    fit_reference,
    reference_share,
    standardize,
)
from mlpred_cli.monitor.symbol_tests import symbol_checks

__all__ = ["PERFORMANCE_COLUMNS", "default_reference", "performance_checks"]

CHECK = "performance"

_SUMMED = [*PERFORMANCE_COLUMNS, "ic_sum", "ic_sq_sum", "ic_days"]


def _version_text(version: str) -> str:
    return version if version else "(none)"


def _scope(version: str, horizon: str) -> Scope:
    return Scope(model_version=version, horizon=horizon)


def _pooled(figures: DailyFigures, mask: np.ndarray) -> float:
    weight = figures.weight[mask]
    total = float(np.sum(weight))
    return float(np.sum(figures.value[mask] * weight) / total) if total > 0 else float("nan")


@dataclass(frozen=True)
class _Series:
    """One model version and horizon: its day rows and what the check needs around them."""

    version: str
    horizon: str
    rows: pd.DataFrame
    matured: np.ndarray
    reference: DayWindow | None
    current: DayWindow
    effect: float


def _unknown(series: _Series, metric: PerformanceMetric, reason: str, n: int) -> CheckResult:
    return CheckResult(
        check=CHECK,
        metric=f"{metric.name}_cusum",
        scope=_scope(series.version, series.horizon),
        severity=Severity.UNKNOWN,
        value=None,
        threshold=None,
        n=n,
        message=f"{metric.label} {series.horizon}: {reason}",
        details={
            "reference_first_day": series.reference[0].isoformat() if series.reference else None,
            "reference_end_day": series.reference[1].isoformat() if series.reference else None,
        },
    )


def _judge_series(
    series: _Series, metric: PerformanceMetric, settings: MonitorSettings
) -> CheckResult | None:
    figures = daily_figures(series.rows, metric)
    if float(np.sum(figures.n)) <= 0:
        return None  # the model never logs what this figure needs
    if series.reference is None:
        reason = f"no reference period for model {_version_text(series.version)}"
        return _unknown(series, metric, reason, 0)
    days = series.rows["date"]
    usable = series.matured & (figures.n >= settings.performance_min_day_rows)
    usable &= np.isfinite(figures.value)
    reference_first, reference_end = series.reference
    current_first, current_end = series.current
    if not series.matured.any():
        return _unknown(series, metric, "no matured day yet (outcomes not filled)", 0)
    in_reference = usable & in_window(days, reference_first, reference_end)
    if int(in_reference.sum()) < settings.reference_min_days:
        reason = (
            f"reference of model {_version_text(series.version)} "
            f"[{reference_first}, {reference_end}) has {int(in_reference.sum())} usable days "
            f"(needs {settings.reference_min_days})"
        )
        return _unknown(series, metric, reason, int(figures.n[in_reference].sum()))
    followed = usable & in_window(days, reference_end, current_end)
    judged = followed & in_window(days, current_first, current_end)
    if not judged.any():
        reason = f"no matured day after the reference in [{current_first}, {current_end})"
        return _unknown(series, metric, reason, 0)
    fit = fit_reference(_subset(figures, in_reference), metric, series.effect)
    if fit is None:
        return _unknown(series, metric, "reference has no rows", 0)
    followed_figures = _subset(figures, followed)
    z = standardize(followed_figures, metric, fit)
    allowance = settings.cusum_allowance + settings.cusum_reference_allowance * reference_share(
        followed_figures, metric, fit
    )
    statistic = lower_cusum(z, allowance)
    judged_in_followed = judged[followed]
    judged_from = int(np.flatnonzero(judged_in_followed)[0])
    run = excursion(
        statistic, judged_from, settings.cusum_warning_limit, settings.cusum_critical_limit
    )
    followed_days = list(days[followed])
    judged_z = z[judged_from:]
    worst_index = judged_from + int(np.argmin(judged_z))
    n = int(followed_figures.n[judged_from:].sum())
    current_mean = _pooled(followed_figures, judged_in_followed)
    change = np.zeros(len(z), dtype=bool)
    change[run.start_index : run.peak_index + 1] = True
    change_mean = _pooled(followed_figures, change) if run.peak > 0 else current_mean

    def day_text(index: int | None) -> str | None:
        return None if index is None else followed_days[index].isoformat()

    details: dict[str, Any] = {
        "direction": "higher_is_worse" if metric is BRIER else "lower_is_worse",
        "reference_first_day": reference_first.isoformat(),
        "reference_end_day": reference_end.isoformat(),
        "reference_mean": fit.mean,
        "reference_mean_sd": float(np.sqrt(fit.mean_variance)),
        "reference_days": fit.days,
        "reference_rows": fit.rows,
        "between_day_sd": float(np.sqrt(fit.tau2)),
        "design_effect": series.effect,
        "current_mean": current_mean,
        "current_days": int(judged.sum()),
        "cusum_days": len(followed_days),
        "change_start_day": day_text(run.start_index) if run.peak > 0 else None,
        "change_mean": change_mean,
        "peak_day": day_text(run.peak_index),
        "first_alarm_day": day_text(run.first_warning),
        "first_critical_day": day_text(run.first_critical),
        "last_day": day_text(len(followed_days) - 1),
        "last_day_value": float(followed_figures.value[-1]),
        "last_day_z": float(z[-1]),
        "last_cusum": float(statistic[-1]),
        "worst_day": day_text(worst_index),
        "worst_day_z": float(z[worst_index]),
        "allowance": settings.cusum_allowance,
        "reference_allowance": float(allowance[-1] - settings.cusum_allowance),
        "warning_limit": settings.cusum_warning_limit,
        "critical_limit": settings.cusum_critical_limit,
    }
    return _verdict(series, metric, settings, run.peak, n, details)


def _verdict(
    series: _Series,
    metric: PerformanceMetric,
    settings: MonitorSettings,
    peak: float,
    n: int,
    details: dict[str, Any],
) -> CheckResult:
    label = f"{metric.label} {series.horizon}"
    reference, change = details["reference_mean"], details["change_mean"]
    worse = "rose" if metric is BRIER else "fell"
    run_days = _run_days(details)
    value: float = peak
    if peak >= settings.cusum_critical_limit:
        severity, threshold = Severity.CRITICAL, settings.cusum_critical_limit
    elif peak >= settings.cusum_warning_limit:
        severity, threshold = Severity.WARNING, settings.cusum_warning_limit
    elif details["worst_day_z"] <= -settings.extreme_day_z:
        severity, threshold = Severity.WARNING, -settings.extreme_day_z
        value = details["worst_day_z"]
        details["trigger"] = "extreme_day"
        message = (
            f"{label} on {details['worst_day']} was far worse than the reference "
            f"{reference:.3f}: z {value:.1f} <= {threshold:g}"
        )
        return _result(series, metric, severity, value, threshold, n, message, details)
    else:
        severity, threshold = Severity.OK, settings.cusum_warning_limit
    if severity is Severity.OK:
        message = (
            f"{label} {details['current_mean']:.3f} over {details['current_days']} days "
            f"vs {reference:.3f} (reference): CUSUM {peak:.1f} < {threshold:g}"
        )
    else:
        details["trigger"] = "cusum"
        message = (
            f"{label} {worse} from {reference:.3f} (reference) to {change:.3f} over "
            f"{run_days} days: CUSUM {peak:.1f} >= {threshold:g}"
        )
    return _result(series, metric, severity, value, threshold, n, message, details)


def _run_days(details: dict[str, Any]) -> int:
    start, peak = details["change_start_day"], details["peak_day"]
    if start is None or peak is None:
        return int(details["current_days"])
    return (date.fromisoformat(peak) - date.fromisoformat(start)).days + 1


def _result(
    series: _Series,
    metric: PerformanceMetric,
    severity: Severity,
    value: float,
    threshold: float,
    n: int,
    message: str,
    details: dict[str, Any],
) -> CheckResult:
    return CheckResult(
        check=CHECK,
        metric=f"{metric.name}_cusum",
        scope=_scope(series.version, series.horizon),
        severity=severity,
        value=value,
        threshold=threshold,
        n=n,
        message=message,
        details=details,
    )


def _subset(figures: DailyFigures, mask: np.ndarray) -> DailyFigures:
    return DailyFigures(
        figures.value[mask], figures.n[mask], figures.weight[mask], figures.frame[mask]
    )


def _prepared(frame: pd.DataFrame) -> pd.DataFrame:
    prepared = frame.copy()
    prepared["date"] = day_dates(prepared) if not prepared.empty else pd.Series(dtype=object)
    prepared["model_version"] = prepared["model_version"].fillna("").astype(str)
    return prepared


def active_versions(frame: pd.DataFrame, current: DayWindow) -> list[str]:
    """Model versions with rows in the ``current`` window (the ones judged), '' last."""
    if frame.empty:
        return []
    present = frame[in_window(frame["date"], *current) & (frame["scored"] > 0)]
    return model_version_order(list(present["model_version"].unique()))


#: After its reference ends, a version waits this long at most for its first fully
#: matured day before "nothing to judge" becomes UNKNOWN (a stalled backfill, say).
FIRST_MATURED_DAY_GRACE = timedelta(days=2)


def _still_learning(
    reference: DayWindow, current: DayWindow, matured_through: Mapping[str, datetime | None]
) -> bool:
    """True while the version's reference has not ended by the window's end, or ended so
    recently that no day after it has matured yet at the quickest horizon."""
    if reference[1] >= current[1]:
        return True
    quickest = matured_through.get(HORIZONS[0])
    recent = reference[1] >= current[1] - FIRST_MATURED_DAY_GRACE
    return quickest is not None and recent and reference[1] >= quickest.date()


def _logged_rows(logged: pd.DataFrame, version: str) -> int:
    rows = logged[logged["model_version"] == version]
    one_horizon = rows[rows["horizon"] == rows["horizon"].iloc[0]]  # counts repeat per horizon
    return int(one_horizon["predictions"].sum())


def _unscored(
    frame: pd.DataFrame,
    current: DayWindow,
    judged: list[str],
    references: Mapping[str, DayWindow],
    matured_through: Mapping[str, datetime | None],
) -> list[CheckResult]:
    """UNKNOWN for each version that logged in ``current`` but has no scored row there
    (outcomes not filled: nothing to judge), OK while it is still in its reference period."""
    if frame.empty or "predictions" not in frame.columns:
        return []
    logged = frame[in_window(frame["date"], *current) & (frame["predictions"] > 0)]
    results = []
    for version in model_version_order(list(logged["model_version"].unique())):
        if version in judged:
            continue
        reference = references.get(version)
        if reference is not None and _still_learning(reference, current, matured_through):
            results.append(in_reference_period(CHECK, version, reference))
            continue
        results.append(
            CheckResult(
                check=CHECK,
                metric="matured_rows",
                scope=Scope(model_version=version),
                severity=Severity.UNKNOWN,
                value=0.0,
                threshold=None,
                n=_logged_rows(logged, version),
                message=f"model {_version_text(version)}: no matured outcome in "
                f"[{current[0]}, {current[1]}) to judge (is the backfill running?)",
            )
        )
    return results


def performance_checks(
    daily: pd.DataFrame,
    symbol_daily: pd.DataFrame | None,
    *,
    references: Mapping[str, DayWindow],
    current: DayWindow,
    matured_through: Mapping[str, datetime | None],
    cadence: timedelta,
    settings: MonitorSettings = DEFAULT_SETTINGS,
) -> list[CheckResult]:
    """Performance results of every model version with scored rows in ``current`` (days
    ``[first_day, end_day)``) and every horizon it has: one ``<metric>_cusum`` result per
    figure (accuracy, hit rate, IC, Brier; a figure the model never logs the inputs of is
    left out), then one ``symbol_accuracy`` result per symbol of ``symbol_daily`` with
    enough rows in both windows.

    ``daily`` is ``read_rollup_rows(..., by=("day", "model_version"))``'s frame,
    ``symbol_daily`` the same by ``("day", "symbol", "model_version")`` (None: no symbol
    tests). ``references`` maps a model version ('' = none) to its reference days; a version
    without one gets UNKNOWN results, one still in its reference period at the window's end
    a single OK ``reference_period`` result (nothing to judge yet, and nothing wrong: a
    deployment must not page for its first weeks). A day counts at a horizon once its end (the next
    midnight UTC) is at or before ``matured_through[horizon]``. ``cadence`` is the interval
    between a symbol's predictions (15 minutes), which sets the overlap design effect.
    """
    check_window(current, "current window")
    for version, window in references.items():
        check_window(window, f"reference of model {_version_text(version)}")
    frame = _prepared(daily)
    results: list[CheckResult] = []
    judged = active_versions(frame, current)
    results += _unscored(frame, current, judged, references, matured_through)
    for version in judged:
        reference = references.get(version)
        if reference is not None and _still_learning(reference, current, matured_through):
            results.append(in_reference_period(CHECK, version, reference))
            continue
        rows = frame[frame["model_version"] == version]
        horizons = [h for h in HORIZONS if h in set(rows["horizon"])]
        for horizon in horizons:
            day_rows = per_day(rows[rows["horizon"] == horizon], _SUMMED)
            series = _Series(
                version=version,
                horizon=horizon,
                rows=day_rows,
                matured=matured_mask(day_rows["date"], matured_through.get(horizon)),
                reference=reference,
                current=current,
                effect=design_effect(horizon, cadence),
            )
            for metric in PERFORMANCE_METRICS:
                result = _judge_series(series, metric, settings)
                if result is not None:
                    results.append(result)
    if symbol_daily is not None:
        results += symbol_checks(
            _prepared(symbol_daily),
            references=references,
            current=current,
            matured_through=matured_through,
            cadence=cadence,
            settings=settings,
        )
    return results
