"""The drift check: each model version's inputs and outputs in the current window against
its reference window, one ``analysis.drift`` test per column, judged together.

A test alerts only when both hold: its PSI is beyond the null band for the windows'
effective sizes (Benjamini-Hochberg q-value across every drift test of the run below the
warning / critical alpha) **and** the shift is large enough to matter (Wasserstein distance
in reference standard deviations, or total variation for categories, at least the
warning / critical minimum effect). Significance alone would flag negligible shifts of big
windows; a fixed PSI limit would flag noise in small ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control

from mlpred_cli.analysis.drift import DriftTest, categorical_drift, continuous_drift
from mlpred_cli.config import HORIZONS, SIGNAL_TYPES
from mlpred_cli.errors import NotEnoughData
from mlpred_cli.monitor.results import CheckResult, Scope, Severity
from mlpred_cli.monitor.settings import DEFAULT_SETTINGS, MonitorSettings
from mlpred_cli.store.prediction_row import INDICATOR_COLUMNS

#: Numeric columns whose distribution is compared: the stored feature statistics, the
#: model's outputs and the key indicators.
CONTINUOUS_COLUMNS: tuple[str, ...] = (
    "features_mean",
    "features_std",
    "features_min",
    "features_max",
    "nan_count",
    "zero_variance_count",
    *(f"predicted_return_{horizon}" for horizon in HORIZONS),
    "signal_confidence",
    # the indicators, but not price and volume levels, which wander without anything wrong
    *(name for name in INDICATOR_COLUMNS if name not in ("close_price", "volume")),
)
#: Categorical columns whose mix is compared (LONG / SHORT / NEUTRAL).
CATEGORICAL_COLUMNS: tuple[str, ...] = (
    *(f"direction_{horizon}" for horizon in HORIZONS),
    "signal_type",
)
DRIFT_COLUMNS: tuple[str, ...] = CONTINUOUS_COLUMNS + CATEGORICAL_COLUMNS


@dataclass(frozen=True)
class DriftWindows:
    """One model version's reference and current rows (``store.monitor_reads.drift_sample``
    frames) and how many rows each window held before sampling."""

    model_version: str
    reference: pd.DataFrame
    current: pd.DataFrame
    reference_rows: int
    current_rows: int
    symbol: str | None = None


def _symbol_codes(windows: DriftWindows) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of each window's symbols (one series per symbol), shared by both."""
    symbols = pd.concat([windows.reference["symbol"], windows.current["symbol"]])
    codes, _ = pd.factorize(symbols.astype(str))
    split = len(windows.reference)
    return codes[:split].astype(np.int64), codes[split:].astype(np.int64)


def _test(column: str, windows: DriftWindows, settings: MonitorSettings) -> DriftTest | None:
    """The drift test of ``column``; None when neither window has a value in it."""
    reference, current = windows.reference, windows.current
    if column not in reference or column not in current:
        return None
    ref_values, cur_values = reference[column], current[column]
    if ref_values.isna().all() and cur_values.isna().all():
        return None
    groups = _symbol_codes(windows)
    if column in CATEGORICAL_COLUMNS:
        return categorical_drift(
            column,
            ref_values.to_numpy(dtype=object),
            cur_values.to_numpy(dtype=object),
            categories=SIGNAL_TYPES,
            reference_groups=groups[0],
            current_groups=groups[1],
            alpha=settings.warning_alpha,
            min_rows=settings.drift_min_rows,
        )
    return continuous_drift(
        column,
        ref_values.to_numpy(dtype=float, na_value=np.nan),
        cur_values.to_numpy(dtype=float, na_value=np.nan),
        reference_groups=groups[0],
        current_groups=groups[1],
        bins=settings.drift_bins,
        alpha=settings.warning_alpha,
        ks_max_rows=settings.ks_max_rows,
        resamples=settings.drift_bootstrap_resamples,
        seed=settings.drift_bootstrap_seed,
        min_rows=settings.drift_min_rows,
    )


def _count(frame: pd.DataFrame, column: str) -> int:
    return int(frame[column].notna().sum()) if column in frame else 0


