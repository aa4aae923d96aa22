"""McNemar's exact test, the two-proportion z-test and the paired IC bootstrap against
hand-computed values, and their overlap-corrected forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlpred_cli.analysis import significance
from mlpred_cli.analysis.overlap import OverlapLayout
from mlpred_cli.analysis.significance import (
    block_bootstrap_ic_difference,
    bootstrap_ic_difference,
    mcnemar_exact,
    mcnemar_overlap,
    two_proportion_z_test,
)


def test_mcnemar_exact_matches_binomial_tail() -> None:
    # 1 vs 9 discordant pairs: P = 2 * P(X <= 1 | n=10, 1/2) = 2 * (1 + 10) / 1024
    assert mcnemar_exact(1, 9).p_value == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1).p_value == pytest.approx(22 / 1024)
    # 0 vs 6: 2 * (1/2)^6
    assert mcnemar_exact(0, 6).p_value == pytest.approx(2 / 64)
    # balanced and empty: no evidence at all
    assert mcnemar_exact(5, 5).p_value == pytest.approx(1.0)
    assert mcnemar_exact(0, 0).p_value == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_two_proportion_z_test_by_hand() -> None:
    # 40/100 vs 60/100: pooled 0.5, se = sqrt(0.25 * 0.02) = 0.0707107, z = 0.2 / se
    result = two_proportion_z_test(40, 100, 60, 100)
    assert result.difference == pytest.approx(0.2)
    assert result.z == pytest.approx(2.8284271, rel=1e-6)
    assert result.p_value == pytest.approx(0.0046777, abs=1e-6)
    # 30/50 vs 30/50: no difference
    same = two_proportion_z_test(30, 50, 30, 50)
    assert (same.difference, same.z, same.p_value) == (0.0, 0.0, pytest.approx(1.0))
    # all right on both sides: no variance, nothing to test
    assert two_proportion_z_test(10, 10, 20, 20).p_value is None
    assert two_proportion_z_test(0, 0, 3, 5).p_value is None


def test_bootstrap_point_estimate_by_hand() -> None:
    actual = [1.0, 2.0, 3.0, 4.0, 5.0]
    # pred_a swaps the last two ranks: rho = 1 - 6 * 2 / (5 * 24) = 0.9; pred_b reversed: -1
    result = bootstrap_ic_difference([1, 2, 3, 5, 4], [5, 4, 3, 2, 1], actual, resamples=200)
    assert result.difference == pytest.approx(-1.9)
    assert result.n == 5
    assert result.low is not None and result.high is not None
    assert result.low <= result.high


def test_bootstrap_interval_degenerate_and_reproducible() -> None:
    rng = np.random.default_rng(7)
    actual = rng.normal(size=40)
    # B ranks perfectly, A perfectly backwards: every resample gives exactly 1 - (-1) = 2
    perfect = bootstrap_ic_difference(-actual, actual, actual, resamples=300)
    assert (perfect.difference, perfect.low, perfect.high) == pytest.approx((2.0, 2.0, 2.0))
    # identical predictions: the difference is 0 in every resample
    same = rng.normal(size=40)
    zero = bootstrap_ic_difference(same, same, actual, resamples=300)
    assert (zero.difference, zero.low, zero.high) == (0.0, 0.0, 0.0)
    # a fixed default seed: the same interval twice; another seed, another interval
    noisy_a, noisy_b = actual + rng.normal(size=40), actual + rng.normal(size=40) * 2
    first = bootstrap_ic_difference(noisy_a, noisy_b, actual, resamples=300)
    assert first == bootstrap_ic_difference(noisy_a, noisy_b, actual, resamples=300)
    assert first != bootstrap_ic_difference(noisy_a, noisy_b, actual, resamples=300, seed=1)
    assert first.low is not None and first.high is not None
    assert first.low < first.difference < first.high  # type: ignore[operator]


def test_bootstrap_drops_missing_and_needs_three_pairs() -> None:
    result = bootstrap_ic_difference([1, 2, np.nan], [1, 2, 3], [1, 2, 3])
    assert (result.difference, result.low, result.high, result.n) == (None, None, None, 2)
    with pytest.raises(ValueError):
        bootstrap_ic_difference([1, 2], [1, 2, 3], [1, 2, 3])


def test_resample_ranks_equal_reranking_the_resample() -> None:
    """The bootstrap ranks a resample from draw counts over the presorted series; that must
    equal Spearman on the explicitly resampled rows (with ties and repeated draws)."""
    rng = np.random.default_rng(3)
    size = 60
    actual = rng.integers(0, 6, size).astype(float)  # many ties
    pred_a, pred_b = rng.normal(size=size), np.round(rng.normal(size=size), 1)
    groups = [significance._tie_groups(v) for v in (pred_a, pred_b, actual)]
    for _ in range(5):
        drawn = rng.integers(0, size, size)
        counts = np.bincount(drawn, minlength=size).astype(float)[None, :]
        fast = significance._differences(counts, *groups, size)[0]
        expected = (
            stats.spearmanr(pred_b[drawn], actual[drawn]).statistic
            - stats.spearmanr(pred_a[drawn], actual[drawn]).statistic
        )
        assert fast == pytest.approx(expected, abs=1e-12)


def test_mcnemar_overlap_by_hand() -> None:
    # 12 hourly pairs, 4h outcomes (rows less than 4h apart overlap); d = B - A per pair:
    # a run of three +1, one -1 alone, the rest 0. Overlap long-run sum of d:
    # the run: 3 squares + 2 * (3 neighbour products) = 9; the lone -1: 1; cross terms with
    # the run: the -1 sits 5h after the run's end, so none. long_run = 10, D = 4.
    d = np.array([1, 1, 1, 0, 0, 0, 0, 0, -1, 0, 0, 0])
    right_a = (d < 0).astype(float)
    right_b = (d > 0).astype(float)
    layout = OverlapLayout(np.arange(12) * 3600.0, 4 * 3600.0)
    result = mcnemar_overlap(right_a, right_b, layout)
    assert (result.a_only, result.b_only) == (1, 3)
    assert result.z == pytest.approx(2 / np.sqrt(10))
    assert result.discordant_effective == pytest.approx(16 / 10)
    normal = 2 * stats.norm.sf(2 / np.sqrt(10))
    assert result.p_value == pytest.approx(max(normal, mcnemar_exact(1, 3).p_value))
    # no discordant pair: nothing to test
    none = mcnemar_overlap(right_a * 0, right_a * 0, layout)
    assert (none.p_value, none.discordant_effective, none.z) == (1.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        mcnemar_overlap(right_a[:5], right_b[:5], layout)


def test_mcnemar_overlap_is_never_below_the_exact_test() -> None:
    # small counts, no overlap: the normal p-value alone (0.035) would undercut the exact
    # test (0.065); the corrected test never claims more than the naive one
    d = np.array([1] * 9 + [-1] * 2 + [0] * 9)
    layout = OverlapLayout(np.arange(d.size) * 3600.0, 3600.0)
    result = mcnemar_overlap((d < 0).astype(float), (d > 0).astype(float), layout)
    assert result.p_value == pytest.approx(mcnemar_exact(2, 9).p_value)
    assert result.discordant_effective == 11


def test_circular_blocks_stay_within_a_symbol_and_draw_n_rows() -> None:
    # 7 rows of symbol 0 then 5 of symbol 1, blocks of 3: every resample has 12 draws and is
    # made of runs of consecutive rows that wrap round within their symbol
    groups = np.array([0] * 7 + [1] * 5)
    draw = significance._circular_block_counts(groups, 3)
    counts = draw(np.random.default_rng(1), 200)
    assert counts.shape == (200, 12)
    assert (counts.sum(axis=1) == 12).all()
    # a block drawn at row 6 (the last of symbol 0) wraps to rows 0 and 1, never row 7
    rng = np.random.default_rng(2)
    single = significance._circular_block_counts(np.array([0] * 7 + [1] * 5), 12)
    for _ in range(20):
        one = single(rng, 1)[0]
        # one block of 12 rows inside one symbol: only that symbol's rows are drawn
        assert (one[:7].sum() == 12) != (one[7:].sum() == 12)


def test_block_bootstrap_drops_missing_rows_and_checks_lengths() -> None:
    rng = np.random.default_rng(4)
    first, second, actual = rng.standard_normal((3, 60))
    first[5] = np.nan
    times = np.arange(60) * 900.0
    result = block_bootstrap_ic_difference(first, second, actual, times, 4 * 3600.0, resamples=50)
    assert result.n == 59 and result.block_length == 16
    with pytest.raises(ValueError):
        block_bootstrap_ic_difference(first, second, actual, times[:10], 3600.0)
    short = block_bootstrap_ic_difference([1.0, 2.0], [2.0, 1.0], [1.0, 2.0], [0.0, 1.0], 60.0)
    assert (short.low, short.block_length, short.n) == (None, None, 2)
