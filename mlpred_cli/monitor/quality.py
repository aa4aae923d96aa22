"""The data-quality check of a window: NaN/inf inputs, duplicate feature vectors and slow
inference, from a ``store.liveness_reads.QualityFigures`` (pure).

Results have ``check="quality"`` and the selection's scope: ``nan_inf_share`` and
``duplicate_share`` (fractions of the window's rows, ``n`` = rows) and ``inference_p95_ms``
(``n`` = rows with an inference time). A share or p95 above a limit warns or is critical;
an empty window (or one without inference times, for the p95) is UNKNOWN.
"""

from __future__ import annotations

from mlpred_cli.monitor.results import CheckResult, Scope, Severity
from mlpred_cli.monitor.settings import DEFAULT_SETTINGS, MonitorSettings
from mlpred_cli.store.liveness_reads import QualityFigures
from mlpred_cli.store.prediction_queries import PredictionFilter

CHECK = "quality"
NAN_INF_SHARE = "nan_inf_share"
DUPLICATE_SHARE = "duplicate_share"
INFERENCE_P95 = "inference_p95_ms"


def _graded(value: float, warning: float, critical: float) -> tuple[Severity, float]:
    if value > critical:
        return Severity.CRITICAL, critical
    if value > warning:
        return Severity.WARNING, warning
    return Severity.OK, warning


def quality_checks(
    figures: QualityFigures,
    selection: PredictionFilter,
    settings: MonitorSettings = DEFAULT_SETTINGS,
) -> list[CheckResult]:
    """The three quality results of the window ``selection`` describes."""
    scope = Scope(symbol=selection.symbol, model_version=selection.model_version)
    window = selection.describe()
    rows = figures.rows
    return [
        _share(
            NAN_INF_SHARE,
            scope,
            figures.nan_inf_share,
            figures.nan_inf_rows,
            rows,
            (settings.nan_share_warning, settings.nan_share_critical),
            f"rows with NaN or infinite features {window}",
        ),
        _share(
            DUPLICATE_SHARE,
            scope,
            figures.duplicate_share,
            figures.duplicate_rows,
            rows,
            (settings.duplicate_share_warning, settings.duplicate_share_critical),
            f"duplicate feature vectors {window}",
        ),
        _inference(figures, scope, window, settings),
    ]


def _share(
    metric: str,
    scope: Scope,
    share: float | None,
    count: int,
    rows: int,
    limits: tuple[float, float],
    what: str,
) -> CheckResult:
    details: dict[str, object] = {"count": count}
    if share is None:
        return CheckResult(
            check=CHECK,
            metric=metric,
            scope=scope,
            severity=Severity.UNKNOWN,
            value=None,
            threshold=None,
            n=0,
            message=f"{what}: no predictions to judge",
            details=details,
        )
    severity, limit = _graded(share, *limits)
    message = f"{what}: {share:.2%} ({count} of {rows})"
    if severity is not Severity.OK:
        message += f", limit {limit:.2%}"
    return CheckResult(
        check=CHECK,
        metric=metric,
        scope=scope,
        severity=severity,
        value=share,
        threshold=limit,
        n=rows,
        message=message,
        details=details,
    )


def _inference(
    figures: QualityFigures, scope: Scope, window: str, settings: MonitorSettings
) -> CheckResult:
    details: dict[str, object] = {
        "p50_ms": figures.inference_p50_ms,
        "p99_ms": figures.inference_p99_ms,
        "sampled_rows": figures.sampled_rows,
    }
    p95 = figures.inference_p95_ms
    what = f"inference time p95 {window}"
    if p95 is None:
        why = "no predictions to judge" if figures.rows == 0 else "no inference times logged"
        return CheckResult(
            check=CHECK,
            metric=INFERENCE_P95,
            scope=scope,
            severity=Severity.UNKNOWN,
            value=None,
            threshold=None,
            n=figures.timed_rows,
            message=f"{what}: {why}",
            details=details,
        )
    severity, limit = _graded(
        p95, settings.inference_p95_warning_ms, settings.inference_p95_critical_ms
    )
    message = f"{what}: {p95:.0f} ms over {figures.timed_rows} rows"
    if severity is not Severity.OK:
        message += f", limit {limit:.0f} ms: is the model host overloaded?"
    return CheckResult(
        check=CHECK,
        metric=INFERENCE_P95,
        scope=scope,
        severity=severity,
        value=p95,
        threshold=limit,
        n=figures.timed_rows,
        message=message,
        details=details,
    )
