"""Feature importance from stored predictions: the Spearman IC of each input feature with the
realized return (``feature-importance compute``), and the latest snapshot with its history
(``feature-importance show``).

Scoring and the view are pure; the entry points ``compute_feature_importance`` and
``importance_snapshot_view`` read through ``store.importance_reads`` (feature vectors come from
``store.feature_vectors.load_feature_matrix``) and write through
``store.importance_snapshots``. The ``trend`` sparklines are drawn by ``render.sparkline``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from mlpred_cli.analysis.importance_significance import (
    feature_significance,
    rank_stability,
    row_ranks,
)
from mlpred_cli.analysis.metrics import information_coefficient
from mlpred_cli.config import (
    HORIZON_DELTAS,
    IMPORTANCE_FDR_LEVEL,
    IMPORTANCE_METHOD,
    MIN_IMPORTANCE_ROWS,
    SPARKLINE_SNAPSHOTS,
    check_horizons,
)
from mlpred_cli.derive.importance_snapshot import build_snapshot
from mlpred_cli.errors import InputError, NotEnoughData
from mlpred_cli.store.feature_vectors import WORKER_THREADS
from mlpred_cli.store.importance_reads import read_importance_inputs, read_snapshot_history
from mlpred_cli.store.importance_snapshots import write_snapshot
from mlpred_cli.store.prediction_queries import make_filter
from mlpred_cli.store.source import opened

if TYPE_CHECKING:
    from mlpred_cli.store.feature_vectors import FeatureMatrix
    from mlpred_cli.store.importance_reads import SnapshotHistory
    from mlpred_cli.store.prediction_queries import PredictionFilter
    from mlpred_cli.store.source import DatabaseSource


# ---------------------------------------------------------------- scoring


def _rank_correlations(features: np.ndarray, return_ranks: np.ndarray) -> np.ndarray:
    feature_ranks = row_ranks(features)
    feature_ranks -= feature_ranks.mean(axis=1, keepdims=True)
    covariance = feature_ranks @ return_ranks
    scale = np.sqrt(
        np.einsum("ij,ij->i", feature_ranks, feature_ranks) * (return_ranks @ return_ranks)
    )
    return np.asarray(covariance / scale)


def spearman_with_returns(features: np.ndarray, actual_returns: np.ndarray) -> np.ndarray:
    """Spearman correlation of each feature (a row of ``features``, shape (features,
    predictions)) with the returns; NaN where undefined (fewer than 3 complete pairs, or a
    constant side). Predictions with a NaN feature are left out of that feature only."""
    result = np.full(features.shape[0], np.nan)
    if features.shape[1] < 3 or np.ptp(actual_returns) == 0:
        return result
    finite = np.isfinite(features)
    complete = finite.all(axis=1)
    varying = complete & (np.ptp(np.where(finite, features, 0.0), axis=1) > 0)
    fast = np.flatnonzero(varying)
    if fast.size:
        return_ranks = stats.rankdata(actual_returns)
        return_ranks -= return_ranks.mean()
        blocks = np.array_split(fast, min(WORKER_THREADS * 2, fast.size))
        with ThreadPoolExecutor(WORKER_THREADS) as pool:
            parts = pool.map(
                lambda block: _rank_correlations(features[block], return_ranks), blocks
            )
            result[fast] = np.concatenate(list(parts))
    for row in np.flatnonzero(~complete):
        ic = information_coefficient(features[row], actual_returns).ic
        result[row] = np.nan if ic is None else ic
    return result


def usage_counts(features: np.ndarray) -> np.ndarray:
    """Per feature (row), the predictions where it was finite and non-zero."""
    return np.asarray(np.count_nonzero(np.isfinite(features) & (features != 0), axis=1))


# ---------------------------------------------------------------- compute


@dataclass(frozen=True)
class ImportanceResult:
    """What ``compute_feature_importance`` scored and wrote.

    ``rows`` are the snapshot's ``ml_feature_importance`` rows (in feature order);
    ``predictions`` the predictions used; ``skipped`` those left out (other vector length).
    """

    rows: list[dict[str, Any]]
    predictions: int
    skipped: int
    horizon: str
    model_version: str | None
    calculated_at: datetime
    written: int

    def ranked(self) -> list[dict[str, Any]]:
        """The rows by rank, best first."""
        return sorted(self.rows, key=lambda row: row["importance_rank"])


def read_feature_names(path: str | Path) -> list[str]:
    """Feature names from a text file, one per line (blank lines ignored)."""
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot read feature names from {target}: {error.strerror}") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InputError(f"{target} names no feature")
    return names


def feature_name_list(feature_names: Sequence[str] | str | Path | None) -> list[str] | None:
    """Feature names given as a list, or read from a text file (``read_feature_names``)."""
    if isinstance(feature_names, str | Path):
        return read_feature_names(feature_names)
    return list(feature_names) if feature_names is not None else None


def snapshot_model_version(model_version: str | None, versions: Sequence[Any]) -> str | None:
    """A snapshot's model version: the one asked for, else the selection's only one (None
    when it mixes several)."""
    if model_version is not None:
        return model_version
    return versions[0] if len(versions) == 1 else None


def compute_feature_importance(
    database: DatabaseSource,
    *,
    days: float | None = 30.0,
    horizon: str = "1h",
    model_version: str | None = None,
    feature_names: Sequence[str] | str | Path | None = None,
    write: bool = True,
    now: datetime | None = None,
) -> ImportanceResult:
    """In ``database`` (a URL, a path, an engine, or None for the configured default), score every
    input feature by its Spearman IC with ``actual_return_<horizon>`` over the
    predictions of the last ``days`` days (of ``model_version``, else all) that were stored
    with ``features_array`` and have that outcome, and write the snapshot (method
    ``spearman_ic``; ``importance_score`` = |IC|, 0 where the IC is undefined, e.g. a constant
    feature, whose correlation is then null).

    Feature names (a list, or the path of a text file with one per line) default to
    ``f0..fN``; given names fix the vector length (predictions with other lengths are
    skipped). The snapshot's model_version is ``model_version``, else the selection's only
    version (None when it mixes several). Raises ``NotEnoughData`` below
    ``MIN_IMPORTANCE_ROWS`` usable predictions (nothing is written) and ``InputError`` on bad
    options.
    """
    check_horizons([horizon])
    moment = now or datetime.now(UTC)
    selection = make_filter(model_version=model_version, days=days, now=moment)
    names = feature_name_list(feature_names)
    width = None if names is None else len(names)
    with opened(database) as engine:
        matrix, versions = read_importance_inputs(engine, selection, horizon, width)
        result = score_snapshot(matrix, versions, selection, horizon, model_version, names, moment)
        written = write_snapshot(engine, result.rows) if write else 0
    return replace(result, written=written)


def score_snapshot(
    matrix: FeatureMatrix,
    versions: Sequence[Any],
    selection: PredictionFilter,
    horizon: str,
    model_version: str | None,
    names: list[str] | None,
    moment: datetime,
) -> ImportanceResult:
    """Score the features of ``matrix`` into snapshot rows (``written`` 0: nothing stored
    yet). Raises ``NotEnoughData`` below ``MIN_IMPORTANCE_ROWS`` predictions."""
    predictions = matrix.features.shape[1]
    if predictions < MIN_IMPORTANCE_ROWS:
        hint = (
            f" ({matrix.skipped} more have a feature vector of another length than the "
            f"{len(names)} names)"
            if names is not None and matrix.skipped
            else ""
        )
        raise NotEnoughData(
            f"only {predictions} predictions {selection.describe()} have stored features and a "
            f"{horizon} outcome{hint}; at least {MIN_IMPORTANCE_ROWS} are needed "
            "(log with store_features=True and run backfill-actuals); nothing written"
        )
    width = matrix.features.shape[0]
    names = names if names is not None else [f"f{index}" for index in range(width)]
    # The IC of each feature (as ``spearman_with_returns``) with its overlap-corrected p-value.
    significance = feature_significance(
        matrix.features,
        matrix.actual_returns,
        matrix.times,
        HORIZON_DELTAS[horizon].total_seconds(),
        matrix.symbols,
    )
    correlations = significance.correlations
    scores = np.where(np.isfinite(correlations), np.abs(correlations), 0.0)
    version = snapshot_model_version(model_version, versions)
    rows = build_snapshot(
        names,
        scores,
        model_version=version,
        method=IMPORTANCE_METHOD,
        horizon=horizon,
        correlations=[None if not np.isfinite(c) else float(c) for c in correlations],
        usage_counts=[int(c) for c in usage_counts(matrix.features)],
        calculated_at=moment,
        p_values=significance.p_values,
        q_values=significance.q_values,
        n_effective=significance.n_effective,
    )
    return ImportanceResult(rows, predictions, matrix.skipped, horizon, version, moment, 0)


# ---------------------------------------------------------------- show


@dataclass
class ImportanceView:
    """The latest snapshot (``snapshot``: model_version, method, horizon, calculated_at,
    features, history, ``rank_stability`` - Spearman correlation of its ranks with the
    previous snapshot's, None without one or with fewer than 3 shared features - and
    ``tested_features`` / ``significant_features`` / ``fdr_level``: how many features have
    a p-value and how many of them have a Benjamini-Hochberg q-value below the level, None
    when no feature has one, e.g. an old snapshot) and its top features, each with
    ``p_value``, ``q_value``, ``n_effective``, ``significant`` (q below the level; None
    without a q-value), ``rank_change`` (previous rank minus
    current: positive moved up, None when new or with no previous snapshot) and, once
    ``render.sparkline.with_trends`` has drawn it, ``trend`` (a sparkline of its score over
    the last ``history`` snapshots, oldest first). ``score_history`` holds those scores per
    feature (not part of the JSON document)."""

    snapshot: dict[str, Any] | None
    features: list[dict[str, Any]] = field(default_factory=list)
    score_history: dict[str, list[float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``feature-importance show --format json``."""
        return {"snapshot": self.snapshot, "features": self.features}


