"""Period figures from rollup rows (``store.rollup_reads``): every count and sum is added up
over the rows of the period, then turned into the same intermediate results the raw queries
gave (accuracy counts per group, per-horizon summaries, confidence bins, calibration).

Pure: frames in, frames and mappings out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from mlpred_cli.config import CALIBRATION_BINS, CONFIDENCE_BIN_EDGES, HORIZONS, SIGNAL_TYPES
from mlpred_cli.errors import InputError
from mlpred_cli.store.rollup_columns import ACCURACY_INDEX_COLUMNS, ADDITIVE_COLUMNS

#: Groupings an accuracy table can have (``day`` is the UTC date, ``YYYY-MM-DD``).
ACCURACY_GROUPS: tuple[str, ...] = ("symbol", "model_version", "signal_type", "day")

_SIGNAL_BINS = len(CONFIDENCE_BIN_EDGES) - 1

#: The rollup columns an accuracy table by ``signal_type`` sums (the other groupings need
#: only ``ACCURACY_INDEX_COLUMNS``).
SIGNAL_ACCURACY_COLUMNS: tuple[str, ...] = (
    *ACCURACY_INDEX_COLUMNS,
    *(
        f"signal_{kind.lower()}{suffix}"
        for kind in SIGNAL_TYPES
        for suffix in ("", "_with_outcome", "_confidence_n", "_confidence_sum", "_scored",
                       "_correct")
    ),
)  # fmt: skip


def _of_horizon(frame: pd.DataFrame, horizon: str) -> pd.DataFrame:
    return frame[frame["horizon"] == horizon]


def _model_version(value: Any) -> Any:
    return None if value == "" else value


def _group_sums(frame: pd.DataFrame, by: str, columns: Sequence[str]) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame(columns=[by, *columns])
    return frame.groupby(by, sort=False)[list(columns)].sum().reset_index()


def _accuracy_by_key(frame: pd.DataFrame, by: str, horizons: Sequence[str]) -> dict[str, Any]:
    """The counts per group of ``by`` (groups with a row of the first horizon, whose row-level
    totals every horizon's row repeats) as arrays, each column summed by one scatter-add into
    a (group, horizon) matrix: no pandas groupby on the read path of every accuracy table."""
    keys = frame[by]
    group_codes, groups = pd.factorize(keys, sort=False)  # a missing key is -1, left out
    horizon_codes = pd.Index(HORIZONS).get_indexer(pd.Index(frame["horizon"]))
    kept = (group_codes >= 0) & (horizon_codes >= 0)
    at = (group_codes[kept], horizon_codes[kept])
    shape = (len(groups), len(HORIZONS))

    def summed(column: str, dtype: type[Any]) -> npt.NDArray[Any]:
        values = frame[column].fillna(0).to_numpy(dtype=dtype)[kept]
        total = np.zeros(shape, dtype=dtype)
        np.add.at(total, at, values)
        return total

    present = np.zeros(shape, dtype=bool)
    present[at] = True
    rows = present[:, 0]  # the groups with a row of the first horizon
    data: dict[str, Any] = {by: groups[rows]}
    for name, column in (
        ("total", "predictions"),
        ("n_outcomes", "with_outcome"),
        ("confidence_n", "confidence_n"),
    ):
        data[name] = summed(column, np.int64)[rows, 0]
    data["confidence_sum"] = summed("confidence_sum", np.float64)[rows, 0]
    scored, correct = summed("scored", np.int64)[rows], summed("correct", np.int64)[rows]
    for horizon in horizons:
        position = HORIZONS.index(horizon)
        data[f"n_{horizon}"] = scored[:, position]
        data[f"correct_{horizon}"] = correct[:, position]
    return data


def _accuracy_by_signal(frame: pd.DataFrame, horizons: Sequence[str]) -> pd.DataFrame:
    first = _of_horizon(frame, HORIZONS[0])
    rows: list[dict[str, Any]] = []
    kinds: list[str | None] = [*SIGNAL_TYPES, None]
    for kind in kinds:
        row: dict[str, Any] = {"signal_type": kind}
        if kind is None:  # no (or an unknown) signal type: what the named types leave over
            row["total"] = int(first["predictions"].sum()) - sum(
                int(first[f"signal_{k.lower()}"].sum()) for k in SIGNAL_TYPES
            )
            row["n_outcomes"] = int(first["with_outcome"].sum()) - sum(
                int(first[f"signal_{k.lower()}_with_outcome"].sum()) for k in SIGNAL_TYPES
            )
            row["confidence_n"] = int(first["confidence_n"].sum()) - sum(
                int(first[f"signal_{k.lower()}_confidence_n"].sum()) for k in SIGNAL_TYPES
            )
            row["confidence_sum"] = float(first["confidence_sum"].sum()) - sum(
                float(first[f"signal_{k.lower()}_confidence_sum"].sum()) for k in SIGNAL_TYPES
            )
        else:
            name = f"signal_{kind.lower()}"
            row["total"] = int(first[name].sum())
            row["n_outcomes"] = int(first[f"{name}_with_outcome"].sum())
            row["confidence_n"] = int(first[f"{name}_confidence_n"].sum())
            row["confidence_sum"] = float(first[f"{name}_confidence_sum"].sum())
        for horizon in horizons:
            part = _of_horizon(frame, horizon)
            if kind is None:
                row[f"n_{horizon}"] = int(part["scored"].sum()) - sum(
                    int(part[f"signal_{k.lower()}_scored"].sum()) for k in SIGNAL_TYPES
                )
                row[f"correct_{horizon}"] = int(part["correct"].sum()) - sum(
                    int(part[f"signal_{k.lower()}_correct"].sum()) for k in SIGNAL_TYPES
                )
            else:
                row[f"n_{horizon}"] = int(part[f"signal_{kind.lower()}_scored"].sum())
                row[f"correct_{horizon}"] = int(part[f"signal_{kind.lower()}_correct"].sum())
        if row["total"] > 0:
            rows.append(row)
    return pd.DataFrame(rows)


def accuracy_counts(
    frame: pd.DataFrame, by: str, horizons: Sequence[str] = HORIZONS, min_count: int = 0
) -> pd.DataFrame:
    """Per group of ``by``: ``total``, ``n_outcomes``, ``avg_confidence`` and ``n_h`` /
    ``correct_h`` per horizon, ordered by total (largest first), then group (``day``: by
    date, oldest first); groups with fewer than ``min_count`` predictions left out."""
    if by not in ACCURACY_GROUPS:
        raise InputError(f"cannot group by {by!r}: use one of {', '.join(ACCURACY_GROUPS)}")
    counts = [f"{stem}_{h}" for h in horizons for stem in ("n", "correct")]
    columns = [by, "total", "n_outcomes", "avg_confidence", *counts]
    if frame.empty:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
    if by == "signal_type":
        signals = _accuracy_by_signal(frame, horizons)
        table = {name: signals[name].to_numpy() for name in signals.columns}
    else:
        table = _accuracy_by_key(frame, by, horizons)
    if len(table.get("total", ())) == 0:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
    keys = table[by]
    if by == "model_version":
        keys = pd.Index([_model_version(value) for value in keys], dtype=object)
    total = np.asarray(table["total"], dtype=np.int64)
    missing = pd.isna(np.asarray(keys, dtype=object))

    def order_key(row: int) -> tuple[Any, ...]:
        key = (bool(missing[row]), "" if missing[row] else keys[row])
        return key if by == "day" else (-int(total[row]), *key)  # day: a time series

    kept = np.flatnonzero(total >= max(min_count, 1))
    order = np.asarray(sorted(kept.tolist(), key=order_key), dtype=np.intp)
    confidence_n = np.asarray(table["confidence_n"], dtype=np.float64)
    average = np.divide(
        np.asarray(table["confidence_sum"], dtype=np.float64),
        confidence_n,
        out=np.zeros(len(total)),
        where=confidence_n > 0,
    )
    average = average.astype(object)
    average[confidence_n <= 0] = None
    data: dict[str, Any] = {
        by: keys[order],
        "total": total[order],
        "n_outcomes": np.asarray(table["n_outcomes"], dtype=np.int64)[order],
        "avg_confidence": average[order],
    }
    for name in counts:
        data[name] = np.asarray(table[name], dtype=np.int64)[order]
    return pd.DataFrame(data, columns=columns)


def _mean(total: float, n: int) -> float | None:
    return total / n if n > 0 else None


def horizon_summary(frame: pd.DataFrame, horizon: str) -> dict[str, Any]:
    """The raw ``horizon_summary`` row of one horizon: counts, actual directions, mean
    absolute and squared error (from the additive columns ``frame`` has; 0 for the rest)."""
    present = [name for name in ADDITIVE_COLUMNS if name in frame.columns]
    sums = _of_horizon(frame, horizon)[present].sum()
    pairs = int(sums.get("return_pairs", 0))
    summary: dict[str, Any] = {
        "n": int(sums.get("scored", 0)),
        "correct": int(sums.get("correct", 0)),
        "n_directional": int(sums.get("directional", 0)),
        "correct_directional": int(sums.get("directional_correct", 0)),
        "abs_error": _mean(float(sums.get("abs_error_sum", 0.0)), pairs),
        "squared_error": _mean(float(sums.get("squared_error_sum", 0.0)), pairs),
    }
    for kind in SIGNAL_TYPES:
        summary[f"actual_{kind}"] = int(sums.get(f"actual_{kind.lower()}", 0))
    return summary


def pearson_ic(frame: pd.DataFrame, horizon: str) -> float | None:
    """Pearson correlation of predicted and actual return over the period's pairs."""
    part = _of_horizon(frame, horizon)
    n = float(part["return_pairs"].sum())
    if n < 3:
        return None
    sx, sy = float(part["predicted_sum"].sum()), float(part["actual_sum"].sum())
    sxx, syy = float(part["predicted_sq_sum"].sum()), float(part["actual_sq_sum"].sum())
    sxy = float(part["cross_sum"].sum())
    variance_x, variance_y = n * sxx - sx * sx, n * syy - sy * sy
    # relative guard: a constant side leaves only rounding noise in its variance
    if variance_x <= 1e-12 * n * sxx or variance_y <= 1e-12 * n * syy:
        return None
    value = (n * sxy - sx * sy) / math.sqrt(variance_x * variance_y)
    return max(-1.0, min(1.0, value))


@dataclass(frozen=True)
class DailyIC:
    """The mean of the daily Spearman ICs (one per day, symbol and model version with an IC),
    their standard deviation, the t-statistic of the mean and its two-sided p-value (as
    alphalens reports an IC series), over ``days`` ICs."""

    mean: float | None
    std: float | None
    t_stat: float | None
    p_value: float | None
    days: int


def daily_ic(frame: pd.DataFrame, horizon: str) -> DailyIC:
    """``DailyIC`` of ``horizon`` from the period's rollup figures (``ic_sum``,
    ``ic_sq_sum`` and ``ic_days``: the sums of the daily ICs, of their squares, and their
    number)."""
    part = _of_horizon(frame, horizon)
    days = int(part["ic_days"].sum())
    if days == 0:
        return DailyIC(None, None, None, None, 0)
    total, squares = float(part["ic_sum"].sum()), float(part["ic_sq_sum"].sum())
    mean = total / days
    if days < 2:
        return DailyIC(mean, None, None, None, days)
    variance = max(0.0, (squares - days * mean * mean) / (days - 1))
    std = math.sqrt(variance)
    if std <= 1e-12 * max(1.0, abs(mean)):
        return DailyIC(mean, std, None, None, days)
    t_stat = mean / (std / math.sqrt(days))
    p_value = float(2 * stats.t.sf(abs(t_stat), days - 1))
    return DailyIC(mean, std, t_stat, p_value, days)


def confidence_bins(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The raw ``confidence_bins`` rows: per ``CONFIDENCE_BIN_EDGES`` bin of
    ``signal_confidence``, count, mean confidence, signal type counts and the primary
    horizon's scored / correct counts (bins without rows left out)."""
    rows = []
    for k in range(_SIGNAL_BINS):
        count = int(frame[f"bin_{k}_n"].sum()) if not frame.empty else 0
        if count == 0:
            continue
        row: dict[str, Any] = {
            "bin": k,
            "count": count,
            "avg_confidence": float(frame[f"bin_{k}_confidence_sum"].sum()) / count,
            "n_primary": int(frame[f"bin_{k}_scored"].sum()),
            "correct_primary": int(frame[f"bin_{k}_correct"].sum()),
        }
        for kind in SIGNAL_TYPES:
            row[f"signals_{kind}"] = int(frame[f"bin_{k}_{kind.lower()}"].sum())
        rows.append(row)
    return rows


def calibration(frame: pd.DataFrame, horizon: str) -> dict[str, Any]:
    """Calibration of ``horizon``'s direction confidence: n, mean confidence, accuracy,
    ECE over ``CALIBRATION_BINS`` equal-width bins, Brier score."""
    part = _of_horizon(frame, horizon)
    n = int(part["calibration_n"].sum())
    if n == 0:
        return {"horizon": horizon, "n": 0, "avg_confidence": None, "accuracy": None,
                "ece": None, "brier": None}  # fmt: skip
    ece = 0.0
    for k in range(CALIBRATION_BINS):
        members = int(part[f"ece_{k}_n"].sum())
        if members:
            accuracy = int(part[f"ece_{k}_correct"].sum()) / members
            confidence = float(part[f"ece_{k}_confidence_sum"].sum()) / members
            ece += members * abs(accuracy - confidence)
    return {
        "horizon": horizon,
        "n": n,
        "avg_confidence": float(part["calibration_confidence_sum"].sum()) / n,
        "accuracy": int(part["calibration_correct"].sum()) / n,
        "ece": ece / n,
        "brier": float(part["brier_sum"].sum()) / n,
    }


def signal_counts(frame: pd.DataFrame) -> list[tuple[str | None, int]]:
    """(signal_type, predictions) pairs; None for rows without a known signal type."""
    first = _of_horizon(frame, HORIZONS[0])
    found: list[tuple[str | None, int]] = [
        (kind, int(first[f"signal_{kind.lower()}"].sum())) for kind in SIGNAL_TYPES
    ]
    other = int(first["predictions"].sum()) - sum(count for _, count in found)
    if other:
        found.append((None, other))
    return found
