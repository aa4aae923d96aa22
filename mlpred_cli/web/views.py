"""The dashboard's views as JSON-ready documents: built from one window's rollup figures
(``store.dashboard_reads.WindowRollups``) and the poller's pulse, with the same analysis
functions ``analyze`` and the report use, so a page shows the figures they print.

Pure: no HTTP, no SQL. ``web.app`` serves these documents as ``/api/...`` and the pages
draw them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd

from mlpred_cli.analysis import period_series, rollup_figures
from mlpred_cli.analysis.accuracy import accuracy_with_interval
from mlpred_cli.analysis.metrics import base_rate
from mlpred_cli.analysis.report import horizon_rows
from mlpred_cli.config import HORIZON_DELTAS, HORIZONS, SIGNAL_TYPES
from mlpred_cli.monitor.freshness import outcome_lag_results
from mlpred_cli.monitor.settings import MonitorSettings
from mlpred_cli.store.dashboard_reads import (
    FEED_COLUMNS,
    FEED_HORIZON_COLUMNS,
    HOUR_MS,
    Pulse,
    WindowRollups,
    utc,
)
from mlpred_cli.store.liveness_reads import Liveness
from mlpred_cli.web.filters import DashboardFilter

_SUMMED = (
    "predictions", "scored", "correct", "directional", "directional_correct",
    "calibration_n", "brier_sum", "ic_sum", "ic_days",
    *(f"actual_{kind.lower()}" for kind in SIGNAL_TYPES),
)  # fmt: skip


def _verdict(low: float | None, high: float | None, base: float | None) -> str:
    if low is None or high is None or base is None:
        return "unknown"
    if low > base:
        return "above"
    return "below" if high < base else "within"


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _predictions(frame: pd.DataFrame) -> int:
    if frame.empty:
        return 0
    return int(frame.loc[frame["horizon"] == HORIZONS[0], "predictions"].sum())


def window_document(
    flt: DashboardFilter, now: datetime, generated_at: datetime, version: str
) -> dict[str, Any]:
    """The fields every view has: its filter, window, time and data version."""
    since, until = flt.window(now)
    return {
        "filters": flt.to_dict(),
        "window": {"since": since, "until": until, "days": flt.days},
        "generated_at": generated_at,
        "data_version": version,
    }


def _horizon_cards(window: WindowRollups, flt: DashboardFilter) -> list[dict[str, Any]]:
    frame = window.by_key
    predictions = _predictions(frame)
    rows = {row["horizon"]: row for row in horizon_rows(frame, None)}
    cards = []
    for horizon in flt.horizons():
        row = rows[horizon]
        calibration = rollup_figures.calibration(frame, horizon)
        due = max(0, predictions - window.not_due.get(horizon, 0))
        gap = (
            None
            if calibration["avg_confidence"] is None or calibration["accuracy"] is None
            else calibration["avg_confidence"] - calibration["accuracy"]
        )
        cards.append(
            {
                "horizon": horizon,
                "predictions": predictions,
                "due": due,
                "matured_share": _share(due, predictions),
                "scored": row["n"],
                "scored_share": _share(row["n"], predictions),
                "accuracy": row["accuracy"],
                "accuracy_low": row["accuracy_low"],
                "accuracy_high": row["accuracy_high"],
                "base_rate": row["base_rate"],
                "verdict": _verdict(row["accuracy_low"], row["accuracy_high"], row["base_rate"]),
                "hit_rate": row["hit_rate"],
                "hit_rate_low": row["hit_rate_low"],
                "hit_rate_high": row["hit_rate_high"],
                "n_directional": row["n_directional"],
                "ic": row["daily_ic_mean"],
                "ic_t": row["daily_ic_t"],
                "ic_days": row["daily_ic_days"],
                "pearson_ic": row["pearson_ic"],
                "brier": calibration["brier"],
                "ece": calibration["ece"],
                "calibration_gap": gap,
            }
        )
    return cards


def _per_hour(counts: dict[int, int], now: datetime, hours: int) -> dict[str, list[int]]:
    last = int(now.timestamp() * 1000) // HOUR_MS * HOUR_MS
    starts = [last - k * HOUR_MS for k in range(hours - 1, -1, -1)]
    return {"t": [start // 1000 for start in starts], "count": [counts.get(s, 0) for s in starts]}


def freshness(pulse: Pulse, now: datetime, settings: MonitorSettings) -> dict[str, Any]:
    """The newest prediction and its age limits, and per horizon the outcome frontier and
    its lag graded as ``mlpred check`` grades it."""
    newest = utc(pulse.newest_prediction)
    snapshot = Liveness(
        now=now,
        lookback=settings.freshness_lookback,
        candle_interval=settings.candle_interval,
        symbols={},
        model_versions={},
        due={h: utc(t) for h, t in pulse.due.items()},
        filled={h: utc(t) for h, t in pulse.filled.items()},
        oldest=utc(pulse.oldest),
        newest=newest,
    )
    interval = settings.candle_interval.total_seconds()
    outcomes = []
    for result in outcome_lag_results(snapshot, settings):
        horizon = result.scope.horizon
        outcomes.append(
            {
                "horizon": horizon,
                "newest_filled": snapshot.filled.get(horizon or ""),
                "newest_due": snapshot.due.get(horizon or ""),
                "lag_s": None if result.value is None else result.value * 60.0,
                "severity": result.severity.name,
                "summary": result.message,
            }
        )
    return {
        "newest_prediction": newest,
        "newest_prediction_age_s": None if newest is None else (now - newest).total_seconds(),
        "prediction": {
            "warning_after_s": interval * (settings.stale_candles_warning + 1),
            "critical_after_s": interval * (settings.stale_candles_critical + 1),
        },
        "outcomes": outcomes,
    }


def overview(
    window: WindowRollups,
    flt: DashboardFilter,
    *,
    now: datetime,
    hours: int,
    fresh: dict[str, Any],
    alerts: Sequence[dict[str, Any]],
    choices: dict[str, list[str]],
) -> dict[str, Any]:
    """The overview page's figures (see the README's ``/api/overview``)."""
    return {
        "predictions": _predictions(window.by_key),
        "horizons": _horizon_cards(window, flt),
        "per_hour": _per_hour(window.per_hour, now, hours),
        "freshness": fresh,
        "alerts": {"open": [alert for alert in alerts if _in_scope(alert, flt)]},
        "choices": choices,
        "sources": {
            "rollup_days": window.rollup_days,
            "raw_days": window.raw_days,
            "archived_days": window.archived_days,
        },
    }


def _in_scope(alert: dict[str, Any], flt: DashboardFilter) -> bool:
    for key in ("symbol", "model_version", "horizon"):
        wanted = getattr(flt, key)
        if wanted is not None and alert.get(key) not in (None, wanted):
            return False
    return True


def alert_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Open ``ml_alerts`` rows as the overview lists them."""
    return [
        {
            "check": row["check_name"],
            "severity": row["severity"],
            "symbol": row["symbol"],
            "model_version": row["model_version"],
            "horizon": row["horizon"],
            "scope": " ".join(str(row[k]) for k in ("symbol", "model_version", "horizon") if row[k])
            or "all",
            "summary": row["message"],
            "opened_at": row["first_seen"],
            "last_seen": row["last_seen"],
        }
        for row in rows
    ]


