"""Overlap-corrected figures of a period, from row-level outcomes: accuracy and hit rate with
Wilson intervals at the effective sample size, and the IC's p-value naive and corrected
(``analysis.overlap`` explains the correction).

Each figure is computed only when the raw rows account for every scored row the rollups
counted (an archived day, for instance, has rollups but no rows): a figure from part of the
period would look exact and be wrong, so it is None instead. Pure: frames in, dicts out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlpred_cli import config
from mlpred_cli.analysis.overlap import (
    OverlapInterval,
    OverlapLayout,
    correlation_effective_sizes,
    outcome_effective_size,
    overlap_proportion,
    spearman_p_value,
)
from mlpred_cli.analysis.scoring import scored_mask
from mlpred_cli.config import HORIZON_DELTAS, SIGNAL_TYPES

#: The directions a hit rate counts (a NEUTRAL call is not a directional call).
DIRECTIONAL = ("LONG", "SHORT")


def horizon_seconds(horizon: str) -> float:
    """The horizon's length in seconds: rows of a symbol closer than that overlap."""
    return HORIZON_DELTAS[horizon].total_seconds()


def row_seconds(rows: pd.DataFrame) -> np.ndarray:
    """Each row's ``datetime`` as float seconds (vectorised: a tz-aware column would
    otherwise become one ``Timestamp`` object per row)."""
    times = pd.to_datetime(rows["datetime"], utc=True).dt.tz_convert(None)
    return np.asarray(times.to_numpy(dtype="datetime64[us]").astype(np.int64) / 1e6)


def symbol_codes(rows: pd.DataFrame) -> np.ndarray:
    """Each row's symbol as an integer code (rows of one symbol share it)."""
    return np.asarray(pd.factorize(rows["symbol"], use_na_sentinel=False)[0], dtype=np.int64)


def _correct(rows: pd.DataFrame, horizon: str) -> np.ndarray:
    """1.0 where ``accuracy_h`` is true (True, 1), else 0.0: vectorised ``correct_values``."""
    values = rows[f"accuracy_{horizon}"].to_numpy(dtype=object)
    return np.asarray(np.equal(values, True), dtype=float)


def _interval(
    rows: pd.DataFrame, horizon: str, mask: pd.Series, expected: int | None
) -> OverlapInterval | None:
    chosen = rows[mask.to_numpy()]
    if expected is not None and len(chosen) != expected:
        return None
    return overlap_proportion(
        _correct(chosen, horizon),
        row_seconds(chosen),
        horizon_seconds(horizon),
        symbol_codes(chosen),
    )


def accuracy_overlap(
    rows: pd.DataFrame, horizon: str, expected: int | None = None
) -> OverlapInterval | None:
    """Accuracy at ``horizon`` over the scored rows of ``rows`` (columns ``symbol``,
    ``datetime``, ``direction_h``, ``actual_direction_h``, ``accuracy_h``) with both
    intervals; None when ``expected`` (the rollups' count) is given and differs."""
    return _interval(rows, horizon, scored_mask(rows, horizon), expected)


def hit_rate_overlap(
    rows: pd.DataFrame, horizon: str, expected: int | None = None
) -> OverlapInterval | None:
    """Like ``accuracy_overlap`` over the directional (LONG/SHORT) calls only."""
    mask = scored_mask(rows, horizon) & rows[f"direction_{horizon}"].isin(DIRECTIONAL)
    return _interval(rows, horizon, mask, expected)


def _interval_keys(prefix: str, interval: OverlapInterval | None, n_key: str) -> dict[str, Any]:
    if interval is None or interval.n == 0:
        return {n_key: None, f"{prefix}_overlap_low": None, f"{prefix}_overlap_high": None}
    return {
        n_key: interval.n_effective,
        f"{prefix}_overlap_low": interval.low,
        f"{prefix}_overlap_high": interval.high,
    }


