"""The tunables of ``mlpred check`` in one value, defaulting to ``mlpred_cli.config``.

Every check function takes a ``MonitorSettings``; its defaults are the ``[monitor]`` keys of
the config file (applied to ``mlpred_cli.config`` when it loads), and a notebook overrides
fields with ``dataclasses.replace(DEFAULT_SETTINGS, warning_alpha=0.05)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from mlpred_cli import config


@dataclass(frozen=True)
class MonitorSettings:
    """Thresholds and sizes of every check (see ``config`` for what each one means)."""

    reference_days: int = config.REFERENCE_DAYS
    warning_alpha: float = config.WARNING_ALPHA
    critical_alpha: float = config.CRITICAL_ALPHA
    drift_bins: int = config.DRIFT_BINS
    drift_min_effect_warning: float = config.DRIFT_MIN_EFFECT_WARNING
    drift_min_effect_critical: float = config.DRIFT_MIN_EFFECT_CRITICAL
    drift_min_rows: int = config.DRIFT_MIN_ROWS
    drift_min_window: timedelta = config.DRIFT_MIN_WINDOW
    ks_max_rows: int = config.KS_MAX_ROWS
    drift_max_rows: int = config.DRIFT_MAX_ROWS
    drift_bootstrap_resamples: int = config.DRIFT_BOOTSTRAP_RESAMPLES
    drift_bootstrap_seed: int = config.DRIFT_BOOTSTRAP_SEED
    cusum_allowance: float = config.CUSUM_ALLOWANCE
    cusum_warning_limit: float = config.CUSUM_WARNING_LIMIT
    cusum_critical_limit: float = config.CUSUM_CRITICAL_LIMIT
    cusum_reference_allowance: float = config.CUSUM_REFERENCE_ALLOWANCE
    extreme_day_z: float = config.EXTREME_DAY_Z
    performance_min_day_rows: int = config.PERFORMANCE_MIN_DAY_ROWS
    symbol_min_rows: int = config.SYMBOL_MIN_ROWS
    reference_min_days: int = config.REFERENCE_MIN_DAYS
    stale_candles_warning: int = config.STALE_CANDLES_WARNING
    stale_candles_critical: int = config.STALE_CANDLES_CRITICAL
    freshness_lookback: timedelta = config.FRESHNESS_LOOKBACK
    candle_interval: timedelta = timedelta(minutes=config.CANDLE_INTERVALS["15m"])
    outcome_lag_warning: timedelta = config.OUTCOME_LAG_WARNING
    outcome_lag_critical: timedelta = config.OUTCOME_LAG_CRITICAL
    nan_share_warning: float = config.NAN_SHARE_WARNING
    nan_share_critical: float = config.NAN_SHARE_CRITICAL
    duplicate_share_warning: float = config.DUPLICATE_SHARE_WARNING
    duplicate_share_critical: float = config.DUPLICATE_SHARE_CRITICAL
    inference_p95_warning_ms: float = config.INFERENCE_P95_WARNING_MS
    inference_p95_critical_ms: float = config.INFERENCE_P95_CRITICAL_MS
    webhook_timeout_s: float = config.WEBHOOK_TIMEOUT_S
    webhook_attempts: int = config.WEBHOOK_ATTEMPTS
    webhook_backoff_s: float = config.WEBHOOK_BACKOFF_S


DEFAULT_SETTINGS = MonitorSettings()