def importance_snapshot_view(
    database: DatabaseSource,
    *,
    top: int = 20,
    model_version: str | None = None,
    method: str | None = None,
    history: int = SPARKLINE_SNAPSHOTS,
    fdr_level: float = IMPORTANCE_FDR_LEVEL,
) -> ImportanceView:
    """The newest snapshot (of ``model_version`` / ``method`` when given) with its ``top``
    features by rank. History, rank changes and rank stability come from the earlier
    snapshots of the same model version, method and horizon; a feature is significant when
    its q-value is below ``fdr_level``. ``snapshot`` is None when nothing matches. The
    features carry no ``trend`` yet (``render.sparkline.with_trends`` adds it)."""
    if top < 1:
        raise InputError(f"top must be at least 1, got {top}")
    if history < 1:
        raise InputError(f"history must be at least 1, got {history}")
    if not 0 < fdr_level < 1:
        raise InputError(f"fdr_level must be between 0 and 1, got {fdr_level}")
    found = read_snapshot_history(
        database, model_version=model_version, method=method, history=max(history, 2)
    )
    return (
        ImportanceView(None) if found is None else importance_view(found, top, fdr_level, history)
    )


def is_significant(q_value: float | None, level: float) -> bool | None:
    """``q_value < level``; None without a q-value (no test, e.g. an old snapshot)."""
    return None if q_value is None else bool(q_value < level)


