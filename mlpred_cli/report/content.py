"""What ``mlpred report`` shows, as one JSON-able document: the ``analyze`` sections of the
window (same keys, same numbers) plus the report's own figures (status strip, daily series,
IC distributions, reliability bins, realized returns, signal economics, per-symbol and
per-version tables, the ``mlpred check`` results). ``report.html`` renders it; the JSON
sidecar is this document as is.

Reads the database (through ``store``) and composes ``analysis`` and ``monitor``; no clock
of its own: ``now`` decides the window and every age, so the same data and ``now`` give
the same document.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import pandas as pd

from mlpred_cli.__about__ import __version__
from mlpred_cli.analysis import period_series, rollup_figures, signal_returns
from mlpred_cli.analysis.accuracy import accuracy_with_interval
from mlpred_cli.analysis.compare import compare_versions
from mlpred_cli.analysis.report import build_report
from mlpred_cli.config import (
    DEFAULT_REPORT_DAYS,
    HORIZONS,
    REPORT_POOLED_IC_MAX_ROWS,
    REPORT_RANK_MIN_ROWS,
    REPORT_RECENT_DAYS,
    direction_thresholds,
)
from mlpred_cli.errors import InputError, MlpredError
from mlpred_cli.monitor.alert_state import list_alerts
from mlpred_cli.monitor.check import run_check
from mlpred_cli.monitor.results import Severity
from mlpred_cli.render.output import to_jsonable
from mlpred_cli.render.verdicts import with_verdicts
from mlpred_cli.store.periodic_report_reads import PeriodicReportData, read_periodic_report_data
from mlpred_cli.store.prediction_queries import PredictionFilter, make_filter
from mlpred_cli.store.report_reads import read_report_data
from mlpred_cli.store.source import DatabaseSource

ImageFormat = Literal["svg", "png"]
IMAGE_FORMATS: tuple[str, ...] = ("svg", "png")

#: How many symbols the per-symbol table marks best and worst (at most).
RANKED_SYMBOLS = 3


def report_windows(
    *,
    symbol: str | None,
    model_version: str | None,
    days: float | None,
    since: str | datetime | None,
    until: str | datetime | None,
    now: datetime,
) -> tuple[PredictionFilter, PredictionFilter | None]:
    """The report's window (default: the last ``DEFAULT_REPORT_DAYS`` days up to ``now``;
    an open end stops at ``now``; ``until`` alone starts ``DEFAULT_REPORT_DAYS`` before it)
    and the previous period of the same length just before it (None when that would start
    before year 1). ``InputError`` on bad options."""
    if days is None and since is None and until is None:
        days = DEFAULT_REPORT_DAYS
    try:
        selection = make_filter(
            symbol=symbol,
            model_version=model_version,
            days=days,
            since=since,
            until=until,
            now=now,
        )
    except OverflowError:
        raise InputError(f"days {days:g} reaches past the calendar") from None
    if selection.until is None:
        if selection.since is not None and selection.since >= now:
            raise InputError(f"since {selection.since.isoformat()} is not before now")
        selection = replace(selection, until=now)
    end: datetime = selection.until or now
    start: datetime = selection.since or end - timedelta(days=DEFAULT_REPORT_DAYS)
    selection = replace(selection, since=start, until=end)  # --until alone: 7 days before it
    try:
        earlier = start - (end - start)
    except OverflowError:  # a window reaching back to year 1 has no previous period
        return selection, None
    return selection, replace(selection, since=earlier, until=start, days=None)


def _verdict(accuracy: dict[str, Any], base: float | None) -> str:
    """above / within / below the base rate by the accuracy interval: the one corrected for
    overlapping outcome windows when it is known, else the naive Wilson interval."""
    low, high = accuracy.get("accuracy_overlap_low"), accuracy.get("accuracy_overlap_high")
    if low is None or high is None:
        low, high = accuracy.get("accuracy_low"), accuracy.get("accuracy_high")
    if low is None or high is None or base is None:
        return "unknown"
    if low > base:
        return "above"
    return "below" if high < base else "within"


def _change(current: float | None, previous: float | None) -> float | None:
    return None if current is None or previous is None else current - previous


def _status(
    horizons: list[dict[str, Any]],
    calibration: list[dict[str, Any]],
    previous: pd.DataFrame | None,
) -> list[dict[str, Any]]:
    by_horizon = {row["horizon"]: row for row in calibration}
    strip = []
    for row in horizons:
        horizon = row["horizon"]
        entry: dict[str, Any] = {
            "horizon": horizon,
            "n": row["n"],
            "accuracy": row["accuracy"],
            "accuracy_low": row["accuracy_low"],
            "accuracy_high": row["accuracy_high"],
            "n_effective": row.get("n_effective"),
            "accuracy_overlap_low": row.get("accuracy_overlap_low"),
            "accuracy_overlap_high": row.get("accuracy_overlap_high"),
            "verdict_interval": "naive" if row.get("accuracy_overlap_low") is None else "overlap",
            "base_rate": row["base_rate"],
            "verdict": _verdict(row, row["base_rate"]),
            "daily_ic_mean": row["daily_ic_mean"],
            "daily_ic_t": row["daily_ic_t"],
            "brier": by_horizon.get(horizon, {}).get("brier"),
            "ece": by_horizon.get(horizon, {}).get("ece"),
            "previous_n": None,
            "previous_accuracy": None,
            "previous_daily_ic_mean": None,
        }
        if previous is not None and not previous.empty:
            summary = rollup_figures.horizon_summary(previous, horizon)
            entry["previous_n"] = int(summary["n"])
            entry["previous_accuracy"] = accuracy_with_interval(
                int(summary["correct"]), int(summary["n"])
            )["accuracy"]
            entry["previous_daily_ic_mean"] = rollup_figures.daily_ic(previous, horizon).mean
        entry["accuracy_change"] = _change(entry["accuracy"], entry["previous_accuracy"])
        entry["ic_change"] = _change(entry["daily_ic_mean"], entry["previous_daily_ic_mean"])
        strip.append(entry)
    return strip


def _maturity(
    predictions: int, horizons: list[dict[str, Any]], not_due: dict[str, int]
) -> list[dict[str, Any]]:
    scored = {row["horizon"]: row["n"] for row in horizons}
    rows = []
    for horizon in HORIZONS:
        due = max(0, predictions - not_due.get(horizon, 0))
        n = int(scored.get(horizon, 0))
        rows.append(
            {
                "horizon": horizon,
                "predictions": predictions,
                "due": due,
                "matured_share": due / predictions if predictions else None,
                "scored": n,
                "scored_share": n / predictions if predictions else None,
            }
        )
    return rows


def _rollup_predictions(frame: pd.DataFrame | None, live: int) -> int:
    # archived days keep their rollups only: count their predictions too, as "scored" does
    if frame is None or frame.empty:
        return live
    first = frame[frame["horizon"] == HORIZONS[0]]
    return max(live, int(first["predictions"].sum()))


def _age(now: datetime, moment: datetime | None) -> float | None:
    if moment is None:
        return None
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (now - aware).total_seconds()


def _freshness(newest: datetime | None, extra: PeriodicReportData, now: datetime) -> dict[str, Any]:
    return {
        "newest_prediction": newest,
        "newest_prediction_age_s": _age(now, newest),
        "newest_outcome": dict(extra.newest_outcome),
        "newest_outcome_age_s": {h: _age(now, t) for h, t in extra.newest_outcome.items()},
    }


def _accuracy_rows(table: pd.DataFrame, key: str) -> dict[Any, dict[str, Any]]:
    rows: dict[Any, dict[str, Any]] = {}
    for record in table.to_dict("records"):
        rows[record[key]] = {
            "predictions": int(record["total"]),
            **{
                horizon: {
                    "n": int(record[f"n_{horizon}"]),
                    **accuracy_with_interval(
                        int(record[f"correct_{horizon}"]), int(record[f"n_{horizon}"])
                    ),
                }
                for horizon in HORIZONS
            },
        }
    return rows


def _symbol_table(
    symbol_rollups: pd.DataFrame,
    symbol_days: pd.DataFrame,
    symbols: list[dict[str, Any]],
    previous: pd.DataFrame | None,
    primary: str,
) -> list[dict[str, Any]]:
    current = _accuracy_rows(rollup_figures.accuracy_counts(symbol_rollups, "symbol"), "symbol")
    before = (
        _accuracy_rows(rollup_figures.accuracy_counts(previous, "symbol"), "symbol")
        if previous is not None and not previous.empty
        else {}
    )
    ics = {row["symbol"]: row for row in symbols}
    daily = period_series.symbol_daily_ic(symbol_days)
    table = []
    for name, figures in current.items():
        entry: dict[str, Any] = {
            "symbol": name,
            "predictions": figures["predictions"],
            "best": False,
            "worst": False,
            "horizons": [],
        }
        for horizon in HORIZONS:
            cell = figures[horizon]
            earlier = before.get(name, {}).get(horizon, {}).get("accuracy")
            entry["horizons"].append(
                {
                    "horizon": horizon,
                    **cell,
                    "ic": ics.get(name, {}).get(f"ic_{horizon}"),
                    "daily_ic_mean": daily.get((name, horizon)),
                    "previous_accuracy": earlier,
                    "accuracy_change": _change(cell["accuracy"], earlier),
                }
            )
        table.append(entry)
    ranked = sorted(
        (e for e in table if _primary_cell(e, primary)["n"] >= REPORT_RANK_MIN_ROWS),
        key=lambda e: (-_primary_cell(e, primary)["accuracy"], e["symbol"]),
    )
    marked = min(RANKED_SYMBOLS, len(ranked) // 2)
    for entry in ranked[:marked]:
        entry["best"] = True
    for entry in ranked[len(ranked) - marked :]:
        entry["worst"] = True
    return table


def _primary_cell(entry: dict[str, Any], primary: str) -> dict[str, Any]:
    return next(cell for cell in entry["horizons"] if cell["horizon"] == primary)


def _model_versions(
    database: DatabaseSource,
    extra: PeriodicReportData,
    selection: PredictionFilter,
    now: datetime,
) -> dict[str, Any]:
    table = rollup_figures.accuracy_counts(extra.by_version, "model_version")
    versions = [
        {
            "model_version": version,
            "predictions": figures["predictions"],
            "horizons": [{"horizon": h, **figures[h]} for h in HORIZONS],
        }
        for version, figures in _accuracy_rows(table, "model_version").items()
    ]
    named = [v["model_version"] for v in versions if isinstance(v["model_version"], str)]
    named = [version for version in named if version]
    result: dict[str, Any] = {"versions": versions, "comparison": None, "note": None}
    if len(named) < 2 or selection.model_version is not None:
        return result
    # the two largest versions; B is the one that started logging later (in all history)
    first_day = extra.version_first_day
    pair = sorted(named[:2], key=lambda v: (first_day.get(v, date.max), v))
    recent = _recent(selection)
    try:
        comparison = with_verdicts(
            compare_versions(
                database,
                pair[0],
                pair[1],
                days=None,
                since=recent.since,
                until=recent.until,
                symbol=selection.symbol,
                now=now,
                ic_interval=False,  # the report shows the accuracy test only
            )
        )
    except MlpredError as error:
        result["note"] = f"comparison of {pair[0]} and {pair[1]} left out: {error}"
        return result
    result["comparison"] = {
        "version_a": comparison.version_a,
        "version_b": comparison.version_b,
        "since": recent.since,
        "until": recent.until,
        "horizons": [
            {
                "horizon": item.horizon,
                "test": item.test,
                "pairs": item.pairs,
                "accuracy_a": item.a.get("accuracy"),
                "accuracy_b": item.b.get("accuracy"),
                "difference": item.accuracy_difference,
                "p_value": item.p_value,
                "p_value_overlap": item.p_value_overlap,
                "better": item.better,
                "verdict": item.verdict,
            }
            for item in comparison.horizons
        ],
        "verdict": "; ".join(item.verdict for item in comparison.horizons),
    }
    return result


def _in_scope(alert: dict[str, Any], selection: PredictionFilter) -> bool:
    for key in ("symbol", "model_version"):
        wanted = getattr(selection, key)
        if wanted is not None and alert[key] not in (None, wanted):
            return False
    return True


def _monitoring(
    database: DatabaseSource, selection: PredictionFilter, now: datetime
) -> dict[str, Any]:
    recent = _recent(selection)
    assert recent.until is not None
    # the alert state is today's: a window that ended earlier shows none of it
    current = now - recent.until <= timedelta(days=1)
    window = {"since": recent.since, "until": recent.until}
    try:
        check = run_check(
            database,
            symbol=selection.symbol,
            model_version=selection.model_version,
            since=recent.since,
            until=recent.until,
            record=False,
            now=now,
        )
        alerts = list_alerts(database, open_only=True) if current else []
    except MlpredError as error:
        return {"status": None, "counts": {}, "results": [], "open_alerts": [],
                "error": str(error), "window": window, "alerts_shown": current}  # fmt: skip
    ordered = sorted(check.results, key=lambda r: (-r.severity.rank, r.check, r.message))
    counts = {level.name: 0 for level in Severity}
    for item in check.results:
        counts[item.severity.name] += 1
    return {
        "status": check.status.name,
        "counts": counts,
        "results": [
            {
                "check": item.check,
                "metric": item.metric,
                "severity": item.severity.name,
                "scope": item.scope.describe(),
                "summary": item.message,
            }
            for item in ordered
            if item.severity is not Severity.OK
        ],
        "open_alerts": [
            {
                "check": row["check_name"],
                "severity": row["severity"],
                "scope": " ".join(
                    str(row[k]) for k in ("symbol", "model_version", "horizon") if row[k]
                )
                or "all",
                "summary": row["message"],
                "opened_at": row["first_seen"],
                "last_seen": row["last_seen"],
            }
            for row in alerts
            if _in_scope(row, selection)
        ],
        "error": None,
        "window": window,
        "alerts_shown": current,
    }


def _window(selection: PredictionFilter | None) -> dict[str, Any] | None:
    if selection is None or selection.since is None or selection.until is None:
        return None
    length = (selection.until - selection.since) / timedelta(days=1)
    return {"since": selection.since, "until": selection.until, "days": length}


def _recent(selection: PredictionFilter) -> PredictionFilter:
    """The window's last ``REPORT_RECENT_DAYS`` (all of it when shorter)."""
    assert selection.since is not None and selection.until is not None
    start = max(selection.since, selection.until - timedelta(days=REPORT_RECENT_DAYS))
    return replace(selection, since=start, days=None)