def _days(flt: DashboardFilter, now: datetime) -> list[date]:
    since, _ = flt.window(now)
    return [since.date() + timedelta(days=k) for k in range(flt.days)]


def _epoch(day: date) -> int:
    return int(datetime.combine(day, time(), tzinfo=UTC).timestamp())


def timeseries(window: WindowRollups, flt: DashboardFilter, now: datetime) -> dict[str, Any]:
    """Per horizon and UTC day of the window: scored rows, accuracy and hit rate with their
    intervals and the mean daily IC, as columns (days without figures are nulls)."""
    frame = window.by_day
    if not frame.empty:
        frame = frame.groupby(["day", "horizon"], sort=False).sum(numeric_only=True).reset_index()
    rows = period_series.daily_series(frame)
    by_key = {(str(row["day"]), row["horizon"]): row for row in rows}
    bases = {row["horizon"]: row["base_rate"] for row in horizon_rows(window.by_key, None)}
    days = _days(flt, now)
    names = ("accuracy", "accuracy_low", "accuracy_high", "hit_rate", "hit_rate_low",
             "hit_rate_high")  # fmt: skip
    series = []
    for horizon in flt.horizons():
        found = [by_key.get((day.isoformat(), horizon)) for day in days]
        entry: dict[str, Any] = {
            "horizon": horizon,
            "t": [_epoch(day) for day in days],
            "n": [row["n"] if row else 0 for row in found],
            "ic": [row["ic_mean"] if row else None for row in found],
            "base_rate": bases.get(horizon),
        }
        for name in names:
            entry[name] = [row[name] if row else None for row in found]
        series.append(entry)
    return {"series": series}


