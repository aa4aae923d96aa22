"""Significance of feature importance: Benjamini-Hochberg q-values (against scipy), p-values
at the overlap-corrected effective sample size (pure noise stays insignificant, a planted
feature does not, overlap shrinks n), rank stability, and ``feature-importance
compute`` / ``show`` on both backends."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import signal, stats
from sqlalchemy.engine import Engine

from mlpred_cli.analysis.feature_importance import spearman_with_returns
from mlpred_cli.analysis.importance_significance import (
    benjamini_hochberg,
    feature_significance,
    rank_stability,
)
from mlpred_cli.analysis.overlap import (
    OverlapLayout,
    correlation_effective_sizes,
    spearman_p_values,
)
from mlpred_cli.derive.importance_snapshot import build_snapshot
from mlpred_cli.errors import InputError
from mlpred_cli.render.model_views import significance_line
from mlpred_cli.store.importance_snapshots import write_snapshot
from tests.cli_helpers import run_cli
from tests.factories import insert_predictions, prediction_row

QUARTER_HOUR = 900.0
NOW = datetime.now(UTC)


# ---------------------------------------------------------------- Benjamini-Hochberg


@pytest.mark.parametrize("seed", range(5))
def test_bh_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(size=50), rng.uniform(0, 0.01, size=10), [0.02, 0.02, 1.0]])
    rng.shuffle(p)
    q = benjamini_hochberg(p)
    assert q == pytest.approx(stats.false_discovery_control(p, method="bh"), abs=1e-12)
    order = np.argsort(p)
    assert np.all(np.diff(q[order]) >= -1e-15)  # monotone in p
    assert np.all(q >= p) and np.all(q <= 1)


def test_bh_leaves_nan_out_of_the_family() -> None:
    p = np.array([0.01, np.nan, 0.04, 0.03, np.nan])
    q = benjamini_hochberg(p)
    assert np.isnan(q[[1, 4]]).all()
    expected = stats.false_discovery_control([0.01, 0.04, 0.03], method="bh")
    assert q[[0, 2, 3]] == pytest.approx(expected)  # m = 3, not 5
    assert np.isnan(benjamini_hochberg([np.nan, np.nan])).all()
    assert benjamini_hochberg([]).size == 0
    with pytest.raises(InputError):
        benjamini_hochberg([0.5, 1.5])


# ---------------------------------------------------------------- noise and a planted feature


def _noise_case(seed: int, *, features: int = 240, n: int = 1000, steps: int = 4, phi: float = 0.9):  # type: ignore[no-untyped-def]
    """One symbol, 15-minute rows, outcome windows of ``steps`` rows (overlapping returns:
    sums of the next ``steps`` increments); features are AR(1) noise with coefficient
    ``phi``, feature 7 is the actual return plus as much noise."""
    rng = np.random.default_rng(seed)
    increments = rng.normal(size=n + steps)
    returns = np.convolve(increments, np.ones(steps), "valid")[1 : n + 1]
    shocks = rng.normal(size=(features, n + 200))
    matrix = signal.lfilter([1.0], [1.0, -phi], shocks, axis=1)[:, 200:]
    planted = matrix.copy()
    if features > 7:
        planted[7] = returns + rng.normal(scale=returns.std(), size=n)
    return matrix, planted, returns, np.arange(n) * QUARTER_HOUR


@pytest.mark.parametrize("seed", range(3))
def test_pure_noise_leaves_at_most_a_handful_and_the_planted_feature_is_found(seed: int) -> None:
    noise, planted, returns, times = _noise_case(seed)
    window = 4 * QUARTER_HOUR  # 1h horizon

    result = feature_significance(noise, returns, times, window)
    assert int(result.significant(0.05).sum()) <= 3
    assert np.all(result.n_effective < 1000)  # overlapping rows count as fewer
    # Treating the 1,000 overlapping rows as independent finds many "discoveries".
    naive_q = benjamini_hochberg(spearman_p_values(result.correlations, 1000))
    assert int((naive_q < 0.05).sum()) >= 10

    found = feature_significance(planted, returns, times, window)
    assert found.significant(0.05)[7]
    assert found.q_values[7] < 1e-6
    assert int(found.significant(0.05).sum()) <= 4  # feature 7 and at most a few false ones


def test_overlap_shrinks_the_sample_and_the_spurious_significance() -> None:
    # 12h outcomes on 15-minute rows share up to 47/48 of their window; the feature is
    # nearly a random walk. Two such series correlate by chance far more than n suggests.
    naive_small, corrected_small, sizes = 0, 0, []
    for seed in range(20):
        noise, _, returns, times = _noise_case(seed, features=1, n=2000, steps=48, phi=0.995)
        result = feature_significance(noise, returns, times, 48 * QUARTER_HOUR)
        naive = spearman_p_values(result.correlations, 2000)[0]
        naive_small += naive < 0.05
        corrected_small += result.p_values[0] < 0.05
        sizes.append(result.n_effective[0])
    assert naive_small >= 10  # most seeds look "significant" at n = 2000
    assert corrected_small <= 5
    assert np.median(sizes) < 2000 / 20  # the effective n is far below n


def test_a_feature_with_missing_values_is_tested_on_its_complete_rows() -> None:
    _, planted, returns, times = _noise_case(4, features=10, n=400)
    holes = planted.copy()
    holes[2, ::3] = np.nan
    holes[5, :] = 1.0  # constant: no test
    result = feature_significance(holes, returns, times, 4 * QUARTER_HOUR)
    keep = np.isfinite(holes[2])
    alone = feature_significance(holes[2:3, keep], returns[keep], times[keep], 4 * QUARTER_HOUR)
    assert result.correlations[2] == pytest.approx(alone.correlations[0])
    assert result.n_effective[2] == pytest.approx(alone.n_effective[0])
    assert result.p_values[2] == pytest.approx(alone.p_values[0])
    assert math.isnan(result.p_values[5]) and math.isnan(result.q_values[5])
    # The complete features' IC is the plain Spearman correlation.
    assert result.correlations[7] == pytest.approx(stats.spearmanr(holes[7], returns).statistic)
    # The constant feature is not part of the family: q over the 9 defined p-values.
    defined = np.isfinite(result.p_values)
    assert result.q_values[defined] == pytest.approx(
        stats.false_discovery_control(result.p_values[defined], method="bh")
    )


def test_fast_path_equals_the_overlap_module_and_the_plain_ic() -> None:
    noise, _, returns, times = _noise_case(6, features=12, n=500)
    noise[1] = np.round(noise[1])  # ties
    noise[2, ::4] = np.nan
    noise[3] = 2.0
    noise[4, :-2] = np.nan  # two complete rows: no test
    result = feature_significance(noise, returns, times, 4 * QUARTER_HOUR)
    complete = [0, 1, *range(5, 12)]
    layout = OverlapLayout(times, 4 * QUARTER_HOUR)
    r, sizes = correlation_effective_sizes(noise[complete], returns, layout)
    assert result.correlations[complete] == pytest.approx(r, abs=1e-12)
    assert result.n_effective[complete] == pytest.approx(sizes, rel=1e-9)
    plain = spearman_with_returns(noise, returns)
    assert np.array_equal(np.isnan(plain), np.isnan(result.correlations))
    assert result.correlations[np.isfinite(plain)] == pytest.approx(plain[np.isfinite(plain)])


def test_symbols_do_not_overlap_each_other() -> None:
    # Two symbols on the same 15-minute grid: as one series every row would overlap twice
    # as many neighbours, so the effective n is smaller than with the symbols kept apart.
    rng = np.random.default_rng(3)
    n = 600
    times = np.repeat(np.arange(n // 2) * QUARTER_HOUR, 2)
    symbols = np.tile(["BTCUSDT", "ETHUSDT"], n // 2)
    returns = np.empty(n)
    features = np.empty((1, n))
    for offset in (0, 1):
        increments = rng.normal(size=n // 2 + 4)
        returns[offset::2] = np.convolve(increments, np.ones(4), "valid")[1 : n // 2 + 1]
        features[0, offset::2] = signal.lfilter([1.0], [1.0, -0.9], rng.normal(size=n // 2))
    apart = feature_significance(features, returns, times, 4 * QUARTER_HOUR, symbols)
    together = feature_significance(features, returns, times, 4 * QUARTER_HOUR)
    assert apart.n_effective[0] > together.n_effective[0]


# ---------------------------------------------------------------- rank stability


def test_rank_stability() -> None:
    ranks = {"a": 1, "b": 2, "c": 3, "d": 4}
    assert rank_stability(ranks, ranks) == pytest.approx(1.0)
    assert rank_stability(ranks, {"a": 4, "b": 3, "c": 2, "d": 1}) == pytest.approx(-1.0)
    # only shared features count: "e" is new, "d" gone
    assert rank_stability({"a": 1, "b": 2, "c": 3, "e": 4}, ranks) == pytest.approx(1.0)
    assert rank_stability({"a": 1, "b": 2}, ranks) is None
    assert rank_stability(ranks, {}) is None
    swapped = {"a": 2, "b": 1, "c": 3, "d": 4}
    assert rank_stability(ranks, swapped) == pytest.approx(
        stats.spearmanr([1, 2, 3, 4], [2, 1, 3, 4]).statistic
    )


def test_significance_line() -> None:
    line = significance_line(240, 3, 0.05)
    assert line is not None and line.startswith("3 of 240 features significant at q < 0.05")
    assert "noise" not in line
    none = significance_line(240, 0, 0.05)
    assert none is not None and "indistinguishable from noise" in none
    assert significance_line(None, None, 0.05) is None  # no p-values: no claim


# ---------------------------------------------------------------- end to end


def _planted_rows(count: int) -> list[dict[str, object]]:
    """One symbol every 15 minutes; feature 7 follows the 1h return, the rest is noise."""
    rng = np.random.default_rng(5)
    rows = []
    for index in range(count):
        actual = float(rng.normal(0, 0.01))
        vector = [float(v) for v in rng.normal(size=10)]
        vector[7] = actual * 100 + float(rng.normal())
        rows.append(
            prediction_row(
                "BTCUSDT",
                NOW - timedelta(minutes=15 * index),
                features_count=10,
                features_array=vector,
                actual_return_1h=actual,
            )
        )
    return rows


def test_cli_compute_and_show_significance(engine: Engine, db_url: str) -> None:
    insert_predictions(engine, _planted_rows(200))
    code, out, err = run_cli("--db", db_url, "feature-importance", "compute", "--format", "json")
    assert code == 0, err
    rows = {row["feature_name"]: row for row in json.loads(out)}
    best = rows["f7"]
    assert best["importance_rank"] == 1 and best["significant"] is True
    assert best["q_value"] < 0.05 and best["p_value"] <= best["q_value"]
    assert 1 <= best["n_effective"] <= 200
    assert all(row["p_value"] is not None for row in rows.values())
    significant = sum(row["significant"] for row in rows.values())
    assert f"{significant} of 10 features significant at q < 0.05" in err

    code, _, err = run_cli("--db", db_url, "feature-importance", "compute")
    assert code == 0, err
    code, out, err = run_cli("--db", db_url, "feature-importance", "show", "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    snapshot = document["snapshot"]
    assert snapshot["history"] == 2
    assert snapshot["rank_stability"] == pytest.approx(1.0)  # same rows, same ranks
    assert snapshot["tested_features"] == 10
    assert snapshot["significant_features"] == significant
    first = document["features"][0]
    assert first["feature_name"] == "f7" and first["significant"] is True
    assert first["q_value"] == pytest.approx(best["q_value"])

    code, out, err = run_cli("--db", db_url, "feature-importance", "show", env={"COLUMNS": "80"})
    assert code == 0, err
    text = " ".join(out.split())  # the lines wrap at 79 columns
    assert f"{significant} of 10 features significant at q < 0.05" in text
    assert "Rank stability: 1.00" in text
    header = next(line for line in out.splitlines() if "feature" in line and "sig" in line)
    assert " p " in f" {header} " and " q " in f" {header} "
    assert max(len(line) for line in out.splitlines()) <= 80


def test_show_old_snapshot_makes_no_claim(engine: Engine, db_url: str) -> None:
    earlier, later = NOW - timedelta(days=1), NOW
    old = build_snapshot(["rsi", "macd", "atr"], [0.3, 0.2, 0.1], model_version="v1",
                         calculated_at=earlier)  # fmt: skip
    write_snapshot(engine, old)
    code, out, err = run_cli("--db", db_url, "feature-importance", "show", "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["snapshot"]["significant_features"] is None
    assert document["snapshot"]["rank_stability"] is None
    assert {row["p_value"] for row in document["features"]} == {None}
    assert {row["significant"] for row in document["features"]} == {None}
    code, out, _ = run_cli("--db", db_url, "feature-importance", "show")
    assert code == 0 and "significant" not in out and "noise" not in out
    assert "Rank stability: - (no previous snapshot)" in out

    # a newer snapshot whose features are all noise, ranked in reverse
    noise = build_snapshot(["rsi", "macd", "atr"], [0.1, 0.2, 0.3], model_version="v1",
                           calculated_at=later, p_values=[0.5, 0.4, 0.3],
                           q_values=[0.5, 0.5, 0.5])  # fmt: skip
    write_snapshot(engine, noise)
    code, out, _ = run_cli("--db", db_url, "feature-importance", "show")
    assert code == 0
    text = " ".join(out.split())  # the lines wrap at 79 columns
    assert "0 of 3 features significant at q < 0.05" in text
    assert "indistinguishable from noise" in text
    assert "Rank stability: -1.00" in text
