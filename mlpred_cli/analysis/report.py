"""The ``analyze`` report: the aggregates and row-level columns ``store.report_reads`` read,
composed into the sections an analyst reads (overview, signals, horizons, confidence,
symbols, input health, performance). Pure: no database access here."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlpred_cli import config
from mlpred_cli.analysis import rollup_figures
from mlpred_cli.analysis.accuracy import accuracy_with_interval, add_accuracy_columns
from mlpred_cli.analysis.drift import continuous_drift
from mlpred_cli.analysis.metrics import (
    base_rate,
    confidence_bin_labels,
    information_coefficient,
    proportion,
)
from mlpred_cli.analysis.overlap_figures import horizon_overlap
from mlpred_cli.config import (
    CONFIDENCE_BIN_EDGES,
    DRIFT_MIN_EFFECT_WARNING,
    HORIZONS,
    POOLED_IC_MAX_ROWS,
    SIGNAL_TYPES,
    WARNING_ALPHA,
)
from mlpred_cli.errors import NotEnoughData
from mlpred_cli.store.report_reads import INFERENCE_PERCENTILES

if TYPE_CHECKING:
    from mlpred_cli.store.prediction_queries import PredictionFilter
    from mlpred_cli.store.report_reads import InferencePercentiles, ReportData


@dataclass
class AnalysisReport:
    """Everything ``mlpred analyze`` shows; ``to_dict()`` is its JSON form."""

    selection: dict[str, Any]
    overview: dict[str, Any]
    sources: dict[str, Any] = field(default_factory=dict)
    signals: list[dict[str, Any]] = field(default_factory=list)
    horizons: list[dict[str, Any]] = field(default_factory=list)
    confidence_bins: list[dict[str, Any]] = field(default_factory=list)
    calibration: list[dict[str, Any]] = field(default_factory=list)
    symbols: list[dict[str, Any]] = field(default_factory=list)
    input_health: dict[str, Any] = field(default_factory=dict)
    performance: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when the selection holds no predictions."""
        return bool(self.overview["predictions"] == 0)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain dicts and lists (times stay ``datetime``)."""
        return asdict(self)


def _float(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _describe_selection(selection: PredictionFilter) -> dict[str, Any]:
    return {
        "symbol": selection.symbol,
        "model_version": selection.model_version,
        "since": selection.since,
        "until": selection.until,
        "description": selection.describe(),
    }


def _overview(data: ReportData) -> dict[str, Any]:
    row = data.overview
    predictions = int(row["predictions"])
    return {
        "predictions": predictions,
        "first": row["first"],
        "last": row["last"],
        "symbols": list(data.symbols),
        "model_versions": list(data.model_versions),
        "avg_confidence": _float(row["avg_confidence"]),
        "with_outcomes": int(row["with_outcomes"]),
        "outcome_share": proportion(int(row["with_outcomes"]), predictions),
    }


def _signals(found: list[tuple[Any, int]], total: int) -> list[dict[str, Any]]:
    counts: dict[str | None, int] = dict.fromkeys(SIGNAL_TYPES, 0)
    for signal_type, count in found:
        key = signal_type if signal_type in counts else None  # unknown types count as other
        counts[key] = counts.get(key, 0) + int(count)
    return [
        {"signal_type": kind, "count": count, "share": proportion(count, total)}
        for kind, count in counts.items()
        if kind is not None or count
    ]


def _pooled_ic(outcomes: pd.DataFrame | None, horizon: str) -> tuple[float | None, int | None]:
    if outcomes is None:
        return None, None
    ic = information_coefficient(
        outcomes[f"predicted_return_{horizon}"], outcomes[f"actual_return_{horizon}"]
    )
    return ic.ic, ic.n


def horizon_rows(rollups: pd.DataFrame, outcomes: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Per horizon, from a period's rollup figures: accuracy and hit rate with Wilson
    intervals, base rate, errors, daily-IC mean and t-statistic; from ``outcomes`` (raw rows;
    None without them) the pooled Spearman IC and the overlap-corrected figures
    (``analysis.overlap_figures.horizon_overlap``: ``*_overlap_low/high`` intervals at the
    effective sample sizes, the IC's naive and corrected p-values)."""
    rows = []
    for horizon in HORIZONS:
        summary = rollup_figures.horizon_summary(rollups, horizon)
        n = int(summary["n"])
        squared = _float(summary["squared_error"])
        ic, ic_n = _pooled_ic(outcomes, horizon)
        daily = rollup_figures.daily_ic(rollups, horizon)
        rows.append(
            {
                "horizon": horizon,
                "n": n,
                **accuracy_with_interval(int(summary["correct"]), n),
                "n_directional": int(summary["n_directional"]),
                **accuracy_with_interval(
                    int(summary["correct_directional"]), int(summary["n_directional"]), "hit_rate"
                ),
                "base_rate": base_rate({k: int(summary[f"actual_{k}"]) for k in SIGNAL_TYPES}),
                "mae": _float(summary["abs_error"]),
                "rmse": None if squared is None else math.sqrt(squared),
                "ic": ic,
                "ic_n": ic_n,
                **horizon_overlap(outcomes, horizon, n, int(summary["n_directional"])),
                "pearson_ic": rollup_figures.pearson_ic(rollups, horizon),
                "daily_ic_mean": daily.mean,
                "daily_ic_t": daily.t_stat,
                "daily_ic_p": daily.p_value,
                "daily_ic_days": daily.days,
            }
        )
    return rows


