"""``run_check``: every check of ``mlpred check`` over one database, the alert state it
changes and the webhook it calls. This is the function cron (through the CLI) and a
notebook call.

Windows. The **current** window is the last ``days`` (default ``CHECK_DAYS``) up to now, or
``since``/``until``. Each model version's **reference** is its first ``reference_days`` days
(``MonitorSettings``), or the explicit ``reference`` window for every version. Performance
runs its CUSUM from the reference's end through the current window; drift compares the
reference's rows with the current window's rows after the reference ends. Freshness looks at
what logged in the last ``freshness_lookback``; quality judges the current window's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd

from mlpred_cli.config import CHECK_DAYS
from mlpred_cli.errors import InputError
from mlpred_cli.monitor.alert_state import mark_sent, record_alerts
from mlpred_cli.monitor.drift import DRIFT_COLUMNS, DriftWindows, drift_checks
from mlpred_cli.monitor.freshness import freshness_results
from mlpred_cli.monitor.performance import (
    PERFORMANCE_COLUMNS,
    default_reference,
    performance_checks,
)
from mlpred_cli.monitor.quality import quality_checks
from mlpred_cli.monitor.results import (
    CHECK_NAMES,
    CheckReport,
    CheckResult,
    Scope,
    in_reference_period,
    not_judged,
)
from mlpred_cli.monitor.settings import DEFAULT_SETTINGS, MonitorSettings
from mlpred_cli.monitor.webhook import deliver_alerts
from mlpred_cli.store.liveness_reads import liveness, newest_outcomes, quality_figures
from mlpred_cli.store.monitor_reads import VersionSpan, daily_rollups, drift_sample, version_spans
from mlpred_cli.store.prediction_queries import PredictionFilter, make_filter, parse_time
from mlpred_cli.store.prediction_reads import reading
from mlpred_cli.store.source import DatabaseSource

TimeValue = str | datetime | None


def parse_checks(only: Sequence[str] | None) -> tuple[str, ...]:
    """The checks to run, in ``CHECK_NAMES`` order; every one when ``only`` is empty."""
    if not only:
        return CHECK_NAMES
    unknown = [name for name in only if name not in CHECK_NAMES]
    if unknown:
        raise InputError(f"unknown check {unknown[0]!r}; choose from {', '.join(CHECK_NAMES)}")
    return tuple(name for name in CHECK_NAMES if name in only)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _day_span(since: datetime, until: datetime) -> tuple[date, date]:
    """The days ``[first, end)`` a time range covers (a cut day counts)."""
    end = until.date() if until == _midnight(until.date()) else until.date() + timedelta(1)
    return since.date(), max(end, since.date() + timedelta(1))


@dataclass(frozen=True)
class CheckWindows:
    """The resolved windows of a run (see the module docstring)."""

    current: PredictionFilter
    reference: tuple[datetime, datetime] | None

    @property
    def since(self) -> datetime:
        assert self.current.since is not None
        return self.current.since

    @property
    def until(self) -> datetime:
        assert self.current.until is not None
        return self.current.until

    def reference_days(self, span: VersionSpan, settings: MonitorSettings) -> tuple[date, date]:
        """``span``'s reference days ``[first, end)``."""
        if self.reference is not None:
            return _day_span(*self.reference)
        return default_reference(span.first_day, settings)

    def describe(self, references: dict[str, tuple[date, date]]) -> dict[str, Any]:
        return {
            "current": {"since": self.since, "until": self.until},
            "reference": (
                {"since": self.reference[0], "until": self.reference[1]}
                if self.reference is not None
                else {
                    version or "(none)": {"first_day": first, "end_day": end}
                    for version, (first, end) in references.items()
                }
            ),
        }


def resolve_windows(
    *,
    symbol: str | None,
    model_version: str | None,
    days: float | None,
    since: TimeValue,
    until: TimeValue,
    reference: tuple[TimeValue, TimeValue] | None,
    now: datetime,
) -> CheckWindows:
    """Validate the window options (``InputError`` on bad input)."""
    if days is None and since is None and until is None:
        days = CHECK_DAYS
    current = make_filter(
        symbol=symbol, model_version=model_version, days=days, since=since, until=until, now=now
    )
    until_at = current.until or now
    since_at = current.since or until_at - timedelta(days=CHECK_DAYS)
    if since_at >= until_at:
        raise InputError("since must be before until")
    current = replace(current, since=since_at, until=until_at)
    window = None
    if reference is not None:
        start, end = reference
        if start is None or end is None:
            raise InputError("reference needs both a start and an end")
        window = (parse_time(start, "reference start"), parse_time(end, "reference end"))
        if window[0] >= window[1]:
            raise InputError("reference start must be before its end")
        if window[1] >= until_at:
            raise InputError("reference must end before the current window ends")
    return CheckWindows(current, window)