def report_content(
    database: DatabaseSource = None,
    *,
    symbol: str | None = None,
    model_version: str | None = None,
    days: float | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    now: datetime | None = None,
    images: str = "svg",
    monitoring: bool = True,
) -> dict[str, Any]:
    """The report document of a window (see the module docstring), JSON-ready (times as ISO
    text, non-finite numbers as None). ``now`` (default: the clock) ends an open window and
    dates the figures; ``monitoring`` runs ``mlpred check`` (without recording alerts) for
    the drift and alert section. Raises ``InputError`` on bad options, and
    ``DatabaseUnavailable`` / ``SchemaNotReady`` when the database cannot be read."""
    if images not in IMAGE_FORMATS:
        raise InputError(f"unknown image format {images!r}: use svg or png")
    moment = now or datetime.now(UTC)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    selection, previous = report_windows(
        symbol=symbol,
        model_version=model_version,
        days=days,
        since=since,
        until=until,
        now=moment,
    )
    data = read_report_data(database, selection, pooled_ic_max_rows=REPORT_POOLED_IC_MAX_ROWS)
    analysis = build_report(data)
    extra = read_periodic_report_data(
        database,
        selection,
        previous,
        moment,
        outcome_rows=int(analysis.overview["with_outcomes"]),
    )
    document: dict[str, Any] = analysis.to_dict()
    positions = signal_returns.signal_positions(extra.sample)
    primary = signal_returns.primary_horizon(extra.sample)
    document["report"] = {
        "title": "mlpred model report",
        "generated_at": moment,
        "mlpred_version": __version__,
        "window": _window(selection),
        "previous_window": _window(previous),
        "primary_horizon": primary,
        "thresholds": direction_thresholds(),
        "images": images,
    }
    document["empty"] = analysis.empty
    predictions = int(analysis.overview["predictions"])
    document["maturity"] = _maturity(
        _rollup_predictions(data.rollups.frame if data.rollups else None, predictions),
        analysis.horizons,
        extra.not_due,
    )
    document["freshness"] = _freshness(analysis.overview["last"], extra, moment)
    empty = analysis.empty or data.rollups is None
    rollups = data.rollups.frame if data.rollups is not None else pd.DataFrame()
    document["status"] = (
        [] if empty else _status(analysis.horizons, analysis.calibration, extra.previous_horizons)
    )
    document["daily"] = [] if empty else period_series.daily_series(extra.daily)
    document["ic_distribution"] = [] if empty else period_series.ic_distribution(extra.symbol_days)
    document["monthly_ic"] = [] if empty else period_series.monthly_ic(extra.daily)
    document["reliability"] = [] if empty else period_series.reliability(rollups)
    document["return_quintiles"] = [] if empty else signal_returns.return_quintiles(extra.sample)
    document["return_by_confidence"] = (
        [] if empty else signal_returns.returns_by_confidence(positions)
    )
    document["signal_economics"] = {
        "rows": len(extra.sample),
        "sampled": extra.sampled,
        "primary_horizon": primary,
        **signal_returns.signal_economics(positions),
    }
    document["symbol_table"] = (
        []
        if empty
        else _symbol_table(
            rollups, extra.symbol_days, analysis.symbols, extra.previous_symbols, primary
        )
    )
    document["model_versions"] = (
        {"versions": [], "comparison": None, "note": None}
        if empty
        else _model_versions(database, extra, selection, moment)
    )
    document["monitoring"] = _monitoring(database, selection, moment) if monitoring else None
    result: dict[str, Any] = to_jsonable(document)
    return result