def _confidence_bins(bins: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    found = {int(row["bin"]): row for row in bins}
    edges = CONFIDENCE_BIN_EDGES
    rows = []
    for number, label in enumerate(confidence_bin_labels(edges)):
        row = found.get(number)
        count = int(row["count"]) if row else 0
        entry: dict[str, Any] = {
            "bin": label,
            "low": edges[number],
            "high": edges[number + 1],
            "count": count,
            "avg_confidence": _float(row["avg_confidence"]) if row else None,
        }
        for kind in SIGNAL_TYPES:
            entry[f"share_{kind}"] = proportion(int(row[f"signals_{kind}"]), count) if row else None
        n_primary = int(row["n_primary"]) if row else 0
        entry["n_primary"] = n_primary
        entry.update(accuracy_with_interval(int(row["correct_primary"]) if row else 0, n_primary))
        rows.append(entry)
    return rows


def _calibration(rollups: pd.DataFrame) -> list[dict[str, Any]]:
    return [rollup_figures.calibration(rollups, horizon) for horizon in HORIZONS]


def _symbols(counts: pd.DataFrame, outcomes: pd.DataFrame | None) -> list[dict[str, Any]]:
    table = add_accuracy_columns(counts, HORIZONS)
    by_symbol = dict(tuple(outcomes.groupby("symbol"))) if outcomes is not None else {}
    rows = []
    for record in table.to_dict("records"):
        frame = by_symbol.get(record["symbol"])
        entry: dict[str, Any] = {
            "symbol": record["symbol"],
            "predictions": int(record["total"]),
            "avg_confidence": _float(record["avg_confidence"]),
        }
        for horizon in HORIZONS:
            entry[f"n_{horizon}"] = int(record[f"n_{horizon}"])
            entry[f"accuracy_{horizon}"] = record[f"accuracy_{horizon}"]
        for horizon in HORIZONS:
            ic = (
                information_coefficient(
                    frame[f"predicted_return_{horizon}"], frame[f"actual_return_{horizon}"]
                ).ic
                if frame is not None
                else None
            )
            entry[f"ic_{horizon}"] = ic
        rows.append(entry)
    return rows


def _drift(first: float | None, second: float | None) -> float | None:
    return None if first is None or second is None else second - first


#: Row-level statistics whose drift between the two halves input health reports.
DRIFT_STATISTICS: tuple[str, ...] = ("features_mean", "features_std")


def _half_drift(halves: tuple[pd.DataFrame, pd.DataFrame] | None) -> dict[str, Any]:
    """``analysis.drift.continuous_drift`` of each ``DRIFT_STATISTICS`` from the first half
    of the selection to the second (one series per symbol), with a ``verdict``: ``shifted``
    when the change is significant at ``WARNING_ALPHA`` and at least
    ``DRIFT_MIN_EFFECT_WARNING`` reference standard deviations, else ``stable``; or
    ``unknown`` with the ``reason`` when the halves are too small."""
    drift: dict[str, Any] = {}
    for stat in DRIFT_STATISTICS:
        if halves is None:
            drift[stat] = {"verdict": "unknown", "reason": "no rows"}
            continue
        first, second = halves
        try:
            test = continuous_drift(
                stat,
                first[stat].to_numpy(dtype=float, na_value=np.nan),
                second[stat].to_numpy(dtype=float, na_value=np.nan),
                reference_groups=first["symbol"].to_numpy(dtype=str),
                current_groups=second["symbol"].to_numpy(dtype=str),
                alpha=WARNING_ALPHA,
            )
        except NotEnoughData as error:
            drift[stat] = {"verdict": "unknown", "reason": str(error)}
            continue
        shifted = test.p_value < WARNING_ALPHA and (test.effect or 0.0) >= DRIFT_MIN_EFFECT_WARNING
        drift[stat] = {"verdict": "shifted" if shifted else "stable", **test.to_dict()}
    return drift


def _input_health(data: ReportData) -> dict[str, Any]:
    row, halves = data.overview, data.halves
    predictions = int(row["predictions"])
    health: dict[str, Any] = {
        "avg_features_count": _float(row["avg_features_count"]),
        "nan_total": None if row["nan_total"] is None else int(row["nan_total"]),
        "rows_with_nan": int(row["rows_with_nan"]),
        "inf_total": None if row["inf_total"] is None else int(row["inf_total"]),
        "rows_with_inf": int(row["rows_with_inf"]),
        "avg_zero_variance_count": _float(row["avg_zero_variance_count"]),
        "duplicates": int(row["duplicates"]),
        "duplicate_share": proportion(int(row["duplicates"]), predictions),
        "drift_split": data.midpoint,
    }
    for stat in ("features_mean", "features_std"):
        before, after = _float(halves[f"{stat}_first"]), _float(halves[f"{stat}_second"])
        health[f"{stat}_first_half"] = before
        health[f"{stat}_second_half"] = after
        health[f"{stat}_drift"] = _drift(before, after)
    health["drift"] = _half_drift(data.drift_rows)
    return health


def _performance(times: InferencePercentiles) -> dict[str, Any]:
    result: dict[str, Any] = {"n": times.n}
    for percentile in INFERENCE_PERCENTILES:
        result[f"inference_time_ms_p{percentile}"] = times.values.get(percentile)
    return result


def _sources(data: ReportData) -> dict[str, Any]:
    """Where the figures came from, and which ones the selection cannot give."""
    rollups = data.rollups
    archived = [day.isoformat() for day in rollups.archived_days] if rollups else []
    notes = []
    if archived:
        notes.append(
            f"{len(archived)} archived day(s) in the period: counts, accuracy, calibration and "
            "daily IC include them (from the rollups); the overview, input health, inference "
            "times and pooled rank ICs cover only the rows still in the database"
        )
    if data.outcomes is None:
        notes.append(
            f"more than {POOLED_IC_MAX_ROWS:,} rows with an outcome: pooled rank ICs and the "
            "overlap-corrected intervals are left out; see the mean daily IC"
        )
    elif len(data.outcomes) > config.OVERLAP_MAX_ROWS:
        notes.append(
            f"more than {config.OVERLAP_MAX_ROWS:,} rows with an outcome: the overlap-corrected "
            "intervals are left out ([analysis] overlap_max_rows)"
        )
    elif archived:
        notes.append(
            "overlap-corrected intervals need every scored row: they are left out for the "
            "horizons whose rows are partly archived"
        )
    return {
        "rollup_days": rollups.rollup_days if rollups else 0,
        "raw_days": rollups.raw_days if rollups else 0,
        "archived_days": archived,
        "notes": notes,
    }


def build_report(data: ReportData) -> AnalysisReport:
    """Compose the report from what ``store.report_reads.read_report_data`` read."""
    summary = _overview(data)
    report = AnalysisReport(selection=_describe_selection(data.selection), overview=summary)
    if report.empty or data.rollups is None:
        return report
    frame = data.rollups.frame
    outcomes = data.outcomes
    report.sources = _sources(data)
    report.signals = _signals(rollup_figures.signal_counts(frame), summary["predictions"])
    report.horizons = horizon_rows(frame, outcomes)
    report.confidence_bins = _confidence_bins(rollup_figures.confidence_bins(frame))
    report.calibration = _calibration(frame)
    report.symbols = _symbols(rollup_figures.accuracy_counts(frame, "symbol"), outcomes)
    report.input_health = _input_health(data)
    report.performance = _performance(data.inference_percentiles)
    return report
