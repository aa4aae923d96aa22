"""Overlap-corrected statistics: the long-run sums against a brute-force double sum, the
coverage of the corrected interval on simulated overlapping outcomes, and the corrected
figures of ``accuracy`` and ``analyze`` on both backends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from scipy import stats
from sqlalchemy.engine import Engine

from mlpred_cli.analysis.overlap import (
    OverlapLayout,
    correlation_effective_sizes,
    overlap_proportion,
    spearman_p_value,
    spearman_p_values,
)
from mlpred_cli.analysis.prediction_views import accuracy_table, analyze
from mlpred_cli.errors import InputError
from tests.cli_helpers import run_cli
from tests.factories import insert_predictions, prediction_row

QUARTER = 900.0
START = datetime(2026, 3, 1, tzinfo=UTC)


def _brute_force(
    e: np.ndarray, t: np.ndarray, g: np.ndarray, window: float
) -> tuple[float, float, float]:
    lag0 = overlap = bartlett = 0.0
    for i in range(e.size):
        for j in range(e.size):
            if g[i] != g[j]:
                continue
            distance = abs(t[i] - t[j])
            if i == j:
                lag0 += e[i] * e[i]
            if distance < window:
                overlap += e[i] * e[j]
                bartlett += (1 - distance / window) * e[i] * e[j]
    return lag0, overlap, bartlett


def test_long_run_sums_equal_the_double_sum_over_overlapping_pairs() -> None:
    rng = np.random.default_rng(3)
    n = 160
    times = np.sort(rng.uniform(0, 40 * QUARTER, n)).round(0)
    times[10:14] = times[10]  # several rows at one time
    groups = rng.choice(["BTC", "ETH", "SOL"], n)
    shuffle = rng.permutation(n)  # rows in any order
    times, groups = times[shuffle], groups[shuffle]
    values = rng.standard_normal((3, n))
    layout = OverlapLayout(times, 4 * QUARTER, groups)
    lag0, long_run, kernel = layout.long_run_sums(values)
    for row in range(3):
        expected_lag0, expected_overlap, expected_bartlett = _brute_force(
            values[row], times, groups, 4 * QUARTER
        )
        assert lag0[row] == pytest.approx(expected_lag0, rel=1e-9)
        expected = expected_overlap if expected_overlap > 0 else expected_bartlett
        assert long_run[row] == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert kernel in ("overlap", "bartlett", "mixed")
    # 1-D input gives what the 2-D row gave
    one_lag0, one_long_run, _ = layout.long_run_sums(values[1])
    assert float(one_long_run) == pytest.approx(float(long_run[1]), rel=1e-12)
    assert float(one_lag0) == pytest.approx(float(lag0[1]), rel=1e-12)


def test_bartlett_is_used_when_the_overlap_sum_is_not_positive() -> None:
    # alternating signs inside the window make the overlap-kernel sum negative
    times = np.arange(8) * QUARTER
    values = np.array([1.0, -1.0] * 4)
    layout = OverlapLayout(times, 8 * QUARTER)
    _, long_run, kernel = layout.long_run_sums(values)
    _, overlap, bartlett = _brute_force(values, times, np.zeros(8), 8 * QUARTER)
    assert overlap <= 0
    assert kernel == "bartlett"
    assert float(long_run) == pytest.approx(bartlett)


def _overlapping_hits(rng: np.random.Generator, n: int, lags: int, cut: float) -> np.ndarray:
    """Correctness whose outcome windows overlap by ``lags`` rows: a thresholded moving sum
    of ``lags + 1`` independent increments, P(hit) = 1 - Phi(cut)."""
    increments = rng.standard_normal(n + lags)
    moving = np.convolve(increments, np.ones(lags + 1), "valid") / np.sqrt(lags + 1)
    return np.asarray(moving > cut)


@pytest.mark.parametrize(("lags", "naive_at_most"), [(47, 0.5), (3, 0.85)])
def test_corrected_interval_covers_the_true_accuracy_about_95_percent(
    lags: int, naive_at_most: float
) -> None:
    """12h (47 overlapping rows) and 1h (3) horizons of 15-minute predictions."""
    rng = np.random.default_rng(20261202 + lags)
    cut = 0.3
    truth = 1 - stats.norm.cdf(cut)
    simulations, n = 300, 1500
    covered = naive = 0
    for _ in range(simulations):
        hits = _overlapping_hits(rng, n, lags, cut)
        result = overlap_proportion(hits, np.arange(n) * QUARTER, (lags + 1) * QUARTER)
        assert result.low is not None and result.high is not None
        assert result.naive_low is not None and result.naive_high is not None
        covered += result.low <= truth <= result.high
        naive += result.naive_low <= truth <= result.naive_high
    assert 0.90 <= covered / simulations <= 0.99
    assert naive / simulations <= naive_at_most


def test_independent_rows_keep_their_sample_size() -> None:
    rng = np.random.default_rng(5)
    n = 4000
    result = overlap_proportion(rng.random(n) < 0.55, np.arange(n) * 3600.0, 3600.0)
    assert result.n_effective == n  # no row overlaps another
    assert (result.low, result.high) == pytest.approx((result.naive_low, result.naive_high))


def test_repeated_rows_count_once() -> None:
    """Three model versions scoring the same candle of the same symbol are one outcome."""
    rng = np.random.default_rng(6)
    n = 1000
    hits = np.repeat(rng.random(n) < 0.6, 3)
    times = np.repeat(np.arange(n) * 3600.0, 3)
    result = overlap_proportion(hits, times, 900.0, np.full(3 * n, "BTCUSDT"))
    assert result.n_effective == pytest.approx(n, rel=1e-9)
    # the same rows as three symbols are three independent outcomes each
    spread = overlap_proportion(hits, times, 900.0, np.tile(["A", "B", "C"], n))
    assert spread.n_effective == pytest.approx(3 * n, rel=1e-9)


def test_rank_correlation_effective_size_and_p_values() -> None:
    rng = np.random.default_rng(7)
    n, lags = 3000, 47
    times = np.arange(n) * QUARTER
    layout = OverlapLayout(times, (lags + 1) * QUARTER)
    independent = rng.standard_normal((2, n))
    r, sizes = correlation_effective_sizes(independent[0], independent[1], layout)
    assert 0.85 * n <= sizes[0] <= n
    naive = spearman_p_value(float(r[0]), float(n))
    assert naive == pytest.approx(stats.spearmanr(independent[0], independent[1]).pvalue)
    # a smooth prediction against an overlapping outcome: far fewer independent pairs
    smooth = np.convolve(rng.standard_normal(n + lags), np.ones(lags + 1), "valid")
    outcome = np.convolve(rng.standard_normal(n + lags), np.ones(lags + 1), "valid")
    r, sizes = correlation_effective_sizes(smooth, outcome, layout)
    assert sizes[0] < n / 10
    corrected = spearman_p_value(float(r[0]), float(sizes[0]))
    assert corrected is not None and naive is not None
    assert corrected > spearman_p_value(float(r[0]), float(n))  # type: ignore[operator]
    both = spearman_p_values(np.array([float(r[0]), np.nan]), np.array([sizes[0], 10.0]))
    assert both[0] == pytest.approx(corrected) and np.isnan(both[1])


def test_bad_input_is_refused() -> None:
    with pytest.raises(InputError, match="needs a time"):
        OverlapLayout(np.array([0.0, np.nan]), 900.0)
    with pytest.raises(InputError, match="positive"):
        OverlapLayout(np.array([0.0, 1.0]), 0.0)
    with pytest.raises(InputError, match="same length"):
        overlap_proportion([True, False], [0.0], 900.0)
    # nothing to estimate from (every row right): one outcome per horizon-long block
    certain = overlap_proportion(np.ones(96), np.arange(96) * QUARTER, 48 * QUARTER)
    assert certain.n_effective == 2 and certain.low is not None and certain.low < 0.5
    empty = overlap_proportion(np.array([np.nan]), [0.0], 900.0)
    assert empty.n == 0 and empty.low is None


# ---------------------------------------------------------------- both backends


def _overlapping_rows(count: int, seed: int) -> list[dict[str, Any]]:
    """One symbol every 15 minutes; 12h correctness in runs of 48 (one outcome window),
    15m correctness independent per row."""
    rng = np.random.default_rng(seed)
    window_hits = rng.random(count // 48 + 1) < 0.6
    rows = []
    for index in range(count):
        moment = START + timedelta(minutes=15 * index)
        right_12h = bool(window_hits[index // 48])
        right_15m = bool(rng.random() < 0.6)
        signal = float(rng.normal(0.002 if right_12h else -0.002, 0.001))
        rows.append(
            prediction_row(
                "BTCUSDT",
                moment,
                actual_direction_12h="LONG" if right_12h else "SHORT",
                accuracy_12h=right_12h,
                predicted_return_12h=signal,
                actual_return_12h=0.01 if right_12h else -0.01,
                actual_direction_15m="LONG" if right_15m else "SHORT",
                accuracy_15m=right_15m,
                actual_return_15m=0.001 if right_15m else -0.001,
            )
        )
    return rows


def test_accuracy_table_carries_corrected_intervals(engine: Engine) -> None:
    insert_predictions(engine, _overlapping_rows(960, seed=11))  # 10 days
    window = {"since": START, "until": START + timedelta(days=10)}
    table = accuracy_table(engine, by="symbol", horizons=["15m", "12h"], **window)
    row = table.iloc[0]
    assert row["n_12h"] == 960 and row["n_15m"] == 960
    # 12h: runs of 48 equal outcomes are about 20 independent ones, not 960
    assert row["n_12h_effective"] < 960 / 10
    width = row["accuracy_12h_overlap_high"] - row["accuracy_12h_overlap_low"]
    assert width > 2.5 * (row["accuracy_12h_high"] - row["accuracy_12h_low"])
    assert (
        row["accuracy_12h_overlap_low"] <= row["accuracy_12h"] <= row["accuracy_12h_overlap_high"]
    )
    # 15m: outcomes one row apart do not overlap a 15-minute window
    assert row["n_15m_effective"] == pytest.approx(960, rel=0.05)
    by_day = accuracy_table(engine, by="day", horizons=["12h"], **window)
    assert len(by_day) == 10
    assert (by_day["n_12h_effective"] < by_day["n_12h"] / 4).all()
    naive = accuracy_table(engine, by="symbol", horizons=["12h"], overlap=False, **window)
    assert naive["n_12h_effective"].isna().all()
    assert naive["accuracy_12h_low"].iloc[0] == row["accuracy_12h_low"]


def test_analyze_and_accuracy_commands_show_naive_and_corrected(
    engine: Engine, db_url: str
) -> None:
    insert_predictions(engine, _overlapping_rows(480, seed=12))
    window = ["--since", "2026-03-01", "--until", "2026-03-06"]
    code, out, err = run_cli("--db", db_url, "analyze", *window, "--format", "json")
    assert code == 0, err
    horizons = {h["horizon"]: h for h in json.loads(out)["horizons"]}
    twelve = horizons["12h"]
    assert twelve["n"] == 480
    assert twelve["n_effective"] < 48
    assert twelve["accuracy_overlap_low"] < twelve["accuracy_low"]
    assert twelve["accuracy_overlap_high"] > twelve["accuracy_high"]
    assert twelve["ic_n_effective"] < twelve["ic_n"] / 3
    assert twelve["ic_p_value_overlap"] > twelve["ic_p_value"]
    assert horizons["1h"]["n_effective"] is None  # no 1h outcome in these rows
    report = analyze(engine, since=START, until=START + timedelta(days=5))
    assert report.horizons[3]["n_effective"] == pytest.approx(twelve["n_effective"])

    code, out, err = run_cli("--db", db_url, "accuracy", "--horizon", "12h", *window)
    assert code == 0, err
    assert "effective n" in out and "eff=" in out
    code, out, err = run_cli("--db", db_url, "analyze", *window)
    assert code == 0, err
    assert "naive" in out and "overlap" in out


def test_above_overlap_max_rows_only_the_naive_figures_are_shown(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlpred_cli import config

    insert_predictions(engine, _overlapping_rows(200, seed=13))
    window = {"since": START, "until": START + timedelta(days=3)}
    monkeypatch.setattr(config, "OVERLAP_MAX_ROWS", 199)
    table = accuracy_table(engine, by="symbol", horizons=["12h"], **window)
    assert table["n_12h_effective"].isna().all() and table["accuracy_12h_low"].notna().all()
    report = analyze(engine, **window)
    assert report.horizons[3]["n_effective"] is None and report.horizons[3]["n"] == 200
    assert any("overlap_max_rows" in note for note in report.sources["notes"])
    monkeypatch.setattr(config, "OVERLAP_MAX_ROWS", 200)
    assert (
        accuracy_table(engine, by="symbol", horizons=["12h"], **window)["n_12h_effective"]
        .notna()
        .all()
    )
    assert analyze(engine, **window).horizons[3]["n_effective"] is not None
