"""Significance tests for comparing two model versions: McNemar's exact test on paired
correctness, a bootstrap interval of a paired IC difference, and the unpaired two-proportion
z-test; each paired test also in a form that stays honest when outcome windows overlap
(``mcnemar_overlap``, ``block_bootstrap_ic_difference``; see ``analysis.overlap``). Pure
functions; unknown results are ``None``, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from mlpred_cli.analysis.overlap import OverlapLayout
from mlpred_cli.config import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, INTERVAL_CONFIDENCE
from mlpred_cli.errors import InputError

#: Cells (resamples x pairs) per bootstrap chunk, and the threads that work on chunks.
BOOTSTRAP_CHUNK_CELLS = 1_000_000
BOOTSTRAP_THREADS = 2


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
        raise InputError(f"discordant counts must not be negative: {a_only}, {b_only}")
    discordant = a_only + b_only
    if discordant == 0:
        return McNemarResult(a_only, b_only, 1.0)
    p_value = float(stats.binomtest(b_only, discordant, 0.5).pvalue)
    return McNemarResult(a_only, b_only, min(1.0, p_value))


@dataclass(frozen=True)
class OverlapMcNemarResult:
    """McNemar's test when the paired outcomes overlap.

    ``a_only`` / ``b_only`` as in ``McNemarResult``; ``z`` is ``mean(d) / sqrt(long_run /
    n^2)`` with ``d = B correct - A correct`` per pair and the overlap (HAC) long-run sum of
    ``d`` (0.0 without a discordant pair); ``discordant_effective`` the number of independent
    discordant pairs carrying the same information (at most ``a_only + b_only``);
    ``p_value`` the two-sided exact binomial p-value at the effective counts.
    """

    a_only: int
    b_only: int
    z: float
    discordant_effective: float
    p_value: float


def mcnemar_overlap(
    correct_a: npt.ArrayLike, correct_b: npt.ArrayLike, layout: OverlapLayout
) -> OverlapMcNemarResult:
    """McNemar's test of "A and B are equally often right" on pairs whose outcome windows
    overlap (``layout``: the pairs' times and symbols, rows in the order of the arrays).

    The sum of ``d = B correct - A correct`` has, under the null, the long-run variance
    ``sum_i sum_j w_ij d_i d_j`` over overlapping pairs (``OverlapLayout.long_run_sums`` of
    ``d``, not centred: the null's mean 0 imposed; never taken below the number of
    discordant pairs, McNemar's variance without overlap). ``z = mean(d) / sqrt(long_run /
    n^2)``; where discordant pairs overlap the p-value is the two-sided normal one, but
    never below the exact McNemar p-value; without overlap it is ``mcnemar_exact``'s. The
    effective discordant count is ``D^2 / long_run``.
    """
    first = np.asarray(correct_a, dtype=float)
    second = np.asarray(correct_b, dtype=float)
    if first.shape != second.shape or first.shape != (layout.n,):
        raise InputError("correct_a, correct_b and the layout must have the same length")
    difference = second - first
    a_only, b_only = int((difference < 0).sum()), int((difference > 0).sum())
    discordant = a_only + b_only
    if discordant == 0:
        return OverlapMcNemarResult(a_only, b_only, 0.0, 0.0, 1.0)
    _, long_run_sum, _ = layout.long_run_sums(difference)
    long_run = max(float(long_run_sum), float(discordant))
    z = (b_only - a_only) / math.sqrt(long_run)
    p_value = mcnemar_exact(a_only, b_only).p_value
    if long_run > discordant:  # the discordant pairs overlap: their sum varies more
        p_value = max(float(2 * stats.norm.sf(abs(z))), p_value)
    return OverlapMcNemarResult(a_only, b_only, z, discordant * discordant / long_run, p_value)


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
            raise InputError(f"invalid counts: {successes} successes out of {total}")
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


@dataclass(frozen=True)
class _TieGroups:
    """A series sorted once: ``order`` (argsort), the start of each group of equal values in
    sorted order, and each element's group number."""

    order: np.ndarray
    starts: np.ndarray
    group_of: np.ndarray


def _tie_groups(values: np.ndarray) -> _TieGroups:
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    new_group = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    group_of = np.empty(values.size, dtype=np.intp)
    group_of[order] = np.cumsum(new_group) - 1
    return _TieGroups(order, np.flatnonzero(new_group), group_of)


def _resample_ranks(counts: np.ndarray, groups: _TieGroups) -> np.ndarray:
    """Average ranks each element would get inside each resample (rows of ``counts``: how
    often each element was drawn). Equal values share the mean of their positions."""
    group_counts = np.add.reduceat(counts[:, groups.order], groups.starts, axis=1)
    average = np.cumsum(group_counts, axis=1) - (group_counts - 1) / 2
    return np.asarray(average[:, groups.group_of])


class _WeightedRanks:
    """Sums over each resample of one rank matrix: weighted by the draw counts, Σ r and
    Σ r² (the pieces a correlation needs)."""

    def __init__(self, ranks: np.ndarray, counts: np.ndarray) -> None:
        self.ranks = ranks
        self.weighted = counts * ranks
        self.total = self.weighted.sum(axis=1)
        self.squares = np.einsum("ij,ij->i", self.weighted, ranks)


def _weighted_correlation(first: _WeightedRanks, second: _WeightedRanks, size: int) -> np.ndarray:
    """Pearson correlation per resample of two rank matrices, each element weighted by how
    often it was drawn (= the correlation over the resample of ``size`` draws); NaN where a
    side is constant."""
    covariance = np.einsum("ij,ij->i", first.weighted, second.ranks) - (
        first.total * second.total / size
    )
    variance_first = first.squares - first.total**2 / size
    variance_second = second.squares - second.total**2 / size
    product = variance_first * variance_second
    # Relative guard: a constant side leaves only rounding noise in its variance.
    constant = (variance_first <= 1e-9 * first.squares) | (variance_second <= 1e-9 * second.squares)
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = covariance / np.sqrt(np.where(constant, 1.0, product))
    return np.asarray(np.where(constant, np.nan, np.clip(correlation, -1.0, 1.0)))


def _differences(
    counts: np.ndarray,
    groups_a: _TieGroups,
    groups_b: _TieGroups,
    groups_actual: _TieGroups,
    size: int,
) -> np.ndarray:
    """IC(B) - IC(A) for each resample (row of draw counts)."""
    actual = _WeightedRanks(_resample_ranks(counts, groups_actual), counts)
    ic_b = _weighted_correlation(
        _WeightedRanks(_resample_ranks(counts, groups_b), counts), actual, size
    )
    ic_a = _weighted_correlation(
        _WeightedRanks(_resample_ranks(counts, groups_a), counts), actual, size
    )
    return np.asarray(ic_b - ic_a)


#: Draws one chunk of resamples: ``(generator, resamples) -> draw counts`` (resamples x n).
DrawCounts = Callable[[np.random.Generator, int], np.ndarray]


def _complete_pairs(
    predicted_a: npt.ArrayLike, predicted_b: npt.ArrayLike, actual: npt.ArrayLike, resamples: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The three series as floats, restricted to complete pairs, and the mask of those."""
    pred_a = np.asarray(predicted_a, dtype=float)
    pred_b = np.asarray(predicted_b, dtype=float)
    act = np.asarray(actual, dtype=float)
    if not pred_a.shape == pred_b.shape == act.shape:
        raise InputError("predicted_a, predicted_b and actual must have the same length")
    if resamples < 1:
        raise InputError(f"resamples must be at least 1, got {resamples}")
    keep = np.isfinite(pred_a) & np.isfinite(pred_b) & np.isfinite(act)
    return pred_a[keep], pred_b[keep], act[keep], keep


def _iid_counts(n: int) -> DrawCounts:
    """Draw counts of resamples of ``n`` single pairs with replacement."""

    def draw(rng: np.random.Generator, size: int) -> np.ndarray:
        draws = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        return np.bincount(draws.ravel(), minlength=size * n).reshape(size, n)

    return draw


def _circular_block_counts(sorted_groups: np.ndarray, length: int) -> DrawCounts:
    """Draw counts of circular block resamples of rows sorted by (group, time), their group
    codes ``sorted_groups``: each resample joins ``ceil(n / length)`` blocks of ``length``
    consecutive rows of one group, each starting at a uniformly drawn row and wrapping round
    to its group's first row, cut to ``n`` rows."""
    n = int(sorted_groups.size)
    new_group = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]] if n else np.ones(0, bool)
    group_first = np.flatnonzero(new_group)
    group_number = np.cumsum(new_group) - 1
    starts = group_first[group_number]
    sizes = np.diff(np.r_[group_first, n])[group_number]
    blocks = -(-n // length)
    offsets = np.arange(length)

    def draw(rng: np.random.Generator, size: int) -> np.ndarray:
        first = rng.integers(0, n, size=(size, blocks))
        base, span = starts[first][..., None], sizes[first][..., None]
        rows = base + ((first[..., None] - base + offsets) % span)
        drawn = rows.reshape(size, blocks * length)[:, :n] + (np.arange(size) * n)[:, None]
        return np.bincount(drawn.ravel(), minlength=size * n).reshape(size, n)

    return draw


def _bootstrap(
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    act: np.ndarray,
    draw: DrawCounts,
    resamples: int,
    confidence: float,
    seed: int,
) -> BootstrapInterval:
    """The percentile interval of IC(B) - IC(A) over ``resamples`` resamples that ``draw``
    makes (complete pairs only)."""
    n = int(pred_a.size)
    if n < 3:
        return BootstrapInterval(None, None, None, n)
    groups_a, groups_b, groups_actual = _tie_groups(pred_a), _tie_groups(pred_b), _tie_groups(act)
    point = _differences(np.ones((1, n)), groups_a, groups_b, groups_actual, n)
    if not np.isfinite(point[0]):
        return BootstrapInterval(None, None, None, n)
    rng = np.random.default_rng(seed)

    # Each resample is a row of draw counts: ranks inside a resample come from cumulative
    # counts over the presorted series, so nothing is sorted again. Draws are made in order
    # (reproducible); chunks bound memory and run on worker threads (numpy releases the GIL).
    chunk = max(1, min(resamples, BOOTSTRAP_CHUNK_CELLS // n))
    with ThreadPoolExecutor(BOOTSTRAP_THREADS) as pool:
        futures = []
        for start in range(0, resamples, chunk):
            counts = draw(rng, min(chunk, resamples - start))
            futures.append(
                pool.submit(
                    _differences, counts.astype(float), groups_a, groups_b, groups_actual, n
                )
            )
        differences = [future.result() for future in futures]
    values = np.concatenate(differences)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return BootstrapInterval(float(point[0]), None, None, n)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return BootstrapInterval(float(point[0]), float(low), float(high), n)


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
    Pairs are treated as independent: see ``block_bootstrap_ic_difference`` for overlapping
    outcomes.
    """
    pred_a, pred_b, act, _ = _complete_pairs(predicted_a, predicted_b, actual, resamples)
    draw = _iid_counts(int(pred_a.size))
    return _bootstrap(pred_a, pred_b, act, draw, resamples, confidence, seed)


@dataclass(frozen=True)
class BlockBootstrapInterval:
    """``BootstrapInterval`` of a circular block bootstrap, with its ``block_length`` (rows;
    None without an interval)."""

    difference: float | None
    low: float | None
    high: float | None
    n: int
    block_length: int | None


def horizon_block_length(layout: OverlapLayout) -> int:
    """The horizon in rows: the median over rows of how many rows of the same symbol lie
    less than one horizon before it, itself included (at least 1)."""
    if layout.n == 0:
        return 1
    inside = np.arange(layout.n) - layout.window_start + 1
    return max(1, int(np.median(inside)))


def block_bootstrap_ic_difference(
    predicted_a: npt.ArrayLike,
    predicted_b: npt.ArrayLike,
    actual: npt.ArrayLike,
    times: npt.ArrayLike,
    window_seconds: float,
    groups: npt.ArrayLike | None = None,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = INTERVAL_CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> BlockBootstrapInterval:
    """``bootstrap_ic_difference`` for pairs whose outcome windows overlap: a circular block
    bootstrap (Politis and Romano) per symbol.

    Pairs are sorted by (``groups``, ``times``); each resample joins blocks of consecutive
    pairs of one symbol, the block length being the horizon (``window_seconds``) in rows
    (``horizon_block_length``; 1 when rows are a horizon or more apart, which is the plain
    bootstrap), a block starting at a uniformly drawn pair and wrapping round within its
    symbol, until ``n`` pairs are drawn. Same seed, resamples and percentile interval as
    ``bootstrap_ic_difference``.
    """
    pred_a, pred_b, act, keep = _complete_pairs(predicted_a, predicted_b, actual, resamples)
    seconds = np.asarray(times)
    labels = None if groups is None else np.asarray(groups)
    if seconds.shape != keep.shape or (labels is not None and labels.shape != keep.shape):
        raise InputError("times and groups must have the same length as the pairs")
    kept = None if labels is None else labels[keep]
    layout = OverlapLayout(seconds[keep], window_seconds, kept)
    length = horizon_block_length(layout)
    order = layout.order
    codes = np.zeros(layout.n, dtype=np.int64)
    if kept is not None:
        codes = np.unique(kept.astype(str), return_inverse=True)[1].astype(np.int64)
    draw = _circular_block_counts(codes[order], length)
    interval = _bootstrap(
        pred_a[order], pred_b[order], act[order], draw, resamples, confidence, seed
    )
    return BlockBootstrapInterval(
        interval.difference,
        interval.low,
        interval.high,
        interval.n,
        None if interval.low is None else length,
    )
