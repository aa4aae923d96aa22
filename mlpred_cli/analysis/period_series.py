"""Time series and distributions of a period from its rollup rows (``store.rollup_reads``):
accuracy, hit rate and mean IC per day, mean IC per month, the distribution of the daily
per-symbol ICs, and the reliability diagram's bins.

Pure: frames in, lists of plain dicts out (the report's JSON keys).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlpred_cli.analysis.accuracy import accuracy_with_interval
from mlpred_cli.config import CALIBRATION_BINS, HORIZONS, IC_HISTOGRAM_BINS


def _of_horizon(frame: pd.DataFrame, horizon: str) -> pd.DataFrame:
    return frame[frame["horizon"] == horizon]


def _mean_ic(ic_sum: float, ic_days: int) -> float | None:
    return ic_sum / ic_days if ic_days > 0 else None


def daily_series(daily: pd.DataFrame) -> list[dict[str, Any]]:
    """Per horizon and UTC day (rollup rows by ``day``): scored ``n``, accuracy and hit rate
    with Wilson intervals, and the mean of the day's ICs (one per symbol and model version)
    with their number ``ic_days``; ordered by horizon, then day. Days without a scored row
    are kept (their accuracy is None) so the series shows the gap."""
    rows: list[dict[str, Any]] = []
    if daily.empty:
        return rows
    for horizon in HORIZONS:
        part = _of_horizon(daily, horizon).sort_values("day", kind="stable")
        for record in part.to_dict("records"):
            n, directional = int(record["scored"]), int(record["directional"])
            rows.append(
                {
                    "day": record["day"],
                    "horizon": horizon,
                    "n": n,
                    **accuracy_with_interval(int(record["correct"]), n),
                    "n_directional": directional,
                    **accuracy_with_interval(
                        int(record["directional_correct"]), directional, "hit_rate"
                    ),
                    "ic_mean": _mean_ic(float(record["ic_sum"]), int(record["ic_days"])),
                    "ic_days": int(record["ic_days"]),
                }
            )
    return rows


def monthly_ic(daily: pd.DataFrame) -> list[dict[str, Any]]:
    """Per horizon and calendar month (``YYYY-MM``, UTC) with at least one daily IC: the
    mean of the month's daily ICs and their number."""
    rows: list[dict[str, Any]] = []
    if daily.empty:
        return rows
    frame = daily.assign(month=daily["day"].str.slice(0, 7))
    for horizon in HORIZONS:
        sums = _of_horizon(frame, horizon).groupby("month")[["ic_sum", "ic_days"]].sum()
        for month, record in sums.sort_index().iterrows():
            days = int(record["ic_days"])
            if days:
                rows.append(
                    {
                        "horizon": horizon,
                        "month": str(month),
                        "ic_mean": float(record["ic_sum"]) / days,
                        "ic_days": days,
                    }
                )
    return rows


def daily_ic_values(symbol_days: pd.DataFrame, horizon: str) -> np.ndarray:
    """The daily ICs of ``horizon`` (rollup rows by day, symbol and model version: one IC per
    row that has one)."""
    part = _of_horizon(symbol_days, horizon)
    known = part[part["ic_days"] > 0]
    values: np.ndarray = known["ic_sum"].to_numpy(float) / known["ic_days"].to_numpy(float)
    return values


def ic_distribution(symbol_days: pd.DataFrame) -> list[dict[str, Any]]:
    """Per horizon: how many daily ICs (per day, symbol and model version) there are, their
    mean, median and share above zero, and their histogram on ``IC_HISTOGRAM_BINS``
    equal-width bins of [-1, 1]."""
    edges = np.linspace(-1.0, 1.0, IC_HISTOGRAM_BINS + 1)
    rows = []
    for horizon in HORIZONS:
        values = daily_ic_values(symbol_days, horizon) if not symbol_days.empty else np.zeros(0)
        counts, _ = np.histogram(np.clip(values, -1.0, 1.0), bins=edges)
        rows.append(
            {
                "horizon": horizon,
                "n": int(values.size),
                "mean": float(values.mean()) if values.size else None,
                "median": float(np.median(values)) if values.size else None,
                "share_positive": float((values > 0).mean()) if values.size else None,
                "bins": [
                    {"low": float(edges[k]), "high": float(edges[k + 1]), "count": int(count)}
                    for k, count in enumerate(counts)
                ],
            }
        )
    return rows


def reliability_bins(frame: pd.DataFrame, horizon: str) -> list[dict[str, Any]]:
    """The reliability diagram of ``horizon``'s direction confidence: per equal-width bin of
    [0, 1] (``CALIBRATION_BINS``), the scored rows ``n``, their mean confidence and their
    accuracy (None for an empty bin)."""
    part = _of_horizon(frame, horizon)
    bins = []
    for k in range(CALIBRATION_BINS):
        n = int(part[f"ece_{k}_n"].sum()) if not part.empty else 0
        bins.append(
            {
                "low": k / CALIBRATION_BINS,
                "high": (k + 1) / CALIBRATION_BINS,
                "n": n,
                "avg_confidence": float(part[f"ece_{k}_confidence_sum"].sum()) / n if n else None,
                "accuracy": int(part[f"ece_{k}_correct"].sum()) / n if n else None,
            }
        )
    return bins


def reliability(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``reliability_bins`` of every horizon."""
    return [{"horizon": h, "bins": reliability_bins(frame, h)} for h in HORIZONS]


def symbol_daily_ic(symbol_days: pd.DataFrame) -> dict[tuple[str, str], float]:
    """The mean of each (symbol, horizon)'s daily ICs (rollup rows by day, symbol and model
    version); pairs without one are left out."""
    if symbol_days.empty:
        return {}
    known = symbol_days[symbol_days["ic_days"] > 0]
    sums = known.groupby(["symbol", "horizon"])[["ic_sum", "ic_days"]].sum()
    means: dict[tuple[str, str], float] = {}
    keys: list[tuple[Any, Any]] = sums.index.tolist()
    for key, total, days in zip(keys, sums["ic_sum"], sums["ic_days"], strict=True):
        means[(str(key[0]), str(key[1]))] = float(total) / int(days)
    return means