def _no_longer_logged(
    column: str, window: DriftWindows, scope: Scope, settings: MonitorSettings
) -> CheckResult | None:
    """CRITICAL when ``column`` had values in the reference and has none in the current
    window (a feature pipeline or indicator stopped): the biggest drift there is."""
    before, now = _count(window.reference, column), _count(window.current, column)
    if before < settings.drift_min_rows or now > 0 or window.current.empty:
        return None
    return CheckResult(
        "drift",
        f"psi:{column}",
        scope,
        Severity.CRITICAL,
        None,
        None,
        len(window.current),
        f"{column} ({scope.describe()}): no value in the {len(window.current):,} current "
        f"rows, {before:,} of {len(window.reference):,} in the reference: no longer logged?",
        {"reference_values": before, "current_values": 0},
    )


def _severity(q_value: float, effect: float | None, settings: MonitorSettings) -> Severity:
    size = 0.0 if effect is None or not np.isfinite(effect) else effect
    if q_value < settings.critical_alpha and size >= settings.drift_min_effect_critical:
        return Severity.CRITICAL
    if q_value < settings.warning_alpha and size >= settings.drift_min_effect_warning:
        return Severity.WARNING
    return Severity.OK


def _message(test: DriftTest, scope: Scope, severity: Severity, q_value: float) -> str:
    effect = "-" if test.effect is None else f"{test.effect:.2f}"
    unit = "TV" if test.kind == "categorical" else "ref sd"
    verdict = "drifted" if severity is not Severity.OK else "stable"
    return (
        f"{test.name} {verdict} ({scope.describe()}): PSI {test.psi:.3f} vs null "
        f"{test.psi_threshold:.3f}, shift {effect} {unit}, q={q_value:.2g}, "
        f"n={test.n:,} m={test.m:,}"
    )


def drift_checks(
    windows: Sequence[DriftWindows], settings: MonitorSettings = DEFAULT_SETTINGS
) -> list[CheckResult]:
    """Results of every drift test of ``windows`` (check ``drift``, metric
    ``psi:<column>``), q-values controlled across all of them. A version whose windows are
    too small gets one UNKNOWN result (metric ``drift``) saying so. A column logged in the
    reference and absent from the current window is CRITICAL; one with too few values to
    judge is UNKNOWN (left out when it never had values)."""
    found: list[tuple[DriftTest, Scope]] = []
    results: list[CheckResult] = []
    for window in windows:
        scope = Scope(symbol=window.symbol, model_version=window.model_version)
        smaller = min(len(window.reference), len(window.current))
        if smaller < settings.drift_min_rows:
            which = "reference" if len(window.reference) == smaller else "current"
            results.append(
                CheckResult(
                    "drift",
                    "drift",
                    scope,
                    Severity.UNKNOWN,
                    None,
                    float(settings.drift_min_rows),
                    smaller,
                    f"drift ({scope.describe()}): the {which} window holds {smaller} "
                    f"prediction(s), fewer than the {settings.drift_min_rows} needed",
                )
            )
            continue
        for column in DRIFT_COLUMNS:
            gone = _no_longer_logged(column, window, scope, settings)
            if gone is not None:
                results.append(gone)
                continue
            try:
                test = _test(column, window, settings)
            except NotEnoughData as error:
                if _count(window.reference, column) > 0:  # logged before: say it cannot judge
                    results.append(
                        CheckResult(
                            "drift",
                            f"psi:{column}",
                            scope,
                            Severity.UNKNOWN,
                            None,
                            None,
                            _count(window.current, column),
                            f"{column} ({scope.describe()}): {error}",
                        )
                    )
                continue
            if test is not None:
                found.append((test, scope))
    if not found:
        return results
    p_values = np.array([test.p_value for test, _ in found], dtype=float)
    q_values = false_discovery_control(np.clip(np.nan_to_num(p_values, nan=1.0), 0.0, 1.0))
    for (test, scope), q_value in zip(found, q_values, strict=True):
        severity = _severity(float(q_value), test.effect, settings)
        details: Mapping[str, object] = {**test.to_dict(), "q_value": float(q_value)}
        results.append(
            CheckResult(
                "drift",
                f"psi:{test.name}",
                scope,
                severity,
                test.psi,
                test.psi_threshold,
                test.m,
                _message(test, scope, severity, float(q_value)),
                dict(details),
            )
        )
    return results
