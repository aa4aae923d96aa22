"""Is a feature's IC more than noise? P-values, false-discovery control and rank stability
for feature-importance snapshots.

With 240 features some ICs are large by chance alone. Each feature's Spearman IC gets a
two-sided p-value from the t-test at its *effective* sample size (``analysis.overlap``:
rows of one symbol less than a horizon apart share part of their outcome window, so they
count as fewer independent rows), and the p-values of a snapshot get Benjamini-Hochberg
q-values: a feature with ``q < level`` is a discovery, and on average at most ``level`` of
the discoveries are false. Pure numpy / scipy.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from mlpred_cli.analysis.overlap import (
    OverlapLayout,
    correlation_effective_sizes,
    outcome_effective_size,
    spearman_p_values,
    standardized,
)
from mlpred_cli.errors import InputError
from mlpred_cli.store.feature_vectors import WORKER_THREADS

#: Feature x row values handled at once (the effective sizes hold a few such arrays).
BLOCK_VALUES = 2_000_000
#: Fewest complete rows for which a feature gets a p-value.
MIN_SIGNIFICANCE_ROWS = 3


def benjamini_hochberg(p_values: npt.ArrayLike) -> np.ndarray:
    """Benjamini-Hochberg q-values (adjusted p-values) of a family of p-values.

    ``q_(i) = min over j >= i of m p_(j) / j`` (sorted ascending), capped at 1, so q is
    monotone in p and ``q <= level`` selects exactly the BH discoveries at that level. NaN
    p-values (features with no test) stay NaN and do not count in the family size ``m``.
    Equals ``scipy.stats.false_discovery_control(p, method="bh")`` on NaN-free input.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise InputError("p-values must be one-dimensional")
    defined = np.isfinite(p)
    if np.any((p[defined] < 0) | (p[defined] > 1)):
        raise InputError("p-values must lie in [0, 1]")
    q = np.full(p.shape, np.nan)
    finite = p[defined]
    m = finite.size
    if m == 0:
        return q
    order = np.argsort(finite, kind="stable")
    scaled = finite[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    values = np.empty(m)
    values[order] = adjusted
    q[defined] = values
    return q


@dataclass(frozen=True)
class FeatureSignificance:
    """Per feature: the Spearman IC, its effective sample size and its two-sided p-value
    (NaN where undefined: fewer than 3 complete rows, or a constant side) and the
    Benjamini-Hochberg q-value over the snapshot's defined p-values."""

    correlations: np.ndarray
    n_effective: np.ndarray
    p_values: np.ndarray
    q_values: np.ndarray

    def significant(self, level: float) -> np.ndarray:
        """True where ``q < level`` (False where q is NaN)."""
        return np.asarray(np.nan_to_num(self.q_values, nan=np.inf) < level)


def row_ranks(rows: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) within each row of a NaN-free 2-D array: a double argsort
    where a row has no ties, ``scipy.stats.rankdata`` where it does."""
    order = np.argsort(rows, axis=1)
    ranks = np.empty_like(rows, dtype=float)
    positions = np.broadcast_to(np.arange(1, rows.shape[1] + 1, dtype=float), rows.shape)
    np.put_along_axis(ranks, order, positions, axis=1)
    ordered = np.take_along_axis(rows, order, axis=1)
    for row in np.flatnonzero((np.diff(ordered, axis=1) == 0).any(axis=1)):
        ranks[row] = stats.rankdata(rows[row])
    return ranks


def _correlate_block(
    features: np.ndarray, return_ranks: np.ndarray, layout: OverlapLayout
) -> tuple[np.ndarray, np.ndarray]:
    """``overlap.correlation_effective_sizes`` of complete, varying features against
    standardized return ranks, with the faster ``row_ranks`` (same influence function:
    ``a b - r (a^2 + b^2) / 2``)."""
    a = standardized(row_ranks(features))
    product = a * return_ranks
    r = product.mean(axis=-1)
    product -= r[:, None] * (a * a + return_ranks * return_ranks) / 2
    return r, layout.effective_sizes(product)


def _complete_features(
    features: np.ndarray, returns: np.ndarray, layout: OverlapLayout
) -> tuple[np.ndarray, np.ndarray]:
    """``_correlate_block`` over blocks of features that fit ``BLOCK_VALUES``, on worker
    threads (numpy's sorts and sums release the GIL)."""
    return_ranks = standardized(row_ranks(returns[None, :]))[0]
    rows = max(1, BLOCK_VALUES // max(1, features.shape[1]))
    blocks = [features[start : start + rows] for start in range(0, features.shape[0], rows)]
    with ThreadPoolExecutor(min(WORKER_THREADS, len(blocks))) as pool:
        parts = list(pool.map(lambda block: _correlate_block(block, return_ranks, layout), blocks))
    return np.concatenate([r for r, _ in parts]), np.concatenate([n for _, n in parts])


def feature_significance(
    features: np.ndarray,
    actual_returns: np.ndarray,
    times: npt.ArrayLike,
    window_seconds: float,
    symbols: npt.ArrayLike | None = None,
) -> FeatureSignificance:
    """The IC, effective sample size, p-value and q-value of each feature (a row of
    ``features``, shape (features, rows)) against ``actual_returns``.

    Rows of the same symbol (``symbols``; None: one symbol) whose ``times`` (float seconds
    or datetime64) are less than ``window_seconds`` (the horizon) apart overlap.
    Features without NaN share one layout; a feature with NaN values is tested on its
    complete rows only (with their own layout). Constant features get no test.
    """
    values = np.asarray(features, dtype=float)
    returns = np.asarray(actual_returns, dtype=float)
    if values.ndim != 2 or values.shape[1] != returns.size:
        raise InputError("features must be (features, rows) with one return per row")
    seconds = np.asarray(times)
    groups = None if symbols is None else np.asarray(symbols)
    k, n = values.shape
    correlations = np.full(k, np.nan)
    sizes = np.full(k, np.nan)
    outcomes = np.full(k, np.nan)
    if n >= MIN_SIGNIFICANCE_ROWS and np.ptp(returns) > 0:
        finite = np.isfinite(values)
        complete = finite.all(axis=1)
        varying = np.ptp(np.where(finite, values, 0.0), axis=1) > 0
        fast = np.flatnonzero(complete & varying)
        if fast.size:
            layout = OverlapLayout(seconds, window_seconds, groups)
            correlations[fast], sizes[fast] = _complete_features(values[fast], returns, layout)
            outcomes[fast] = outcome_effective_size(returns, layout)
        for row in np.flatnonzero(~complete):
            keep = finite[row]
            kept = values[row, keep]
            if kept.size < MIN_SIGNIFICANCE_ROWS or np.ptp(kept) == 0 or np.ptp(returns[keep]) == 0:
                continue
            own = OverlapLayout(
                seconds[keep], window_seconds, None if groups is None else groups[keep]
            )
            r, size = correlation_effective_sizes(kept, returns[keep], own)
            correlations[row], sizes[row] = r[0], size[0]
            outcomes[row] = outcome_effective_size(returns[keep], own)
    p_values = spearman_p_values(correlations, sizes, outcomes)
    return FeatureSignificance(correlations, sizes, p_values, benjamini_hochberg(p_values))


def rank_stability(current: Mapping[str, float], previous: Mapping[str, float]) -> float | None:
    """Spearman correlation between a snapshot's feature ranks and the previous snapshot's,
    over the features both have; None with fewer than 3 shared features or when either
    side's ranks are all equal. 1 = same order, 0 = unrelated, -1 = reversed."""
    shared = sorted(set(current) & set(previous))
    if len(shared) < 3:
        return None
    now = np.array([current[name] for name in shared], dtype=float)
    before = np.array([previous[name] for name in shared], dtype=float)
    if np.ptp(now) == 0 or np.ptp(before) == 0:
        return None
    return float(stats.spearmanr(now, before).statistic)
