"""McNemar's exact test, the two-proportion z-test and the paired IC bootstrap against
hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlpred_cli.analysis import significance
from mlpred_cli.analysis.significance import (
    bootstrap_ic_difference,
    mcnemar_exact,
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
