"""The freshness check: is the bot still logging, and is the backfill still filling outcomes?

Pure functions over a ``store.liveness_reads.Liveness`` snapshot (``freshness_results``) or
the separate reads (``freshness_checks``), returning ``CheckResult``s with
``check="freshness"``:

- ``stale_minutes`` per symbol and per model version seen in the lookback: minutes since its
  newest prediction was made (its candle closed), against ``stale_candles_*`` candles;
- ``outcome_lag_minutes`` per horizon: how far the newest filled outcome trails the newest
  prediction whose outcome is due, against ``outcome_lag_*``.

Nothing logged in the whole lookback cannot be judged: every result is UNKNOWN.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from mlpred_cli.config import HORIZONS
from mlpred_cli.monitor.results import CheckResult, Scope, Severity
from mlpred_cli.monitor.settings import DEFAULT_SETTINGS, MonitorSettings
from mlpred_cli.store.liveness_reads import Liveness, due_through

CHECK = "freshness"
STALE = "stale_minutes"
OUTCOME_LAG = "outcome_lag_minutes"


def minutes(span: timedelta) -> float:
    """A duration in minutes."""
    return span.total_seconds() / 60


def describe_minutes(value: float) -> str:
    """``95 min``, ``26.5 h`` or ``3.2 days``: short enough for one line."""
    if value < 120:
        return f"{value:.0f} min"
    if value < 48 * 60:
        return f"{value / 60:.1f} h"
    return f"{value / 1440:.1f} days"


def _graded(
    value: float, warning: float, critical: float, ceiling: Severity = Severity.CRITICAL
) -> tuple[Severity, float]:
    if value > critical and ceiling is Severity.CRITICAL:
        return Severity.CRITICAL, critical
    if value > warning:
        return Severity.WARNING, warning
    return Severity.OK, warning


def freshness_checks(
    symbols: Mapping[str | None, datetime],
    model_versions: Mapping[str | None, datetime],
    filled: Mapping[str, datetime | None],
    *,
    now: datetime,
    settings: MonitorSettings = DEFAULT_SETTINGS,
    due: Mapping[str, datetime | None] | None = None,
    oldest: datetime | None = None,
    newest: datetime | None = None,
) -> list[CheckResult]:
    """Every freshness result from the separate reads: ``last_seen`` by symbol and by model
    version since ``now - settings.freshness_lookback``, ``newest_outcomes`` (``filled``),
    and optionally ``newest_due`` (``due``), ``oldest_since`` and ``newest_prediction``.

    Without ``due``, a horizon's newest due prediction is taken as ``now - horizon - one
    candle``, or the newest prediction seen when that is older; without ``oldest``, a
    horizon with no outcome at all counts its lag from the start of the lookback (so a
    deployment younger than the lag limits may be flagged: pass ``oldest``).
    """
    seen = {str(key): moment for key, moment in symbols.items()}
    latest = max(seen.values(), default=None)
    lookback = settings.freshness_lookback
    if due is None:
        due = {
            horizon: None
            if latest is None
            else min(latest, due_through(now, horizon, settings.candle_interval))
            for horizon in HORIZONS
        }
    snapshot = Liveness(
        now=now,
        lookback=lookback,
        candle_interval=settings.candle_interval,
        symbols=seen,
        model_versions=dict(model_versions),
        due=dict(due),
        filled=dict(filled),
        oldest=oldest if oldest is not None else (None if latest is None else now - lookback),
        newest=newest if newest is not None else latest,
    )
    return freshness_results(snapshot, settings)


def freshness_results(
    snapshot: Liveness, settings: MonitorSettings = DEFAULT_SETTINGS
) -> list[CheckResult]:
    """Every freshness result of ``snapshot``: per symbol and model version, then per
    horizon. Model versions are keyed as in the rollups ('' for rows without one)."""
    if not snapshot.symbols:
        return _nothing_logged(snapshot)
    return [*stale_results(snapshot, settings), *outcome_lag_results(snapshot, settings)]


def stale_results(snapshot: Liveness, settings: MonitorSettings) -> list[CheckResult]:
    """``stale_minutes`` of each symbol and model version seen in the lookback.

    A prediction for the candle opening at t is made when it closes (t + one candle), so
    the stale time is ``now - t - candle``. A model version that stopped while another one
    still logs was most likely retired by a rollout: it warns, never goes critical.
    """
    candle = minutes(settings.candle_interval)
    warning = settings.stale_candles_warning * candle
    critical = settings.stale_candles_critical * candle
    results = []
    for symbol, last in sorted(snapshot.symbols.items()):
        value = _stale(snapshot.now, last, settings)
        severity, limit = _graded(value, warning, critical)
        hint = ": is the bot down?" if severity is not Severity.OK else ""
        results.append(
            _stale_result(Scope(symbol=symbol), symbol, value, severity, limit, last, hint)
        )
    fresh_versions = {
        version
        for version, last in snapshot.model_versions.items()
        if _stale(snapshot.now, last, settings) <= warning
    }
    for version, last in sorted(snapshot.model_versions.items(), key=lambda item: item[0] or ""):
        key = version or ""
        value = _stale(snapshot.now, last, settings)
        others = sorted(other or "(none)" for other in fresh_versions - {version})
        ceiling = Severity.WARNING if others else Severity.CRITICAL
        severity, limit = _graded(value, warning, critical, ceiling)
        hint = ""
        if severity is not Severity.OK:
            hint = (
                f" while {', '.join(others[:3])} still logs: retired, or did it crash?"
                if others
                else ": is the bot down?"
            )
        label = f"model {key or '(none)'}"
        results.append(
            _stale_result(Scope(model_version=key), label, value, severity, limit, last, hint)
        )
    return results


def _stale(now: datetime, last: datetime, settings: MonitorSettings) -> float:
    return max(0.0, minutes(now - last - settings.candle_interval))


def _stale_result(
    scope: Scope,
    label: str,
    value: float,
    severity: Severity,
    limit: float,
    last: datetime,
    hint: str,
) -> CheckResult:
    if severity is Severity.OK:
        message = f"{label}: last prediction {describe_minutes(value)} ago"
    else:
        message = (
            f"{label}: no prediction for {describe_minutes(value)} "
            f"(limit {describe_minutes(limit)}){hint}"
        )
    return CheckResult(
        check=CHECK,
        metric=STALE,
        scope=scope,
        severity=severity,
        value=value,
        threshold=limit,
        n=None,
        message=message,
        details={"last_prediction": last},
    )


def outcome_lag_results(snapshot: Liveness, settings: MonitorSettings) -> list[CheckResult]:
    """``outcome_lag_minutes`` per horizon: the newest prediction whose outcome is due minus
    the newest whose outcome is filled (so a bot outage is not blamed on the backfill).
    With no outcome filled in the lookback, the lag is at least the span of due
    predictions left unfilled (from the oldest prediction of the lookback)."""
    warning = minutes(settings.outcome_lag_warning)
    critical = minutes(settings.outcome_lag_critical)
    results = []
    for horizon in HORIZONS:
        due, filled = snapshot.due.get(horizon), snapshot.filled.get(horizon)
        details: dict[str, object] = {"newest_due": due, "newest_filled": filled}
        if due is None:
            message = f"{horizon}: no outcome due yet"
            results.append(_lag_result(horizon, Severity.OK, None, warning, message, details))
            continue
        start = filled if filled is not None else snapshot.oldest or due
        value = max(0.0, minutes(due - start))
        severity, limit = _graded(value, warning, critical)
        lag = describe_minutes(value)
        if filled is None:
            text = f"{horizon}: no outcome filled for the {lag} of predictions due"
        else:
            text = f"{horizon}: outcomes {lag} behind"
        if severity is not Severity.OK:
            text += f" (limit {describe_minutes(limit)}): the backfill cron may be down"
        results.append(_lag_result(horizon, severity, value, limit, text, details))
    return results


def _lag_result(
    horizon: str,
    severity: Severity,
    value: float | None,
    limit: float | None,
    message: str,
    details: dict[str, object],
) -> CheckResult:
    return CheckResult(
        check=CHECK,
        metric=OUTCOME_LAG,
        scope=Scope(horizon=horizon),
        severity=severity,
        value=value,
        threshold=limit,
        n=None,
        message=message,
        details=details,
    )


def _nothing_logged(snapshot: Liveness) -> list[CheckResult]:
    since = snapshot.now - snapshot.lookback
    why = f"no predictions since {since:%Y-%m-%d %H:%M} UTC"
    if snapshot.newest is not None:
        why += f" (newest {snapshot.newest:%Y-%m-%d %H:%M})"
    details: dict[str, object] = {"since": since, "newest_prediction": snapshot.newest}
    # Predictions that stopped longer ago than the lookback: the bot is down (CRITICAL);
    # a database that never held any cannot be judged (UNKNOWN).
    down = snapshot.newest is not None
    stale = CheckResult(
        check=CHECK,
        metric=STALE,
        scope=Scope(),
        severity=Severity.CRITICAL if down else Severity.UNKNOWN,
        value=minutes(snapshot.now - snapshot.newest) if down else None,  # type: ignore[operator]
        threshold=None,
        n=0,
        message=why + (": is the bot down?" if down else ""),
        details=details,
    )
    lags = [
        _lag_result(horizon, Severity.UNKNOWN, None, None, f"{horizon}: {why}", details)
        for horizon in HORIZONS
    ]
    return [stale, *lags]
