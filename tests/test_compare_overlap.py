"""compare-models when outcome windows overlap (12h outcomes every 15 minutes): the corrected
McNemar test and block bootstrap keep their size where the naive ones do not (simulation),
and end to end a difference made of a few overlapping runs is no verdict."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy.engine import Engine

from mlpred_cli.analysis.overlap import OverlapLayout
from mlpred_cli.analysis.significance import (
    block_bootstrap_ic_difference,
    bootstrap_ic_difference,
    horizon_block_length,
    mcnemar_exact,
    mcnemar_overlap,
)
from tests.cli_helpers import run_cli
from tests.factories import insert_predictions, prediction_row

#: Lags of overlap of a 12h outcome at 15-minute rows, and the horizon in seconds.
LAGS = 47
HORIZON_SECONDS = 12 * 3600.0
ROW_SECONDS = 900.0


def _overlapping(rng: np.random.Generator, n: int) -> np.ndarray:
    """A unit-variance series whose neighbours share ``LAGS`` of ``LAGS + 1`` increments (the
    correlation of overlapping 12h outcomes at 15-minute rows)."""
    increments = rng.standard_normal(n + LAGS)
    return np.convolve(increments, np.ones(LAGS + 1), "valid") / np.sqrt(LAGS + 1)


def test_corrected_mcnemar_keeps_its_size_where_the_exact_one_does_not() -> None:
    # two equally good versions: each right when its own overlapping score is above 0.3
    rng = np.random.default_rng(11)
    n, simulations = 2000, 120
    layout = OverlapLayout(np.arange(n) * ROW_SECONDS, HORIZON_SECONDS)
    naive = corrected = 0
    for _ in range(simulations):
        right_a = _overlapping(rng, n) > 0.3
        right_b = _overlapping(rng, n) > 0.3
        result = mcnemar_overlap(right_a, right_b, layout)
        naive += mcnemar_exact(result.a_only, result.b_only).p_value < 0.05
        corrected += result.p_value < 0.05
        assert result.discordant_effective < (result.a_only + result.b_only) / 10
    assert naive / simulations > 0.5
    assert corrected / simulations < 0.12


def test_block_bootstrap_covers_a_zero_difference_far_more_often() -> None:
    # equally good predictions, both persistent, of an overlapping outcome
    rng = np.random.default_rng(12)
    n, simulations, rho = 1500, 16, 0.3
    times = np.arange(n) * ROW_SECONDS
    plain = blocks = 0
    for simulation in range(simulations):
        actual = _overlapping(rng, n)
        noise = np.sqrt(1 - rho**2)
        first = rho * actual + noise * _overlapping(rng, n)
        second = rho * actual + noise * _overlapping(rng, n)
        naive = bootstrap_ic_difference(first, second, actual, resamples=200, seed=simulation)
        block = block_bootstrap_ic_difference(
            first, second, actual, times, HORIZON_SECONDS, resamples=200, seed=simulation
        )
        assert block.block_length == LAGS + 1
        assert naive.low is not None and naive.high is not None
        assert block.low is not None and block.high is not None
        plain += naive.low <= 0 <= naive.high
        blocks += block.low <= 0 <= block.high
    assert plain / simulations < 0.5
    assert blocks / simulations >= 0.7
    assert blocks > plain + simulations / 4


def test_without_overlap_the_corrected_tests_are_the_naive_ones() -> None:
    rng = np.random.default_rng(13)
    n = 300
    hourly = np.arange(n) * 3600.0  # 1h outcomes an hour apart: no overlap
    layout = OverlapLayout(hourly, 3600.0)
    right_a, right_b = rng.random(n) < 0.5, rng.random(n) < 0.6
    result = mcnemar_overlap(right_a, right_b, layout)
    exact = mcnemar_exact(result.a_only, result.b_only)
    assert result.p_value == exact.p_value
    assert result.discordant_effective == result.a_only + result.b_only
    assert horizon_block_length(layout) == 1
    first, second, actual = rng.standard_normal((3, n))
    plain = bootstrap_ic_difference(first, second, actual, resamples=200, seed=3)
    block = block_bootstrap_ic_difference(
        first, second, actual, hourly, 3600.0, resamples=200, seed=3
    )
    assert block.block_length == 1 and block.difference == pytest.approx(plain.difference)
    # one-row blocks are single pairs: an interval of the same width, if not the same draws
    assert block.low is not None and block.high is not None
    assert plain.low is not None and plain.high is not None
    assert block.high - block.low == pytest.approx(plain.high - plain.low, rel=0.25)


def test_block_bootstrap_is_reproducible_and_stays_within_each_symbol() -> None:
    rng = np.random.default_rng(14)
    n = 400
    times = np.tile(np.arange(n // 2) * ROW_SECONDS, 2)
    symbols = np.repeat(["BTCUSDT", "ETHUSDT"], n // 2)
    first, second, actual = rng.standard_normal((3, n))
    runs = [
        block_bootstrap_ic_difference(
            first, second, actual, times, HORIZON_SECONDS, symbols, resamples=100, seed=5
        )
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    assert runs[0].block_length == LAGS + 1 and runs[0].n == n
    other = block_bootstrap_ic_difference(
        first, second, actual, times, HORIZON_SECONDS, symbols, resamples=100, seed=6
    )
    assert other.low != runs[0].low


NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)

#: Per run of 48 candles (one 12h horizon): who was right (A, B).
RUNS = [
    (False, True),
    (True, True),
    (False, True),
    (False, False),
    (True, False),
    (True, True),
    (False, True),
    (False, False),
]


def _plant_overlapping_runs(engine: Engine) -> None:
    """8 runs of 48 fifteen-minute candles on BTCUSDT, 12h outcomes known: B alone right in
    3 runs, A alone in 1: 144 vs 48 discordant pairs, but only 4 runs of them."""
    rows = []
    for index in range(len(RUNS) * (LAGS + 1)):
        right_a, right_b = RUNS[index // (LAGS + 1)]
        moment = NOW - timedelta(hours=12) - timedelta(minutes=15 * index)
        market_up = (index // 24) % 2 == 0
        for version, right in (("v1", right_a), ("v2", right_b)):
            calls_up = market_up == right
            rows.append(
                prediction_row(
                    "BTCUSDT",
                    moment,
                    model_version=version,
                    direction_12h="LONG" if calls_up else "SHORT",
                    direction_12h_confidence=0.7,
                    predicted_return_12h=(0.004 if calls_up else -0.004) + index * 1e-6,
                    actual_direction_12h="LONG" if market_up else "SHORT",
                    actual_return_12h=(0.01 if market_up else -0.01) + index * 1e-6,
                    accuracy_12h=right,
                )
            )
    insert_predictions(engine, rows)


def test_overlapping_runs_are_significant_only_naively(engine: Engine, db_url: str) -> None:
    _plant_overlapping_runs(engine)
    arguments = ("--db", db_url, "compare-models", "v1", "v2", "--horizon", "12h")
    code, out, err = run_cli(*arguments, "--format", "json")
    assert code == 0, err
    (item,) = json.loads(out)["horizons"]
    assert item["test"] == "mcnemar_exact" and item["pairs"] == 384
    assert (item["a_only_correct"], item["b_only_correct"]) == (48, 144)
    # naive: 144 vs 48 independent discordant pairs is overwhelming
    assert item["p_value"] < 1e-9 and item["better_naive"] == "B"
    # corrected: four runs of 48 overlapping pairs, each as one: D_eff = 192^2 / (4 * 48^2)
    assert item["discordant_effective"] == pytest.approx(4.0)
    assert item["z_overlap"] == pytest.approx(1.0)
    assert item["p_value_overlap"] > 0.05 and item["better"] is None
    assert "significant only if overlapping outcomes were independent" in item["verdict"]
    assert item["verdict"].startswith("no significant difference at 12h (+25.0 pts")
    # blocks of one horizon: a wider IC interval than single pairs give
    assert item["block_length"] == LAGS + 1
    naive_width = item["ic_difference_high"] - item["ic_difference_low"]
    block_width = item["ic_difference_high_overlap"] - item["ic_difference_low_overlap"]
    assert block_width > 1.5 * naive_width
    for side in ("a", "b"):
        metrics = item[side]
        assert metrics["n_effective"] < metrics["n"] / 5
        assert metrics["accuracy_overlap_low"] < metrics["accuracy_low"]
        assert metrics["accuracy_overlap_high"] > metrics["accuracy_high"]

    code, out, err = run_cli(*arguments, env={"COLUMNS": "80"})
    assert code == 0, err
    assert "better at" not in out
    assert "significant only if overlapping outcomes were independent" in out
    assert "accuracy (naive 95% CI)" in out and "accuracy (overlap 95% CI)" in out
    assert "McNemar naive" in out and "McNemar overlap" in out
    assert "left out" not in out  # every table fits 80 columns
    assert "2.4e-12" in out and "0.317" in out  # the naive and the corrected p-value
