"""Significance tests for comparing two model versions: McNemar's exact test on paired
correctness, a bootstrap interval of a paired IC difference, and the unpaired two-proportion
z-test. Pure functions; unknown results are ``None``, never NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from mlpred_cli.config import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, INTERVAL_CONFIDENCE


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's exact test on the discordant pairs of two paired classifiers.

    ``a_only`` pairs where only A was right, ``b_only`` where only B was right; ``p_value`` is
    the two-sided exact binomial p-value (1.0 when there is no discordant pair).
    """

    a_only: int
    b_only: int
    p_value: float


def mcnemar_exact(a_only: int, b_only: int) -> McNemarResult:
    """Exact McNemar test: under "A and B are equally good" each discordant pair is a fair
    coin, so ``b_only ~ Binomial(a_only + b_only, 1/2)`` (two-sided, ``scipy.stats.binomtest``).
    """
    if a_only < 0 or b_only < 0:
        raise ValueError(f"discordant counts must not be negative: {a_only}, {b_only}")
    discordant = a_only + b_only
    if discordant == 0:
        return McNemarResult(a_only, b_only, 1.0)
    p_value = float(stats.binomtest(b_only, discordant, 0.5).pvalue)
    return McNemarResult(a_only, b_only, min(1.0, p_value))


@dataclass(frozen=True)
class ProportionTest:
    """Unpaired two-proportion z-test of B's share against A's (pooled standard error).

    ``difference`` is share B - share A; ``z`` and ``p_value`` (two-sided) are ``None`` when
    either sample is empty or the pooled share is 0 or 1 (no variance to test against).
    """

    difference: float | None
    z: float | None
    p_value: float | None


def two_proportion_z_test(
    successes_a: int, total_a: int, successes_b: int, total_b: int
) -> ProportionTest:
    """Two-sided z-test of ``successes_b / total_b`` against ``successes_a / total_a``."""
    for successes, total in ((successes_a, total_a), (successes_b, total_b)):
        if total < 0 or successes < 0 or successes > total:
            raise ValueError(f"invalid counts: {successes} successes out of {total}")
    if total_a == 0 or total_b == 0:
        return ProportionTest(None, None, None)
    share_a, share_b = successes_a / total_a, successes_b / total_b
    pooled = (successes_a + successes_b) / (total_a + total_b)
    variance = pooled * (1 - pooled) * (1 / total_a + 1 / total_b)
    if variance <= 0:
        return ProportionTest(share_b - share_a, None, None)
    z = (share_b - share_a) / math.sqrt(variance)
    return ProportionTest(share_b - share_a, z, float(2 * stats.norm.sf(abs(z))))


@dataclass(frozen=True)
class BootstrapInterval:
    """A point estimate of IC(B) - IC(A) on paired rows and its percentile bootstrap interval.

    ``n`` is the number of complete pairs used; every field but ``n`` is ``None`` when the
    difference is undefined (fewer than 3 pairs or a constant series).
    """

    difference: float | None
    low: float | None
    high: float | None
    n: int


def _row_spearman(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``first`` with the same row of ``second`` (2-D,
    average ranks for ties); NaN for a row where either side is constant."""
    first_ranks = stats.rankdata(first, axis=1)
    second_ranks = stats.rankdata(second, axis=1)
    first_ranks -= first_ranks.mean(axis=1, keepdims=True)
    second_ranks -= second_ranks.mean(axis=1, keepdims=True)
    covariance = np.einsum("ij,ij->i", first_ranks, second_ranks)
    scale = np.sqrt(
        np.einsum("ij,ij->i", first_ranks, first_ranks)
        * np.einsum("ij,ij->i", second_ranks, second_ranks)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, covariance / scale, np.nan)


def bootstrap_ic_difference(
    predicted_a: npt.ArrayLike,
    predicted_b: npt.ArrayLike,
    actual: npt.ArrayLike,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = INTERVAL_CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> BootstrapInterval:
    """Paired bootstrap of ``IC(B) - IC(A)``, IC = Spearman(predicted, actual return).

    The three arrays are aligned pairs (same symbol and candle); rows with a missing value
    anywhere are dropped. Whole pairs are resampled with replacement ``resamples`` times
    (numpy ``Generator`` seeded with ``seed``, so results are reproducible); the interval is
    the percentile interval at ``confidence``. Resamples where an IC is undefined are skipped.
    """
    pred_a = np.asarray(predicted_a, dtype=float)
    pred_b = np.asarray(predicted_b, dtype=float)
    act = np.asarray(actual, dtype=float)
    if not pred_a.shape == pred_b.shape == act.shape:
        raise ValueError("predicted_a, predicted_b and actual must have the same length")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    keep = np.isfinite(pred_a) & np.isfinite(pred_b) & np.isfinite(act)
    pred_a, pred_b, act = pred_a[keep], pred_b[keep], act[keep]
    n = int(keep.sum())
    if n < 3:
        return BootstrapInterval(None, None, None, n)
    point = _row_spearman(pred_b[None, :], act[None, :]) - _row_spearman(
        pred_a[None, :], act[None, :]
    )
    if not np.isfinite(point[0]):
        return BootstrapInterval(None, None, None, n)
    rng = np.random.default_rng(seed)
    # Chunks bound memory to about 8 million cells per array, whatever n is.
    chunk = max(1, min(resamples, 8_000_000 // n))
    differences = []
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        index = rng.integers(0, n, size=(size, n))
        actual_sample = act[index]
        differences.append(
            _row_spearman(pred_b[index], actual_sample)
            - _row_spearman(pred_a[index], actual_sample)
        )
    values = np.concatenate(differences)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return BootstrapInterval(float(point[0]), None, None, n)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return BootstrapInterval(float(point[0]), float(low), float(high), n)