def importance_view(
    found: SnapshotHistory,
    top: int,
    fdr_level: float = IMPORTANCE_FDR_LEVEL,
    history: int | None = None,
) -> ImportanceView:
    """The view of a snapshot and its history: the ``top`` features by rank, with rank
    changes, significance, rank stability and score histories (over the last ``history``
    snapshots; default all of ``found``)."""
    moments = found.moments
    position = {moment: index for index, moment in enumerate(moments)}
    scores: dict[str, list[float | None]] = {}
    ranks: dict[str, list[int | None]] = {}
    current: dict[str, Mapping[Any, Any]] = {}
    for row in found.rows:
        index = position[row["calculated_at"]]
        name = row["feature_name"]
        scores.setdefault(name, [None] * len(moments))[index] = row["importance_score"]
        ranks.setdefault(name, [None] * len(moments))[index] = row["importance_rank"]
        if index == len(moments) - 1:
            current[name] = row
    best = sorted(current.values(), key=lambda row: (row["importance_rank"], row["feature_name"]))
    features = []
    for row in best[:top]:
        name = row["feature_name"]
        previous = ranks[name][-2] if len(moments) > 1 else None
        features.append(
            {
                "rank": row["importance_rank"],
                "feature_name": name,
                "importance_score": row["importance_score"],
                "correlation_with_returns": row["correlation_with_returns"],
                "usage_count": row["usage_count"],
                "p_value": row.get("p_value"),
                "q_value": row.get("q_value"),
                "n_effective": row.get("n_effective"),
                "significant": is_significant(row.get("q_value"), fdr_level),
                "previous_rank": previous,
                "rank_change": None if previous is None else previous - row["importance_rank"],
            }
        )
    before = {
        name: history_ranks[-2]
        for name, history_ranks in ranks.items()
        if len(moments) > 1 and history_ranks[-2] is not None
    }
    now_ranks = {name: row["importance_rank"] for name, row in current.items()}
    tested = [row["q_value"] for row in current.values() if row.get("q_value") is not None]
    latest = found.latest
    shown = len(moments) if history is None else min(history, len(moments))
    snapshot = {
        "model_version": latest["model_version"],
        "method": latest["method"],
        "horizon": latest["horizon"],
        "calculated_at": latest["calculated_at"],
        "features": len(current),
        "history": shown,
        "rank_stability": rank_stability(now_ranks, before),
        "tested_features": len(tested) if tested else None,
        "significant_features": sum(q < fdr_level for q in tested) if tested else None,
        "fdr_level": fdr_level,
    }
    trends = {
        feature["feature_name"]: scores[feature["feature_name"]][len(moments) - shown :]
        for feature in features
    }
    return ImportanceView(snapshot, features, trends)
