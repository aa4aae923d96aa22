"""The drift statistics of ``analysis.drift``: hand-computed PSI / JS, null rejection rates
near alpha at every window size (where a constant threshold fails), effective sizes for
autocorrelated series, power against a real shift, ties, NaN, categorical mixes and the
seeded bootstrap."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats
from scipy.signal import lfilter
from sqlalchemy.engine import Engine

from mlpred_cli.analysis.drift import (
    autocorrelation_time,
    bin_shares,
    categorical_drift,
    continuous_drift,
    effective_size,
    floored_shares,
    js_distance,
    psi,
    reference_edges,
    scaled_wasserstein,
)
from mlpred_cli.analysis.prediction_views import analyze
from mlpred_cli.errors import NotEnoughData
from tests.factories import insert_predictions, prediction_row


def _ar1(size: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    """A stationary Gaussian AR(1) series with unit variance."""
    noise = rng.normal(size=size) * math.sqrt(1 - phi**2)
    start = rng.normal()
    return np.asarray(lfilter([1.0], [1.0, -phi], noise, zi=[start * phi])[0])


def test_psi_and_js_by_hand() -> None:
    reference, current = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    expected_psi = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi(reference, current) == pytest.approx(expected_psi)  # 0.2747
    middle = np.array([0.375, 0.625])
    kl_r = sum(p * math.log(p / q) for p, q in zip(reference, middle, strict=True))
    kl_c = sum(p * math.log(p / q) for p, q in zip(current, middle, strict=True))
    assert js_distance(reference, current) == pytest.approx(math.sqrt((kl_r + kl_c) / 2))
    assert psi(reference, reference) == 0.0
    # an empty bin counts as half a row: finite PSI
    shares = floored_shares([4, 0])
    assert shares == pytest.approx([4 / 4.5, 0.5 / 4.5])
    assert math.isfinite(psi(reference, shares))


def test_edges_are_reference_quantiles_and_ties_collapse() -> None:
    reference = np.arange(1, 101, dtype=float)
    edges = reference_edges(reference, 4)
    assert edges == pytest.approx([25.75, 50.5, 75.25])
    assert bin_shares(reference, edges) == pytest.approx([0.25, 0.25, 0.25, 0.25])
    tied = np.r_[np.zeros(80), np.arange(1, 21, dtype=float)]  # 80 % zeros
    assert reference_edges(tied, 10).size + 1 < 10
    assert reference_edges(np.full(50, 3.0), 10) == pytest.approx([3.0, 3.0])


def _null_rates(size: int, seeds: int, alpha: float) -> dict[str, float]:
    hits = {"psi": 0, "js": 0, "wasserstein": 0, "ks": 0}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        test = continuous_drift(
            "x", rng.normal(size=size), rng.normal(size=size), alpha=alpha, resamples=40, seed=seed
        )
        hits["psi"] += test.p_value < alpha
        hits["js"] += test.js_distance > test.js_threshold
        assert test.wasserstein is not None and test.wasserstein_threshold is not None
        hits["wasserstein"] += test.wasserstein > test.wasserstein_threshold
        hits["ks"] += test.ks_p_value is not None and test.ks_p_value < alpha
    return {name: count / seeds for name, count in hits.items()}


@pytest.mark.parametrize("size", [100, 1_000])
def test_null_rejection_rate_is_alpha_for_small_and_medium_windows(size: int) -> None:
    # 300 iid null pairs at alpha = 0.05: 15 rejections expected, sd 3.8; the band
    # [0.02, 0.09] is about -3.4 .. +4.6 sd (bootstrap thresholds add their own noise)
    rates = _null_rates(size, 300, 0.05)
    for name in ("psi", "js", "wasserstein"):
        assert 0.02 <= rates[name] <= 0.09, (name, rates)
    assert rates["ks"] <= 0.09  # KS with ties-free asymptotics is slightly conservative
    if size == 100:
        # the constant threshold PSI >= 0.1 fires on most null windows of 100 rows
        rng = np.random.default_rng(7)
        fired = [
            continuous_drift("x", rng.normal(size=100), rng.normal(size=100)).psi >= 0.1
            for _ in range(40)
        ]
        assert np.mean(fired) > 0.5


def test_null_p_values_are_uniform_for_big_windows() -> None:
    # 24 null pairs of 50,000 rows: the PSI p-values are uniform (KS test against U(0,1)
    # at 0.001), none below 0.001, and the threshold is far below a constant 0.1
    p_values, thresholds = [], []
    for seed in range(24):
        rng = np.random.default_rng(100 + seed)
        test = continuous_drift(
            "x", rng.normal(size=50_000), rng.normal(size=50_000), resamples=20, seed=seed
        )
        p_values.append(test.p_value)
        thresholds.append(test.psi_threshold)
        assert test.ks_statistic is None  # beyond KS_MAX_ROWS
    assert stats.kstest(p_values, "uniform").pvalue > 0.001
    assert min(p_values) > 0.001
    assert max(thresholds) < 0.002


def test_autocorrelated_null_stays_near_alpha_thanks_to_effective_sizes() -> None:
    # AR(1) with phi = 0.9: tau of the values is (1 + phi) / (1 - phi) = 19; the bin
    # indicators' is about 4. 120 null pairs of 4,000 rows at alpha 0.05: 6 expected
    # (sd 2.4); rows counted as independent reject most of them.
    alpha, seeds, size = 0.05, 120, 4_000
    psi_hits = naive_hits = wasserstein_hits = 0
    taus = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        test = continuous_drift(
            "x", _ar1(size, 0.9, rng), _ar1(size, 0.9, rng), alpha=alpha, resamples=40, seed=seed
        )
        taus.append(test.tau_reference)
        psi_hits += test.p_value < alpha
        naive = stats.chi2.sf(test.psi / (2 / size), test.bins - 1)
        naive_hits += naive < alpha
        assert test.wasserstein is not None and test.wasserstein_threshold is not None
        wasserstein_hits += test.wasserstein > test.wasserstein_threshold
    assert 3.0 < np.mean(taus) < 6.0
    assert psi_hits / seeds <= 0.11
    assert wasserstein_hits / seeds <= 0.11
    assert naive_hits / seeds > 0.5


def test_autocorrelation_time_of_ar1_and_groups() -> None:
    rng = np.random.default_rng(3)
    series = _ar1(200_000, 0.9, rng)
    assert autocorrelation_time(series) == pytest.approx(19.0, rel=0.15)
    assert autocorrelation_time(rng.normal(size=20_000)) == pytest.approx(1.0, abs=0.1)
    # two symbols interleaved in time: per group each is AR(1); mixed it would look iid
    first, second = _ar1(5_000, 0.9, rng), _ar1(5_000, 0.9, rng)
    values = np.ravel(np.column_stack([first, second]))
    groups = np.tile(["A", "B"], 5_000)
    assert autocorrelation_time(values, groups) == pytest.approx(19.0, rel=0.35)
    assert effective_size(values, groups) == pytest.approx(10_000 / 19, rel=0.35)
    edges = reference_edges(values, 10)
    assert effective_size(values, groups, edges=edges) > effective_size(values, groups)


@pytest.mark.parametrize("size", [200, 2_000, 50_000])
def test_half_sd_mean_shift_is_flagged(size: int) -> None:
    rng = np.random.default_rng(11)
    test = continuous_drift("x", rng.normal(size=size), rng.normal(0.5, 1.0, size=size))
    assert test.p_value < 0.001
    assert test.psi > test.psi_threshold
    assert test.js_distance > test.js_threshold
    assert test.wasserstein is not None and test.wasserstein_threshold is not None
    assert test.wasserstein > test.wasserstein_threshold
    # sampling error of the scaled W1 at 200 rows is about 0.1
    assert test.effect == pytest.approx(0.5, abs=0.15 if size == 200 else 0.05)
    assert (test.ks_p_value is None) == (size > 2_000)


def test_result_reports_sizes_and_method() -> None:
    rng = np.random.default_rng(5)
    test = continuous_drift("features_mean", rng.normal(size=500), rng.normal(size=300))
    document = test.to_dict()
    assert (document["n"], document["m"], document["bins"]) == (500, 300, 10)
    assert document["n_eff"] == pytest.approx(500, rel=0.1)
    assert "n_eff=" in document["threshold_method"]
    assert "alpha=0.01" in document["threshold_method"]
    # independent rows: PSI threshold = (1/n + 1/m) chi2_0.99(9)
    expected = (1 / test.n_eff + 1 / test.m_eff) * stats.chi2.isf(0.01, 9)
    assert test.psi_threshold == pytest.approx(expected, rel=0.15)


def test_ties_and_constant_reference() -> None:
    rng = np.random.default_rng(2)
    tied = rng.integers(0, 3, size=2_000).astype(float)  # three values only
    test = continuous_drift("x", tied, rng.integers(0, 3, size=2_000).astype(float))
    assert test.bins == 3
    assert test.p_value > 0.001
    constant = continuous_drift("x", np.full(200, 1.0), np.full(200, 1.0))
    assert constant.wasserstein is None and constant.effect is None
    assert constant.psi == 0.0 and constant.p_value == 1.0
    current = rng.permutation(np.r_[np.full(150, 1.0), np.full(50, 2.0)])
    moved = continuous_drift("x", np.full(200, 1.0), current)
    assert moved.p_value < 0.001


def test_step_inside_the_current_window_is_still_flagged() -> None:
    # a level change halfway through the current window would pass for autocorrelation
    # (and hide itself behind a small m_eff) if the window were centred on its overall
    # mean; centred on stretches, its rows stay independent and the step is caught
    rng = np.random.default_rng(12)
    current = np.r_[rng.normal(size=2_000), rng.normal(0.5, 1.0, size=2_000)]
    test = continuous_drift("x", rng.normal(size=4_000), current)
    assert test.tau_current < 1.5
    assert test.p_value < 0.001


def test_nan_values_are_dropped_and_counted() -> None:
    rng = np.random.default_rng(4)
    reference = np.r_[rng.normal(size=500), [np.nan] * 7, [np.inf]]
    current = np.r_[rng.normal(size=400), [np.nan] * 3]
    test = continuous_drift("x", reference, current)
    assert (test.n, test.m) == (500, 400)
    assert (test.dropped_reference, test.dropped_current) == (8, 3)
    assert math.isfinite(test.psi)
    with pytest.raises(NotEnoughData, match="current window"):
        continuous_drift("x", rng.normal(size=500), np.r_[rng.normal(size=10), [np.nan] * 90])


def test_categorical_mix_change_is_detected_and_identical_mix_is_not() -> None:
    rng = np.random.default_rng(8)
    kinds = ["LONG", "SHORT", "NEUTRAL"]
    reference = rng.choice(kinds, size=3_000, p=[0.4, 0.4, 0.2])
    same = rng.choice(kinds, size=3_000, p=[0.4, 0.4, 0.2])
    changed = rng.choice(kinds, size=3_000, p=[0.3, 0.4, 0.3])
    stable = categorical_drift("signal_type", reference, same, categories=kinds)
    assert stable.p_value > 0.01 and not stable.significant
    assert stable.kind == "categorical" and stable.wasserstein is None
    moved = categorical_drift("signal_type", reference, changed, categories=kinds)
    assert moved.p_value < 0.001 and moved.significant
    assert moved.effect == pytest.approx(0.1, abs=0.03)  # total variation distance
    assert moved.categories == ("LONG", "SHORT", "NEUTRAL")
    with_missing = categorical_drift("signal_type", [*reference, None, ""], [*same, float("nan")])
    assert (with_missing.dropped_reference, with_missing.dropped_current) == (2, 1)


def test_bootstrap_is_reproducible_with_its_seed() -> None:
    rng = np.random.default_rng(9)
    reference, current = rng.normal(size=3_000), rng.normal(size=3_000)
    first = continuous_drift("x", reference, current, seed=1)
    again = continuous_drift("x", reference, current, seed=1)
    other = continuous_drift("x", reference, current, seed=2)
    assert first == again
    assert first.wasserstein_threshold != other.wasserstein_threshold
    assert first.wasserstein == pytest.approx(scaled_wasserstein(reference, current))


def test_speed_of_one_big_test() -> None:
    # the brief asks for well under 0.5 s at 50,000 vs 50,000 rows; 1 s leaves room for
    # a loaded test machine
    import time

    rng = np.random.default_rng(10)
    reference, current = rng.normal(size=50_000), rng.normal(size=50_000)
    started = time.perf_counter()
    continuous_drift("x", reference, current)
    assert time.perf_counter() - started < 1.0


# ---------------------------------------------------------------- analyze's input health


def _health_rows(shift: float) -> list[dict[str, object]]:
    """Two symbols, one prediction each per 15 minutes over 4 days; features_mean iid
    normal, plus ``shift`` in the second half (by time)."""
    rng = np.random.default_rng(21)
    now = datetime.now(UTC).replace(microsecond=0)
    rows = []
    steps = 384
    for symbol in ("BTCUSDT", "ETHUSDT"):
        for step in range(steps):
            moment = now - timedelta(minutes=15 * (steps - step))
            level = shift if step >= steps // 2 else 0.0
            rows.append(
                prediction_row(
                    symbol,
                    moment,
                    features_mean=float(rng.normal(level, 1.0)),
                    features_std=float(rng.normal(1.0, 0.1)),
                )
            )
    return rows


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_analyze_input_health_reports_drift_between_halves(engine: Engine, shift: float) -> None:
    insert_predictions(engine, _health_rows(shift))
    health = analyze(engine, days=5).input_health
    mean_drift, std_drift = health["drift"]["features_mean"], health["drift"]["features_std"]
    assert "features_mean_drift" in health  # the difference of half means stays
    assert mean_drift["n"] + mean_drift["m"] == 768
    assert mean_drift["n_eff"] <= mean_drift["n"]
    assert "n_eff=" in mean_drift["threshold_method"]
    assert std_drift["verdict"] == "stable"
    if shift:
        assert mean_drift["verdict"] == "shifted"
        assert mean_drift["p_value"] < 1e-6
        assert mean_drift["effect"] == pytest.approx(1.0, abs=0.25)
    else:
        assert mean_drift["verdict"] == "stable"
        assert mean_drift["p_value"] > 0.01


def test_analyze_input_drift_is_unknown_for_a_tiny_selection(engine: Engine) -> None:
    now = datetime.now(UTC)
    insert_predictions(
        engine, [prediction_row("BTCUSDT", now - timedelta(hours=h)) for h in (1, 2, 3)]
    )
    drift = analyze(engine, days=1).input_health["drift"]
    assert drift["features_mean"]["verdict"] == "unknown"
    assert (
        "effective rows" in drift["features_mean"]["reason"]
        or "finite" in drift["features_mean"]["reason"]
    )