def calibration(window: WindowRollups, flt: DashboardFilter) -> dict[str, Any]:
    """Per horizon: calibration figures and the reliability diagram's bins."""
    horizons = []
    for horizon in flt.horizons():
        figures = rollup_figures.calibration(window.by_key, horizon)
        bins = period_series.reliability_bins(window.by_key, horizon)
        horizons.append({**figures, "bins": bins})
    return {"horizons": horizons}


def _sums(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    columns = [name for name in _SUMMED if name in frame.columns]
    return frame.groupby([key, "horizon"], sort=True)[columns].sum()


def _cell(record: Mapping[Any, Any]) -> dict[str, Any]:
    n = int(record["scored"])
    days = int(record["ic_days"])
    calibrated = int(record["calibration_n"])
    return {
        "n": n,
        **accuracy_with_interval(int(record["correct"]), n),
        "ic": float(record["ic_sum"]) / days if days else None,
        "brier": float(record["brier_sum"]) / calibrated if calibrated else None,
    }


def _grouped(frame: pd.DataFrame, key: str, flt: DashboardFilter) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    sums = _sums(frame, key)
    rows: dict[str, dict[str, Any]] = {}
    for record in sums.reset_index().to_dict("records"):
        name, horizon = str(record[key]), str(record["horizon"])
        entry = rows.setdefault(name, {key: name, "predictions": 0, "by_horizon": {}})
        if horizon == HORIZONS[0]:
            entry["predictions"] = int(record["predictions"])
        if horizon in flt.horizons():
            entry["by_horizon"][horizon] = _cell(record)
    for entry in rows.values():  # horizons in their own order, not the sort's
        cells = entry["by_horizon"]
        entry["by_horizon"] = {h: cells[h] for h in HORIZONS if h in cells}
    return list(rows.values())


def symbols(window: WindowRollups, flt: DashboardFilter) -> dict[str, Any]:
    """Per symbol of the window: predictions, and per horizon accuracy with its interval
    and the mean daily IC; the base rate of each horizon over the whole window."""
    frame = window.by_key
    bases: dict[str, float | None] = {}
    for horizon in flt.horizons():
        summary = rollup_figures.horizon_summary(frame, horizon)
        bases[horizon] = base_rate({k: int(summary[f"actual_{k}"]) for k in SIGNAL_TYPES})
    rows = _grouped(frame, "symbol", flt)
    rows.sort(key=lambda row: (-row["predictions"], row["symbol"]))
    return {"horizons": list(flt.horizons()), "base_rate": bases, "rows": rows}


def versions(window: WindowRollups, flt: DashboardFilter) -> dict[str, Any]:
    """Per model version of the window: predictions, first and last day with predictions,
    and per horizon accuracy, interval, mean daily IC and Brier score."""
    rows = _grouped(window.by_key, "model_version", flt)
    daily = window.by_day
    for row in rows:
        days = daily.loc[
            (daily["model_version"] == row["model_version"])
            & (daily["horizon"] == HORIZONS[0])
            & (daily["predictions"] > 0),
            "day",
        ]
        row["first_day"] = str(days.min()) if len(days) else None
        row["last_day"] = str(days.max()) if len(days) else None
    rows.sort(key=lambda row: (row["first_day"] or "", row["model_version"]))
    return {"rows": rows}


def _feed_cell(record: dict[str, Any], horizon: str, interval: timedelta) -> dict[str, Any]:
    moment = utc(record["datetime"])
    assert moment is not None
    return {
        **{name: record[f"{name}_{horizon}"] for name in FEED_HORIZON_COLUMNS},
        "due_at": moment + HORIZON_DELTAS[horizon] + interval,
    }


def feed(
    records: Sequence[dict[str, Any]], flt: DashboardFilter, now: datetime, interval: timedelta
) -> dict[str, Any]:
    """The newest predictions, each with its outcome per horizon as far as it is filled."""
    rows = []
    for record in records:
        row = {name: record[name] for name in FEED_COLUMNS}
        row["datetime"] = utc(record["datetime"])
        row["by_horizon"] = {
            horizon: _feed_cell(record, horizon, interval) for horizon in flt.horizons()
        }
        rows.append(row)
    return {"rows": rows}