def _cadence(symbol_daily: pd.DataFrame) -> timedelta:
    """Typical spacing of one (symbol, model version)'s predictions: a day over the median
    count of its days (15 minutes when nothing is known)."""
    if symbol_daily.empty:
        return timedelta(minutes=15)
    counts = symbol_daily.loc[symbol_daily["horizon"] == symbol_daily["horizon"].iloc[0]]
    counts = counts["predictions"]
    counts = counts[counts > 0]
    if counts.empty:
        return timedelta(minutes=15)
    return timedelta(days=1) / float(counts.median())


#: Rollup columns the per-symbol tests (and the cadence) read.
SYMBOL_COLUMNS: tuple[str, ...] = ("predictions", "scored", "correct")


def _merged(spans: Sequence[tuple[date, date]]) -> list[tuple[date, date]]:
    """Day ranges ``[first, end)`` merged where they overlap or touch, in order."""
    merged: list[tuple[date, date]] = []
    for first, end in sorted(spans):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((first, end))
    return merged


def _performance(
    conn: Any,
    windows: CheckWindows,
    spans: Sequence[VersionSpan],
    references: dict[str, tuple[date, date]],
    matured: dict[str, datetime | None],
    settings: MonitorSettings,
) -> list[CheckResult]:
    if not spans:
        return []
    start = min(first for first, _ in references.values())
    period = PredictionFilter(
        symbol=windows.current.symbol,
        model_version=windows.current.model_version,
        since=_midnight(start),
        until=windows.until,
    )
    columns = list(dict.fromkeys([*PERFORMANCE_COLUMNS, "predictions"]))  # + the cadence
    daily = daily_rollups(conn, period, columns)
    # per symbol only the reference periods and the window count: a year of every symbol's
    # days would be most of the run's time
    current = _day_span(windows.since, windows.until)
    parts = [
        daily_rollups(
            conn,
            replace(period, since=_midnight(first), until=min(_midnight(end), windows.until)),
            SYMBOL_COLUMNS,
            ("day", "symbol", "model_version"),
        )
        for first, end in _merged([*references.values(), current])
        if _midnight(first) < windows.until
    ]
    symbol_daily = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    wanted = set(references)
    daily = daily[daily["model_version"].isin(wanted)]
    symbol_daily = symbol_daily[symbol_daily["model_version"].isin(wanted)]
    return performance_checks(
        daily,
        symbol_daily,
        references=references,
        current=current,
        matured_through=matured,
        cadence=_cadence(symbol_daily),
        settings=settings,
    )


def _drift(
    conn: Any,
    windows: CheckWindows,
    spans: Sequence[VersionSpan],
    references: dict[str, tuple[date, date]],
    settings: MonitorSettings,
) -> list[CheckResult]:
    found = []
    notes: list[CheckResult] = []
    for span in spans:
        if windows.reference is not None:
            ref_since, ref_until = windows.reference
        else:
            first, end = references[span.model_version]
            ref_since, ref_until = _midnight(first), _midnight(end)
        current_since = max(windows.since, ref_until)
        scope = Scope(model_version=span.model_version)
        if current_since >= windows.until:
            days = (ref_since.date(), _day_span(ref_since, ref_until)[1])
            notes.append(in_reference_period("drift", span.model_version, days))
            continue
        if windows.until - current_since < settings.drift_min_window:
            hours = (windows.until - current_since) / timedelta(hours=1)
            notes.append(
                not_judged(
                    "drift",
                    "window",
                    scope,
                    f"drift (model {span.model_version or '(none)'}): {hours:.1f} h of the "
                    f"window follow the reference; drift needs {settings.drift_min_window}",
                )
            )
            continue
        samples = [
            drift_sample(
                conn,
                symbol=windows.current.symbol,
                model_version=span.model_version,
                since=start,
                until=end,
                columns=DRIFT_COLUMNS,
                max_rows=settings.drift_max_rows,
            )
            for start, end in ((ref_since, ref_until), (current_since, windows.until))
        ]
        (reference_rows, reference_total), (current_rows, current_total) = samples
        if reference_total == 0:
            notes.append(
                not_judged(
                    "drift",
                    "reference_rows",
                    scope,
                    f"drift (model {span.model_version or '(none)'}): no reference row left "
                    f"in [{ref_since:%Y-%m-%d}, {ref_until:%Y-%m-%d}) (archived?); pass a "
                    "reference window whose rows are still in the database",
                )
            )
            continue
        found.append(
            DriftWindows(
                span.model_version,
                reference_rows,
                current_rows,
                reference_total,
                current_total,
                symbol=windows.current.symbol,
            )
        )
    return notes + drift_checks(found, settings)


