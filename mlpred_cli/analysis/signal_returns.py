"""Realized returns by what the model said: by predicted-return quintile (as alphalens'
returns by factor quantile), by signal confidence, and the economics of following the
LONG / SHORT signals at their primary horizon (before costs).

Pure: a row-level frame (``store.periodic_report_reads.SAMPLE_COLUMNS``) in, plain dicts
out. "Following" a signal earns ``+actual`` for LONG and ``-actual`` for SHORT at the row's
primary horizon (its ``signal_timeframe``, else ``PRIMARY_HORIZON_FALLBACK``), one unit per
signal: positions that overlap in time are not netted.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from mlpred_cli.analysis.accuracy import accuracy_with_interval
from mlpred_cli.analysis.metrics import confidence_bin_labels
from mlpred_cli.config import CONFIDENCE_BIN_EDGES, HORIZONS, PRIMARY_HORIZON_FALLBACK

#: Predicted-return buckets of the quintile figure.
QUANTILES = 5

#: A horizon needs this many return pairs per quantile for the quintile figure.
MIN_ROWS_PER_QUANTILE = 5

#: The signal types a position follows (NEUTRAL takes none).
POSITION_SIGNS: dict[str, float] = {"LONG": 1.0, "SHORT": -1.0}


def _float(value: Any) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def return_quintiles(sample: pd.DataFrame) -> list[dict[str, Any]]:
    """Per horizon: the return pairs split into ``QUANTILES`` equal-count buckets of
    predicted return (ties broken by time), each bucket's predicted range, mean predicted
    and mean realized return, and ``spread`` = top minus bottom bucket's mean realized
    return. A horizon with fewer than ``QUANTILES * MIN_ROWS_PER_QUANTILE`` pairs has no
    buckets."""
    rows = []
    for horizon in HORIZONS:
        entry: dict[str, Any] = {"horizon": horizon, "n": 0, "spread": None, "quintiles": []}
        rows.append(entry)
        if sample.empty:
            continue
        pairs = sample[[f"predicted_return_{horizon}", f"actual_return_{horizon}"]].astype(float)
        pairs.columns = pd.Index(["predicted", "actual"])
        pairs = pairs[np.isfinite(pairs["predicted"]) & np.isfinite(pairs["actual"])]
        entry["n"] = len(pairs)
        if len(pairs) < QUANTILES * MIN_ROWS_PER_QUANTILE:
            continue
        # equal-count buckets of the ranks, as alphalens' factor quantiles (pd.qcut)
        ranks = pairs["predicted"].rank(method="first")
        bucket = pd.qcut(ranks, QUANTILES, labels=False).to_numpy()
        for number in range(QUANTILES):
            members = pairs[bucket == number]
            entry["quintiles"].append(
                {
                    "quintile": number + 1,
                    "n": len(members),
                    "predicted_low": float(members["predicted"].min()),
                    "predicted_high": float(members["predicted"].max()),
                    "mean_predicted": float(members["predicted"].mean()),
                    "mean_actual": float(members["actual"].mean()),
                }
            )
        entry["spread"] = (
            entry["quintiles"][-1]["mean_actual"] - entry["quintiles"][0]["mean_actual"]
        )
    return rows


def signal_positions(sample: pd.DataFrame) -> pd.DataFrame:
    """The LONG / SHORT rows with a realized return at their primary horizon: ``day``
    (UTC ``YYYY-MM-DD``), ``signal_type``, ``signal_confidence``, ``primary_horizon``,
    ``actual_return``, ``signed_return`` (the return of following the signal) and ``hit``
    (the actual direction there equals the signal)."""
    columns = ["day", "signal_type", "signal_confidence", "primary_horizon", "actual_return",
               "signed_return", "hit"]  # fmt: skip
    if sample.empty:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
    rows = sample[sample["signal_type"].isin(tuple(POSITION_SIGNS))]
    primary = rows["signal_timeframe"].where(
        rows["signal_timeframe"].isin(HORIZONS), PRIMARY_HORIZON_FALLBACK
    )
    actual = pd.Series(np.nan, index=rows.index, dtype=float)
    direction = pd.Series(None, index=rows.index, dtype=object)
    for horizon in HORIZONS:
        at = primary == horizon
        actual[at] = rows.loc[at, f"actual_return_{horizon}"].astype(float)
        direction[at] = rows.loc[at, f"actual_direction_{horizon}"]
    sign = rows["signal_type"].map(POSITION_SIGNS).astype(float)
    times = pd.to_datetime(rows["datetime"], utc=True)
    frame = pd.DataFrame(
        {
            "day": times.dt.strftime("%Y-%m-%d"),
            "signal_type": rows["signal_type"],
            "signal_confidence": rows["signal_confidence"].astype(float),
            "primary_horizon": primary,
            "actual_return": actual,
            "signed_return": sign * actual,
            "hit": direction == rows["signal_type"],
        }
    )
    known = np.isfinite(frame["actual_return"]) & direction.notna()
    kept: pd.DataFrame = frame[known].reset_index(drop=True)
    return kept


def returns_by_confidence(positions: pd.DataFrame) -> list[dict[str, Any]]:
    """Per ``CONFIDENCE_BIN_EDGES`` bin of ``signal_confidence`` (the last bin holds its
    upper edge; a confidence outside the edges, as in ``analyze``, is in none): the positions
    ``n``, their mean return of following the signal and their hit rate."""
    edges = CONFIDENCE_BIN_EDGES
    confidence = positions["signal_confidence"].astype(float).to_numpy()
    number = np.searchsorted(np.asarray(edges[1:-1]), confidence, side="right")
    number[~((confidence >= edges[0]) & (confidence <= edges[-1]))] = -1
    rows = []
    for k, label in enumerate(confidence_bin_labels(edges)):
        members = positions[number == k]
        n = len(members)
        rows.append(
            {
                "bin": label,
                "low": edges[k],
                "high": edges[k + 1],
                "n": n,
                "mean_return": float(members["signed_return"].mean()) if n else None,
                "hit_rate": float(members["hit"].mean()) if n else None,
            }
        )
    return rows


def primary_horizon(sample: pd.DataFrame) -> str:
    """The most common primary horizon of the LONG / SHORT signals (the fallback when
    there are none)."""
    if sample.empty:
        return PRIMARY_HORIZON_FALLBACK
    named = sample["signal_timeframe"].where(
        sample["signal_timeframe"].isin(HORIZONS), PRIMARY_HORIZON_FALLBACK
    )
    counts = Counter(named[sample["signal_type"].isin(tuple(POSITION_SIGNS))])
    if not counts:
        return PRIMARY_HORIZON_FALLBACK
    return max(HORIZONS, key=lambda h: (counts.get(h, 0), -HORIZONS.index(h)))


def signal_economics(positions: pd.DataFrame) -> dict[str, Any]:
    """Hit rate (with Wilson interval), mean actual return and mean return of following
    the LONG and SHORT signals, each at its own primary horizon (``horizon_mix``: how many
    at each); the cumulative sum of each day's mean return of following the day's signals
    (one unit per signal, before costs) and its total."""
    signals = []
    for kind in POSITION_SIGNS:
        members = positions[positions["signal_type"] == kind]
        n = len(members)
        signals.append(
            {
                "signal_type": kind,
                "n": n,
                **accuracy_with_interval(int(members["hit"].sum()), n, "hit_rate"),
                "mean_return": float(members["actual_return"].mean()) if n else None,
                "mean_signed_return": float(members["signed_return"].mean()) if n else None,
            }
        )
    cumulative = []
    if not positions.empty:
        days = positions.groupby("day", sort=True)["signed_return"].agg(["size", "mean"])
        running = 0.0
        for day, record in days.iterrows():
            running += float(record["mean"])
            cumulative.append(
                {
                    "day": str(day),
                    "signals": int(record["size"]),
                    "mean_return": float(record["mean"]),
                    "cumulative_return": running,
                }
            )
    mix = positions["primary_horizon"].value_counts()
    return {
        "signals": signals,
        "horizon_mix": {h: int(mix.get(h, 0)) for h in HORIZONS if mix.get(h, 0)},
        "cumulative": cumulative,
        "total_return": cumulative[-1]["cumulative_return"] if cumulative else None,
    }
