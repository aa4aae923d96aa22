"""The ``analyze`` report: database aggregates and a few row-level columns composed into
the sections an analyst reads (overview, signals, horizons, confidence, symbols, input
health, performance)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection, RowMapping

from mlpred_cli.analysis.accuracy import accuracy_with_interval, add_accuracy_columns
from mlpred_cli.analysis.metrics import (
    base_rate,
    brier_score,
    confidence_bin_labels,
    expected_calibration_error,
    information_coefficient,
    proportion,
)
from mlpred_cli.config import CONFIDENCE_BIN_EDGES, HORIZONS, SIGNAL_TYPES
from mlpred_cli.store.prediction_queries import (
    PredictionFilter,
    accuracy_groups,
    column_values,
    confidence_bins,
    distinct_values,
    half_means,
    horizon_summary,
    outcome_values,
    overview,
    read_frame,
    signal_counts,
)

#: Percentiles of ``inference_time_ms`` in the performance section.
INFERENCE_PERCENTILES: tuple[int, ...] = (50, 95, 99)


@dataclass
class AnalysisReport:
    """Everything ``mlpred analyze`` shows; ``to_dict()`` is its JSON form."""

    selection: dict[str, Any]
    overview: dict[str, Any]
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


def _overview(conn: Connection, selection: PredictionFilter, row: RowMapping) -> dict[str, Any]:
    predictions = int(row["predictions"])
    symbols = conn.execute(distinct_values(selection, "symbol")).scalars().all()
    versions = conn.execute(distinct_values(selection, "model_version")).scalars().all()
    return {
        "predictions": predictions,
        "first": row["first"],
        "last": row["last"],
        "symbols": list(symbols),
        "model_versions": list(versions),
        "avg_confidence": _float(row["avg_confidence"]),
        "with_outcomes": int(row["with_outcomes"]),
        "outcome_share": proportion(int(row["with_outcomes"]), predictions),
    }


def _signals(conn: Connection, selection: PredictionFilter, total: int) -> list[dict[str, Any]]:
    counts: dict[str | None, int] = dict.fromkeys(SIGNAL_TYPES, 0)
    for signal_type, count in conn.execute(signal_counts(selection)).all():
        key = signal_type if signal_type in counts else None  # unknown types count as other
        counts[key] = counts.get(key, 0) + int(count)
    return [
        {"signal_type": kind, "count": count, "share": proportion(count, total)}
        for kind, count in counts.items()
        if kind is not None or count
    ]


def _horizons(
    conn: Connection, selection: PredictionFilter, outcomes: pd.DataFrame
) -> list[dict[str, Any]]:
    rows = []
    for horizon in HORIZONS:
        summary = conn.execute(horizon_summary(selection, horizon)).mappings().one()
        n = int(summary["n"])
        squared = _float(summary["squared_error"])
        ic = information_coefficient(
            outcomes[f"predicted_return_{horizon}"], outcomes[f"actual_return_{horizon}"]
        )
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
                "ic": ic.ic,
                "ic_n": ic.n,
            }
        )
    return rows


def _confidence_bins(conn: Connection, selection: PredictionFilter) -> list[dict[str, Any]]:
    found = {int(row["bin"]): row for row in conn.execute(confidence_bins(selection)).mappings()}
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


def _correct_flags(frame: pd.DataFrame, horizon: str) -> np.ndarray:
    """1.0 / 0.0 per row with a predicted and an actual direction at ``horizon`` (as the SQL
    aggregates count them); NaN where either is unknown."""
    has_outcome = (
        frame[f"actual_direction_{horizon}"].notna() & frame[f"direction_{horizon}"].notna()
    ).to_numpy()
    correct = frame[f"accuracy_{horizon}"].map(lambda v: v is True or v == 1).to_numpy(float)
    return np.where(has_outcome, correct, np.nan)


def _calibration(outcomes: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for horizon in HORIZONS:
        correct = _correct_flags(outcomes, horizon)
        confidence = outcomes[f"direction_{horizon}_confidence"].to_numpy(float)
        known = np.isfinite(correct) & np.isfinite(confidence)
        rows.append(
            {
                "horizon": horizon,
                "n": int(known.sum()),
                "avg_confidence": _float(confidence[known].mean()) if known.any() else None,
                "accuracy": _float(correct[known].mean()) if known.any() else None,
                "ece": expected_calibration_error(confidence, correct),
                "brier": brier_score(confidence, correct),
            }
        )
    return rows


def _symbols(
    conn: Connection, selection: PredictionFilter, outcomes: pd.DataFrame
) -> list[dict[str, Any]]:
    counts = read_frame(conn, accuracy_groups(selection, "symbol"))
    table = add_accuracy_columns(counts, HORIZONS)
    by_symbol = dict(tuple(outcomes.groupby("symbol"))) if len(outcomes) else {}
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


def _input_health(conn: Connection, selection: PredictionFilter, row: RowMapping) -> dict[str, Any]:
    predictions = int(row["predictions"])
    first, last = row["first"], row["last"]
    midpoint = first + (last - first) / 2
    halves = conn.execute(half_means(selection, midpoint)).mappings().one()
    health: dict[str, Any] = {
        "avg_features_count": _float(row["avg_features_count"]),
        "nan_total": None if row["nan_total"] is None else int(row["nan_total"]),
        "rows_with_nan": int(row["rows_with_nan"]),
        "inf_total": None if row["inf_total"] is None else int(row["inf_total"]),
        "rows_with_inf": int(row["rows_with_inf"]),
        "avg_zero_variance_count": _float(row["avg_zero_variance_count"]),
        "duplicates": int(row["duplicates"]),
        "duplicate_share": proportion(int(row["duplicates"]), predictions),
        "drift_split": midpoint,
    }
    for stat in ("features_mean", "features_std"):
        before, after = _float(halves[f"{stat}_first"]), _float(halves[f"{stat}_second"])
        health[f"{stat}_first_half"] = before
        health[f"{stat}_second_half"] = after
        health[f"{stat}_drift"] = _drift(before, after)
    return health


def _performance(conn: Connection, selection: PredictionFilter) -> dict[str, Any]:
    times = np.asarray(
        conn.execute(column_values(selection, "inference_time_ms")).scalars().all(),
        dtype=float,
    )
    result: dict[str, Any] = {"n": int(times.size)}
    values = np.percentile(times, INFERENCE_PERCENTILES) if times.size else None
    for index, percentile in enumerate(INFERENCE_PERCENTILES):
        key = f"inference_time_ms_p{percentile}"
        result[key] = None if values is None else float(values[index])
    return result


def build_report(conn: Connection, selection: PredictionFilter) -> AnalysisReport:
    """Run the analysis queries for ``selection`` on one connection and compose the report."""
    head = conn.execute(overview(selection)).mappings().one()
    summary = _overview(conn, selection, head)
    report = AnalysisReport(selection=_describe_selection(selection), overview=summary)
    if report.empty:
        return report
    outcomes = read_frame(conn, outcome_values(selection))
    report.signals = _signals(conn, selection, summary["predictions"])
    report.horizons = _horizons(conn, selection, outcomes)
    report.confidence_bins = _confidence_bins(conn, selection)
    report.calibration = _calibration(outcomes)
    report.symbols = _symbols(conn, selection, outcomes)
    report.input_health = _input_health(conn, selection, head)
    report.performance = _performance(conn, selection)
    return report
