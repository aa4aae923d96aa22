"""The metric functions against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mlpred_cli.analysis.metrics import (
    base_rate,
    brier_score,
    confidence_bin_index,
    confidence_bin_labels,
    expected_calibration_error,
    information_coefficient,
    proportion,
    wilson_interval,
    wilson_intervals,
)


def test_wilson_interval_eight_of_ten() -> None:
    # z = 1.959964; centre = (0.8 + z²/20) / (1 + z²/10); half = z/(1 + z²/10) * sqrt(...)
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.490162, abs=1e-5)
    assert high == pytest.approx(0.943318, abs=1e-5)


def test_wilson_interval_matches_scipy_and_edges() -> None:
    for successes, total in [(0, 5), (5, 5), (2, 3), (37, 120)]:
        expected = stats.binomtest(successes, total).proportion_ci(method="wilson")
        assert wilson_interval(successes, total) == pytest.approx((expected.low, expected.high))
    low, high = wilson_interval(0, 5)
    assert low == 0.0
    assert high == pytest.approx(3.841459 / (5 + 3.841459), abs=1e-6)  # z² / (n + z²)
    assert wilson_interval(0, 0) == (None, None)
    with pytest.raises(ValueError):
        wilson_interval(4, 3)


def test_wilson_intervals_are_the_scalar_functions_floats() -> None:
    rng = np.random.default_rng(5)
    totals = rng.integers(0, 5_000, 2_000)
    totals[:20] = 0
    successes = np.minimum(totals, (rng.random(2_000) * (totals + 1)).astype(np.int64))
    shares, lows, highs = wilson_intervals(successes, totals)
    for hits, n, share, low, high in zip(successes, totals, shares, lows, highs, strict=True):
        expected = (proportion(int(hits), int(n)), *wilson_interval(int(hits), int(n)))
        assert (share, low, high) == expected
    assert shares[0] is None and lows[0] is None and isinstance(highs[-1], float)
    with pytest.raises(ValueError, match="5 successes out of 4"):
        wilson_intervals([1, 5], [2, 4])


def test_wilson_interval_narrows_with_lower_confidence() -> None:
    wide = wilson_interval(30, 50, 0.99)
    narrow = wilson_interval(30, 50, 0.80)
    assert wide[0] is not None and narrow[0] is not None
    assert wide[0] < narrow[0] < 0.6


def test_proportion() -> None:
    assert proportion(1, 4) == 0.25
    assert proportion(0, 0) is None


def test_information_coefficient_with_ties() -> None:
    # ranks: predicted 1..5, actual [1, 2, 3.5, 5, 3.5] -> r = 8 / sqrt(10 * 9.5)
    result = information_coefficient([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])
    assert result.n == 5
    assert result.ic == pytest.approx(8 / math.sqrt(95))


def test_information_coefficient_drops_incomplete_pairs() -> None:
    result = information_coefficient([0.3, None, 0.1, 0.2, np.nan], [3.0, 1.0, 1.0, 2.0, 5.0])
    assert result.n == 3
    assert result.ic == pytest.approx(1.0)
    assert information_coefficient([3, 2, 1], [1, 2, 3]).ic == pytest.approx(-1.0)


def test_information_coefficient_undefined_cases() -> None:
    assert information_coefficient([1, 2], [1, 2]).ic is None
    constant = information_coefficient([0.1, 0.1, 0.1, 0.1], [1, 2, 3, 4])
    assert constant.ic is None
    assert constant.n == 4
    assert information_coefficient([], []).n == 0


def test_brier_score() -> None:
    assert brier_score([0.9, 0.6, 0.8], [True, False, True]) == pytest.approx(0.41 / 3)
    assert brier_score([0.5, np.nan], [1, 1]) == pytest.approx(0.25)
    assert brier_score([], []) is None


def test_expected_calibration_error() -> None:
    # bin [0.9, 1.0]: 0.95, 0.95, 1.0 -> acc 2/3, conf 0.9667; bin [0.6, 0.7): acc 1, conf 0.65
    ece = expected_calibration_error([0.95, 0.95, 0.65, 0.65, 1.0], [1, 0, 1, 1, 1])
    assert ece == pytest.approx(3 / 5 * 0.3 + 2 / 5 * 0.35)
    assert expected_calibration_error([], []) is None


def test_expected_calibration_error_puts_edge_values_in_the_upper_bin() -> None:
    # 0.6 and 0.65 share the bin [0.6, 0.7): acc 0.5, conf 0.625 -> 0.125
    assert expected_calibration_error([0.6, 0.65], [1, 0]) == pytest.approx(0.125)
    # a perfectly calibrated set
    assert expected_calibration_error([0.5, 0.5], [1, 0]) == pytest.approx(0.0)


def test_confidence_bin_index_edges() -> None:
    values = [0.0, 0.49, 0.5, 0.6, 0.7, 0.79, 0.8, 0.999, 1.0, 1.01, -0.1, np.nan]
    assert confidence_bin_index(values).tolist() == [0, 0, 1, 2, 3, 3, 4, 4, 4, -1, -1, -1]
    assert confidence_bin_labels() == [
        "[0, 0.5)",
        "[0.5, 0.6)",
        "[0.6, 0.7)",
        "[0.7, 0.8)",
        "[0.8, 1.0]",
    ]


def test_base_rate() -> None:
    assert base_rate({"LONG": 3, "SHORT": 1, "NEUTRAL": 0}) == 0.75
    assert base_rate({"LONG": 0, "SHORT": 0}) is None
