"""Feature-importance snapshots: validation and ranking into ``ml_feature_importance`` rows
(``store.importance_snapshots`` writes them).

A snapshot is every feature of one model version scored by one method at one moment
(``calculated_at``, shared by all its rows); rank 1 is the highest score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mlpred_cli.config import check_horizons
from mlpred_cli.errors import InputError

MAX_FEATURE_NAME_LENGTH = 100
MAX_METHOD_LENGTH = 30


def build_snapshot(
    feature_names: Sequence[str],
    scores: Sequence[float] | np.ndarray,
    *,
    model_version: str | None,
    method: str = "model",
    horizon: str | None = None,
    correlations: Sequence[float | None] | None = None,
    usage_counts: Sequence[int | None] | None = None,
    calculated_at: datetime | None = None,
    p_values: Sequence[float | None] | np.ndarray | None = None,
    q_values: Sequence[float | None] | np.ndarray | None = None,
    n_effective: Sequence[float | None] | np.ndarray | None = None,
    surrogate_r2: float | Sequence[float | None] | np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Validate one snapshot and return its ``ml_feature_importance`` rows, ranked 1..n.

    ``p_values``, ``q_values``, ``n_effective`` and ``surrogate_r2`` (per feature, or for
    ``surrogate_r2`` also one number for the whole snapshot) fill the columns of the same
    names; None or a NaN / infinite value stores null.

    Raises ``InputError`` (a ``ValueError``) when names and scores differ in length, a score
    is NaN or infinite, a name is empty, too long or repeated, or a per-feature sequence has
    another length. Ties share no rank: they are broken by feature order, so ranks are
    always 1..n.
    """
    names = list(feature_names)
    values = np.asarray(scores, dtype=float) if len(scores) else np.zeros(0)
    if values.ndim != 1 or len(names) != len(values):
        raise InputError(
            f"feature_names ({len(names)}) and scores ({values.size}) must have the same length"
        )
    if not names:
        raise InputError("a feature-importance snapshot needs at least one feature")
    if not np.all(np.isfinite(values)):
        bad = names[int(np.flatnonzero(~np.isfinite(values))[0])]
        raise InputError(f"score of feature {bad!r} is NaN or infinite")
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"feature names must be non-empty strings, got {name!r}")
        if len(name) > MAX_FEATURE_NAME_LENGTH:
            raise InputError(f"feature name longer than {MAX_FEATURE_NAME_LENGTH}: {name!r}")
        if name in seen:
            raise InputError(f"duplicate feature name: {name!r}")
        seen.add(name)
    if not method or len(method) > MAX_METHOD_LENGTH:
        raise InputError(f"method must be 1 to {MAX_METHOD_LENGTH} characters, got {method!r}")
    if horizon is not None:
        check_horizons([horizon])
    shared_r2 = surrogate_r2 is None or isinstance(surrogate_r2, int | float | np.floating)
    extras: dict[str, Any] = {
        "correlations": correlations,
        "usage_counts": usage_counts,
        "p_values": p_values,
        "q_values": q_values,
        "n_effective": n_effective,
        "surrogate_r2": None if shared_r2 else surrogate_r2,
    }
    for label, extra in extras.items():
        if extra is not None and len(extra) != len(names):
            raise InputError(f"{label} must have one value per feature")
    if isinstance(surrogate_r2, int | float | np.floating):
        r2_values = [_finite(float(surrogate_r2))] * len(names)
    else:
        r2_values = [_finite_at(surrogate_r2, index) for index in range(len(names))]
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values), dtype=int)
    ranks[order] = np.arange(1, len(values) + 1)
    moment = calculated_at or datetime.now(UTC)
    rows = []
    for index, name in enumerate(names):
        correlation = None if correlations is None else correlations[index]
        rows.append(
            {
                "feature_name": name,
                "feature_index": index,
                "importance_score": float(values[index]),
                "importance_rank": int(ranks[index]),
                "correlation_with_returns": (
                    None
                    if correlation is None or not math.isfinite(correlation)
                    else float(correlation)
                ),
                "usage_count": None if usage_counts is None else usage_counts[index],
                "p_value": _finite_at(p_values, index),
                "q_value": _finite_at(q_values, index),
                "n_effective": _finite_at(n_effective, index),
                "surrogate_r2": r2_values[index],
                "model_version": model_version,
                "method": method,
                "horizon": horizon,
                "calculated_at": moment,
                "created_at": moment,
            }
        )
    return rows


def _finite(value: float | None) -> float | None:
    """``value`` as a float, None when it is None, NaN or infinite."""
    return None if value is None or not math.isfinite(value) else float(value)


def _finite_at(values: Sequence[float | None] | np.ndarray | None, index: int) -> float | None:
    return None if values is None else _finite(values[index])