def ic_overlap(rows: pd.DataFrame, horizon: str) -> dict[str, Any]:
    """The pooled Spearman IC's p-value at n (``ic_p_value``, naive) and at the effective
    sample size (``ic_p_value_overlap``, with ``ic_n_effective``)."""
    predicted = rows[f"predicted_return_{horizon}"].to_numpy(dtype=float, na_value=np.nan)
    actual = rows[f"actual_return_{horizon}"].to_numpy(dtype=float, na_value=np.nan)
    complete = np.isfinite(predicted) & np.isfinite(actual)
    n = int(complete.sum())
    empty = {"ic_p_value": None, "ic_n_effective": None, "ic_p_value_overlap": None}
    if n < 3 or np.ptp(predicted[complete]) == 0 or np.ptp(actual[complete]) == 0:
        return empty
    chosen = rows[complete]
    layout = OverlapLayout(row_seconds(chosen), horizon_seconds(horizon), symbol_codes(chosen))
    correlations, sizes = correlation_effective_sizes(predicted[complete], actual[complete], layout)
    ic, n_effective = float(correlations[0]), float(sizes[0])
    if not np.isfinite(ic):
        return empty
    return {
        "ic_p_value": spearman_p_value(ic, float(n)),
        "ic_n_effective": n_effective,
        "ic_p_value_overlap": spearman_p_value(
            ic, n_effective, outcome_effective_size(actual[complete], layout)
        ),
    }


def horizon_overlap(
    rows: pd.DataFrame | None, horizon: str, scored: int, directional: int
) -> dict[str, Any]:
    """The overlap-corrected keys of one horizon's row of ``analyze``: ``n_effective`` and
    ``accuracy_overlap_low/high``, ``n_directional_effective`` and
    ``hit_rate_overlap_low/high``, ``ic_n_effective`` and ``ic_p_value_overlap`` (and the
    naive ``ic_p_value``). All None without rows, above ``OVERLAP_MAX_ROWS`` rows, or where
    the rows do not account for the ``scored`` / ``directional`` counts of the rollups."""
    if rows is None or len(rows) > config.OVERLAP_MAX_ROWS:
        return {
            **_interval_keys("accuracy", None, "n_effective"),
            **_interval_keys("hit_rate", None, "n_directional_effective"),
            "ic_p_value": None,
            "ic_n_effective": None,
            "ic_p_value_overlap": None,
        }
    return {
        **_interval_keys("accuracy", accuracy_overlap(rows, horizon, scored), "n_effective"),
        **_interval_keys(
            "hit_rate", hit_rate_overlap(rows, horizon, directional), "n_directional_effective"
        ),
        **ic_overlap(rows, horizon),
    }


def group_values(rows: pd.DataFrame, by: str) -> pd.Series:
    """Each row's group in an accuracy table by ``by``, spelled as the rollups spell it
    (``day``: ``YYYY-MM-DD``; an unknown signal type or an empty model version: None)."""
    if by == "day":
        return pd.Series(rows["datetime"].dt.strftime("%Y-%m-%d"), index=rows.index)
    values = rows[by].astype(object)
    if by == "signal_type":
        return values.where(values.isin(SIGNAL_TYPES), None)
    if by == "model_version":
        return values.where(values.notna() & (values != ""), None)
    return values


_NO_GROUP = "\0none"


def _group_key(value: Any) -> Any:
    missing = value is None or (isinstance(value, float) and np.isnan(value))
    return _NO_GROUP if missing else value


def group_overlap_columns(
    table: pd.DataFrame,
    rows: pd.DataFrame | None,
    by: str,
    horizons: Sequence[str],
) -> pd.DataFrame:
    """``table`` (an accuracy table from rollup counts: ``by``, ``n_h`` per horizon) with
    ``n_h_effective``, ``accuracy_h_overlap_low`` and ``accuracy_h_overlap_high`` per
    horizon, computed on each group's rows (None without rows, or where a group's rows do not
    account for its ``n_h``)."""
    parts: Mapping[Any, pd.DataFrame] = {}
    if rows is not None and not rows.empty:
        keys = group_values(rows, by).map(_group_key)
        parts = dict(tuple(rows.groupby(keys, sort=False)))
    added: dict[str, pd.Series] = {}
    for horizon in horizons:
        values: list[tuple[Any, Any, Any]] = []
        for group, n in zip(table[by], table[f"n_{horizon}"], strict=True):
            part = parts.get(_group_key(group))
            interval = None if part is None else accuracy_overlap(part, horizon, int(n))
            if interval is None or interval.n == 0:
                values.append((None, None, None))
            else:
                values.append((interval.n_effective, interval.low, interval.high))
        names = (
            f"n_{horizon}_effective",
            f"accuracy_{horizon}_overlap_low",
            f"accuracy_{horizon}_overlap_high",
        )
        for position, name in enumerate(names):
            added[name] = pd.Series([v[position] for v in values], index=table.index, dtype=object)
    kept = table.drop(columns=[name for name in added if name in table.columns])
    return pd.concat([kept, pd.DataFrame(added, index=table.index)], axis=1)