#: Metrics of the OK results saying a check judged nothing for part of its scope.
NOT_JUDGED_METRICS = frozenset({"window", "reference_rows", "reference_period"})


def _narrowed(
    results: list[CheckResult], symbol: str | None, model_version: str | None
) -> list[CheckResult]:
    """``results`` with the run's symbol / model version filter written into every scope
    that leaves it open, so a narrow run (judging one symbol's rows) never shares a
    fingerprint with, and never resolves, the whole run's alerts."""
    if symbol is None and model_version is None:
        return results
    for result in results:
        scope = result.scope
        result.scope = Scope(
            symbol=scope.symbol if scope.symbol is not None else symbol,
            model_version=(
                scope.model_version if scope.model_version is not None else model_version
            ),
            horizon=scope.horizon,
        )
    return results


def run_check(
    database: DatabaseSource = None,
    *,
    only: Sequence[str] | None = None,
    symbol: str | None = None,
    model_version: str | None = None,
    days: float | None = None,
    since: TimeValue = None,
    until: TimeValue = None,
    reference: tuple[TimeValue, TimeValue] | None = None,
    webhook: str | None = None,
    record: bool = True,
    settings: MonitorSettings = DEFAULT_SETTINGS,
    now: datetime | None = None,
) -> CheckReport:
    """Run the checks (``only`` a subset of ``CHECK_NAMES``) and return their report.

    With ``record`` (the default) the results update ``ml_alerts``; with ``webhook`` the
    alerts that opened, escalated or resolved are posted there (a failed post is reported in
    ``report.webhook``, never raised, and never changes the status). Raises ``InputError``
    on bad options and ``DatabaseUnavailable`` when the database cannot be reached.
    """
    checks = parse_checks(only)
    if webhook and not record:
        raise InputError("a webhook needs the alert state: keep record on")
    moment = parse_time(now, "now") if now is not None else datetime.now(UTC)
    windows = resolve_windows(
        symbol=symbol,
        model_version=model_version,
        days=days,
        since=since,
        until=until,
        reference=reference,
        now=moment,
    )
    results: list[CheckResult] = []
    notes: list[str] = []
    with reading(database) as engine:
        with engine.connect() as conn:
            spans = [
                span
                for span in version_spans(conn, windows.current)
                if span.last_day >= windows.since.date()
                and _midnight(span.first_day) < windows.until
            ]
            references = {
                span.model_version: windows.reference_days(span, settings) for span in spans
            }
            if not spans:
                notes.append(f"no predictions {windows.current.describe()}")
            matured: dict[str, datetime | None] = {}
            if "performance" in checks:
                # outcomes filled up to the window's end; a backfill stalled for longer than
                # the window leaves nothing matured (and freshness says why)
                matured = newest_outcomes(
                    conn,
                    PredictionFilter(symbol=symbol or None, model_version=model_version or None),
                    windows.until - windows.since + timedelta(days=1),
                    now=windows.until,
                    candle_interval=settings.candle_interval,
                )
            for name in checks:
                if name == "performance":
                    results += _performance(conn, windows, spans, references, matured, settings)
                elif name == "drift":
                    results += _drift(conn, windows, spans, references, settings)
                elif name == "freshness":
                    snapshot = liveness(
                        conn,
                        PredictionFilter(
                            symbol=symbol or None, model_version=model_version or None
                        ),
                        now=moment,
                        lookback=settings.freshness_lookback,
                        candle_interval=settings.candle_interval,
                    )
                    results += freshness_results(snapshot, settings)
                else:
                    results += quality_checks(
                        quality_figures(conn, windows.current), windows.current, settings
                    )
        results = _narrowed(results, symbol or None, model_version or None)
        report = CheckReport(
            generated_at=moment,
            windows=windows.describe(references),
            results=results,
            checks=checks,
            notes=notes,
        )
        live = windows.until >= moment - timedelta(minutes=1)
        if record and not live:
            report.notes.append(
                "the window ends in the past: the alert state was left alone (and no webhook "
                "was called); run without until to update it"
            )
        elif record:
            # a check that left part of its scope unjudged (a short window, archived
            # reference rows) must not expire that part's alerts
            partial = {r.check for r in results if r.metric in NOT_JUDGED_METRICS}
            expire = () if symbol or model_version else tuple(set(checks) - partial)
            update = record_alerts(engine, results, moment, expire_checks=expire)
            report.alerts = update.changes
            if webhook:
                report.webhook = deliver_alerts(
                    webhook,
                    update.firing,
                    update.resolved_rows,
                    status=report.status,
                    generated_at=moment,
                    settings=settings,
                )
                if report.webhook.error is None:
                    mark_sent(engine, update, moment)
    return report
