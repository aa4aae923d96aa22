"""One small, pure function per metric. Inputs are counts or array-likes; nothing touches a
database. Unknown results (no data, undefined statistic) are ``None``, never NaN.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from mlpred_cli.config import CALIBRATION_BINS, CONFIDENCE_BIN_EDGES, INTERVAL_CONFIDENCE
from mlpred_cli.errors import InputError

ArrayLike = npt.ArrayLike


def proportion(successes: int, total: int) -> float | None:
    """``successes / total``, or ``None`` when ``total`` is 0."""
    return successes / total if total > 0 else None


@functools.lru_cache(maxsize=16)
def _normal_quantile(probability: float) -> float:
    return float(stats.norm.ppf(probability))


def wilson_interval(
    successes: int, total: int, confidence: float = INTERVAL_CONFIDENCE
) -> tuple[float | None, float | None]:
    """Wilson score interval (no continuity correction) of a binomial proportion.

    ``successes`` out of ``total`` trials; returns ``(low, high)`` in [0, 1], or
    ``(None, None)`` when ``total`` is 0.
    """
    if total < 0 or successes < 0 or successes > total:
        raise InputError(f"invalid counts: {successes} successes out of {total}")
    if total == 0:
        return None, None
    z = _normal_quantile(0.5 + confidence / 2)
    share = successes / total
    z2_n = z * z / total
    centre = (share + z2_n / 2) / (1 + z2_n)
    half_width = z / (1 + z2_n) * math.sqrt(share * (1 - share) / total + z2_n / (4 * total))
    return max(0.0, centre - half_width), min(1.0, centre + half_width)


def wilson_intervals(
    successes: npt.ArrayLike, totals: npt.ArrayLike, confidence: float = INTERVAL_CONFIDENCE
) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.object_], npt.NDArray[np.object_]]:
    """``proportion`` and ``wilson_interval`` of each pair of counts at once: the arrays
    (share, low, high), None where the total is 0; the same floats as the scalar functions
    (the same operations in the same order)."""
    hits = np.asarray(successes, dtype=np.int64)
    trials = np.asarray(totals, dtype=np.int64)
    invalid = (trials < 0) | (hits < 0) | (hits > trials)
    if invalid.any():
        first = int(np.flatnonzero(invalid)[0])
        raise InputError(f"invalid counts: {hits[first]} successes out of {trials[first]}")
    scored = trials > 0
    n = np.where(scored, trials, 1).astype(np.float64)
    z = _normal_quantile(0.5 + confidence / 2)
    share = hits / n
    z2_n = z * z / n
    centre = (share + z2_n / 2) / (1 + z2_n)
    half_width = z / (1 + z2_n) * np.sqrt(share * (1 - share) / n + z2_n / (4 * n))
    low = np.maximum(0.0, centre - half_width)
    high = np.minimum(1.0, centre + half_width)
    return _where(scored, share), _where(scored, low), _where(scored, high)


def _where(
    defined: npt.NDArray[np.bool_], values: npt.NDArray[np.float64]
) -> npt.NDArray[np.object_]:
    """``values`` as Python floats, None where not ``defined``."""
    out = values.astype(object)
    out[~defined] = None
    return out


@dataclass(frozen=True)
class RankCorrelation:
    """A Spearman rank correlation and the number of complete pairs it is computed on."""

    ic: float | None
    n: int


def information_coefficient(predicted: ArrayLike, actual: ArrayLike) -> RankCorrelation:
    """Spearman rank correlation of predicted and actual returns (the IC).

    Pairs with a NaN/None on either side are dropped; ties get average ranks. ``ic`` is
    ``None`` with fewer than 3 pairs or when either side is constant.
    """
    pred = np.asarray(predicted, dtype=float)
    act = np.asarray(actual, dtype=float)
    if pred.shape != act.shape:
        raise InputError("predicted and actual must have the same length")
    complete = np.isfinite(pred) & np.isfinite(act)
    n = int(complete.sum())
    if n < 3:
        return RankCorrelation(None, n)
    pred, act = pred[complete], act[complete]
    if np.ptp(pred) == 0 or np.ptp(act) == 0:
        return RankCorrelation(None, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.spearmanr(pred, act)
    value = float(result.statistic)
    return RankCorrelation(value if math.isfinite(value) else None, n)


def _clean_pairs(confidence: ArrayLike, correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    if conf.shape != hit.shape:
        raise InputError("confidence and correct must have the same length")
    keep = np.isfinite(conf) & np.isfinite(hit)
    return conf[keep], hit[keep]


def brier_score(confidence: ArrayLike, correct: ArrayLike) -> float | None:
    """Mean squared difference between a stated probability and the 0/1 outcome.

    ``confidence`` in [0, 1]; ``correct`` booleans (or 0/1). Pairs with a missing value are
    dropped; ``None`` when nothing is left. 0 is perfect, 0.25 is a constant 0.5 guess.
    """
    conf, hit = _clean_pairs(confidence, correct)
    if conf.size == 0:
        return None
    return float(np.mean((conf - hit) ** 2))


def expected_calibration_error(
    confidence: ArrayLike, correct: ArrayLike, bins: int = CALIBRATION_BINS
) -> float | None:
    """Expected calibration error over ``bins`` equal-width confidence bins on [0, 1].

    ECE = sum over bins of (bin count / n) * |accuracy in bin - mean confidence in bin|.
    Bins are [k/bins, (k+1)/bins), the last one includes 1.0. ``None`` with no data.
    """
    conf, hit = _clean_pairs(confidence, correct)
    if conf.size == 0:
        return None
    edges = np.linspace(0.0, 1.0, bins + 1).round(
        12
    )  # so that 0.6 is an edge, not 0.6000000000000001
    index = confidence_bin_index(conf, edges)
    total = 0.0
    for bin_number in range(bins):
        members = index == bin_number
        count = int(members.sum())
        if count:
            total += count * abs(float(hit[members].mean()) - float(conf[members].mean()))
    return total / conf.size


def confidence_bin_index(
    confidence: ArrayLike, edges: Sequence[float] | np.ndarray = CONFIDENCE_BIN_EDGES
) -> np.ndarray:
    """The bin number of each confidence for bins [e0, e1), [e1, e2), ..., [e(k-1), ek].

    The last bin includes its upper edge (so a confidence of exactly 1.0 lands in it).
    Values outside [e0, ek] or NaN get -1.
    """
    values = np.asarray(confidence, dtype=float)
    bounds = np.asarray(edges, dtype=float)
    index = np.searchsorted(bounds, values, side="right") - 1
    last = len(bounds) - 2
    index = np.where(values == bounds[-1], last, index)
    outside = ~np.isfinite(values) | (values < bounds[0]) | (values > bounds[-1])
    return np.where(outside, -1, index).astype(int)


def confidence_bin_labels(edges: Sequence[float] = CONFIDENCE_BIN_EDGES) -> list[str]:
    """Interval labels of the bins ``confidence_bin_index`` assigns, e.g. ``[0.8, 1.0]``."""
    pairs = list(itertools.pairwise(edges))[:-1]
    labels = [f"[{low:g}, {high:g})" for low, high in pairs]
    labels.append(f"[{edges[-2]:g}, {edges[-1]:.1f}]")
    return labels


def base_rate(direction_counts: Mapping[str, int]) -> float | None:
    """Accuracy of always predicting the most common actual direction.

    ``direction_counts`` maps actual direction -> count; ``None`` when all counts are 0.
    """
    total = sum(direction_counts.values())
    if total == 0:
        return None
    return max(direction_counts.values()) / total
