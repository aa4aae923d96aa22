"""compare-models on planted datasets: a truly better B is detected (paired and unpaired),
identical versions are not flagged, unknown versions are named, JSON/CSV shapes."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from mlpred_cli.analysis.compare import better_version, compare_versions
from mlpred_cli.errors import InputError
from mlpred_cli.render.model_views import compare_models
from mlpred_cli.render.verdicts import horizon_verdict
from tests.cli_helpers import run_cli
from tests.factories import insert_predictions, prediction_row

NOW = datetime.now(UTC)


def _row(
    version: str,
    symbol: str,
    hour: int,
    correct: bool,
    *,
    market_up: bool = True,
    **extra: object,
) -> dict[str, object]:
    """A 1h call on the candle ``hour`` hours ago: the market went up (LONG, +0.5 %) or down
    (SHORT, -0.5 %); the version called it right when ``correct``."""
    calls_up = market_up == correct
    return prediction_row(
        symbol,
        NOW - timedelta(hours=hour),
        model_version=version,
        direction_1h="LONG" if calls_up else "SHORT",
        direction_1h_confidence=0.7,
        predicted_return_1h=0.004 if calls_up else -0.004,
        actual_direction_1h="LONG" if market_up else "SHORT",
        actual_return_1h=0.005 if market_up else -0.005,
        accuracy_1h=correct,
        **extra,
    )


def _paired(engine: Engine, a_only: int, b_only: int, both: int, neither: int) -> None:
    """Both versions on the same BTCUSDT candles with the given discordant counts; the
    market alternates up and down."""
    outcomes = ([(True, False)] * a_only + [(False, True)] * b_only
                + [(True, True)] * both + [(False, False)] * neither)  # fmt: skip
    rows = []
    for hour, (right_a, right_b) in enumerate(outcomes, start=1):
        up = hour % 2 == 0
        rows.append(_row("v1", "BTCUSDT", hour, right_a, market_up=up, inference_time_ms=4.0))
        rows.append(_row("v2", "BTCUSDT", hour, right_b, market_up=up, inference_time_ms=6.0))
    insert_predictions(engine, rows)


def test_paired_b_truly_better_is_detected(engine: Engine) -> None:
    # 200 candles: only A right on 10, only B right on 60, both right on 90, neither on 40
    _paired(engine, a_only=10, b_only=60, both=90, neither=40)
    result = compare_models(engine, "v1", "v2", days=30, horizons=["1h"])
    (item,) = result.horizons
    assert item.test == "mcnemar_exact"
    assert item.pairs == 200
    assert (item.a_only_correct, item.b_only_correct) == (10, 60)
    assert item.a["n"] == item.b["n"] == 200
    assert item.a["accuracy"] == pytest.approx(100 / 200)
    assert item.b["accuracy"] == pytest.approx(150 / 200)
    assert item.accuracy_difference == pytest.approx(50 / 200)
    assert item.p_value is not None and item.p_value < 1e-8
    assert item.better == "B"
    assert item.verdict.startswith("B better at 1h: +25.0 pts, p = ")
    assert item.a["inference_ms_p50"] == 4.0 and item.b["inference_ms_p50"] == 6.0
    # B's predicted returns follow the outcome more often: a positive IC difference
    assert item.ic_difference is not None and item.ic_difference > 0
    assert item.ic_difference_low is not None and item.ic_difference_low > 0
    # hit rate: every call is directional (LONG), so it equals the accuracy here
    assert item.b["hit_rate"] == pytest.approx(0.75)
    low, high = item.b["accuracy_low"], item.b["accuracy_high"]
    assert low < 0.75 < high
    # 1h outcomes an hour apart do not overlap: the corrected figures are the naive ones
    assert item.p_value_overlap == item.p_value and item.better_naive == "B"
    assert item.discordant_effective == 70 and item.pairs_effective == 200
    assert item.block_length == 1
    assert item.b["n_effective"] == 200
    assert (item.b["accuracy_overlap_low"], item.b["accuracy_overlap_high"]) == pytest.approx(
        (low, high)
    )
    assert "naive" not in item.verdict


def test_paired_metrics_use_the_rows_the_pairs_took(engine: Engine) -> None:
    """A newer row of A on a paired candle that has no outcome yet does not displace the
    scored row the pair was made of: A's n is the number of pairs."""
    _paired(engine, a_only=10, b_only=20, both=30, neither=10)
    later = prediction_row(
        "BTCUSDT",
        NOW - timedelta(hours=1),
        model_version="v1",
        accuracy_1h=None,
        actual_direction_1h=None,
        actual_return_1h=None,
    )
    insert_predictions(engine, [later])
    (item,) = compare_models(engine, "v1", "v2", horizons=["1h"]).horizons
    assert item.pairs == 70
    assert item.a["n"] == item.b["n"] == 70
    assert item.a["accuracy"] == pytest.approx(40 / 70)


def test_identical_versions_are_not_flagged(engine: Engine) -> None:
    _paired(engine, a_only=0, b_only=0, both=70, neither=50)
    (item,) = compare_models(engine, "v1", "v2", horizons=["1h"]).horizons
    assert item.test == "mcnemar_exact"
    assert item.p_value == 1.0
    assert item.better is None
    assert item.verdict.startswith("no significant difference at 1h (+0.0 pts, p = 1.000")
    assert (item.ic_difference, item.ic_difference_low, item.ic_difference_high) == (0, 0, 0)


def test_small_difference_is_not_flagged(engine: Engine) -> None:
    # 6 vs 9 discordant pairs: p = 2 * P(X <= 6 | 15, 1/2) = 0.6072
    _paired(engine, a_only=6, b_only=9, both=40, neither=30)
    (item,) = compare_models(engine, "v1", "v2", horizons=["1h"]).horizons
    assert item.p_value == pytest.approx(0.607239, abs=1e-6)
    assert item.better is None


def test_unpaired_z_test_when_candles_differ(engine: Engine) -> None:
    # A on BTCUSDT (40/100 right), B on ETHUSDT (60/100 right): nothing to pair
    rows = [_row("v1", "BTCUSDT", h, h <= 40) for h in range(1, 101)]
    rows += [_row("v2", "ETHUSDT", h, h <= 60) for h in range(1, 101)]
    insert_predictions(engine, rows)
    comparison = compare_models(engine, "v1", "v2", horizons=["1h"])
    (item,) = comparison.horizons
    assert item.test == "two_proportion_z"
    assert item.pairs == 0
    assert item.z == pytest.approx(2.8284271, rel=1e-6)
    assert item.p_value == pytest.approx(0.0046777, abs=1e-6)
    # different symbols: the difference is not a verdict (it used to say "B better")
    assert item.confounded and item.better is None
    assert item.verdict == (
        "no winner at 1h: 0 paired predictions (fewer than 30); the unpaired comparison "
        "(+20.0 pts, p = 0.005, unpaired z-test) is confounded by what each version "
        "predicted (different symbols or periods, see coverage)"
    )
    # --symbol leaves A alone: no test possible
    (only_a,) = compare_models(engine, "v1", "v2", horizons=["1h"], symbol="BTCUSDT").horizons
    assert only_a.test is None and only_a.b["n"] == 0
    assert only_a.verdict.startswith("not enough data at 1h")


def test_unknown_version_lists_existing(engine: Engine, db_url: str) -> None:
    insert_predictions(engine, [_row("v1", "BTCUSDT", 1, True), _row("v2", "BTCUSDT", 2, True)])
    with pytest.raises(InputError, match="versions that exist: v1, v2"):
        compare_models(engine, "v1", "v7")
    code, out, err = run_cli("--db", db_url, "compare-models", "v1", "v7")
    assert code == 2 and out == ""
    assert "unknown model version 'v7'; versions that exist: v1, v2" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli("--db", db_url, "compare-models", "v1", "v2", "--horizon", "2h")
    assert code == 2 and "--horizon" in err


def test_cli_formats(engine: Engine, db_url: str) -> None:
    _paired(engine, a_only=2, b_only=30, both=20, neither=8)
    code, out, err = run_cli("--db", db_url, "compare-models", "v1", "v2", "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    assert (document["version_a"], document["version_b"]) == ("v1", "v2")
    assert [item["horizon"] for item in document["horizons"]] == ["15m", "1h", "4h", "12h"]
    one_hour = document["horizons"][1]
    assert one_hour["better"] == "B" and one_hour["test"] == "mcnemar_exact"
    assert one_hour["a"]["n"] == 60 and set(one_hour["a"]) >= {"accuracy", "hit_rate_low",
                                                               "ic", "mae", "calibration_error",
                                                               "mean_confidence",
                                                               "inference_ms_p50"}  # fmt: skip
    assert document["horizons"][0]["test"] is None  # no 15m outcomes were planted

    code, out, err = run_cli("--db", db_url, "compare-models", "v1", "v2", "--horizon", "1h",
                             "--format", "csv")  # fmt: skip
    assert code == 0, err
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["horizon"] == "1h" and row["better"] == "B"
    assert float(row["a_accuracy"]) == pytest.approx(22 / 60)

    code, out, err = run_cli("--db", db_url, "compare-models", "v1", "v2", "--horizon", "1h")
    assert code == 0, err
    assert "B better at 1h: +46.7 pts" in out


def test_sources_by_url_string_and_path(engine: Engine, db_url: str) -> None:
    _paired(engine, a_only=2, b_only=30, both=20, neither=8)
    by_engine = compare_models(engine, "v1", "v2", horizons=["1h"])
    sources: list[object] = [db_url]
    if db_url.startswith("sqlite:///"):
        sources.append(Path(db_url.removeprefix("sqlite:///")))
    for source in sources:
        result = compare_models(source, "v1", "v2", horizons=["1h"])  # type: ignore[arg-type]
        assert result.to_dict() == by_engine.to_dict(), source


def test_better_is_decided_without_the_verdict_text(engine: Engine) -> None:
    _paired(engine, a_only=60, b_only=10, both=90, neither=40)
    (bare,) = compare_versions(engine, "v1", "v2", horizons=["1h"]).horizons
    assert (bare.better, bare.verdict) == ("A", "")
    assert horizon_verdict(bare).startswith("A better at 1h: +25.0 pts, p = ")
    assert better_version(0.1, 0.2, 0.05) is None
    assert better_version(-0.1, 0.01, 0.05) == "A"
    assert better_version(None, None, 0.05) is None


def test_disjoint_symbols_name_no_winner_and_show_coverage(db_url: str, engine: Engine) -> None:
    # B is right far more often, but on another symbol and in another period than A
    rows = [_row("v1", "BTCUSDT", h, h % 4 == 0) for h in range(1, 81)]
    rows += [_row("v2", "ETHUSDT", h, h % 4 != 0) for h in range(100, 180)]
    insert_predictions(engine, rows)
    code, out, err = run_cli("--db", db_url, "compare-models", "v1", "v2", "--horizon", "1h")
    assert code == 0, err
    assert "better at" not in out
    assert "no winner at 1h: 0 paired predictions (fewer than 30)" in out
    assert "confounded by what each version predicted" in out
    assert "Candles both versions predicted: 0; pairs with outcomes: 1h 0" in out
    assert "BTCUSDT" in out and "ETHUSDT" in out

    code, out, err = run_cli(
        "--db", db_url, "compare-models", "v1", "v2", "--horizon", "1h", "--format", "json"
    )
    assert code == 0, err
    document = json.loads(out)
    (one_hour,) = document["horizons"]
    assert one_hour["better"] is None and one_hour["confounded"] is True
    assert one_hour["verdict"].startswith("no winner at 1h")
    coverage_a, coverage_b = document["coverage"]["a"], document["coverage"]["b"]
    assert (coverage_a["predictions"], coverage_a["symbols"]) == (80, ["BTCUSDT"])
    assert (coverage_b["predictions"], coverage_b["symbols"]) == (80, ["ETHUSDT"])
    assert coverage_b["last"] < coverage_a["first"]  # B's period ended before A's began
    assert document["shared_candles"] == 0


def test_same_rows_compare_paired_and_name_the_winner(db_url: str, engine: Engine) -> None:
    _paired(engine, a_only=5, b_only=40, both=30, neither=25)
    # A alone also predicted ETHUSDT, where it was always right: not part of the comparison
    insert_predictions(engine, [_row("v1", "ETHUSDT", h, True) for h in range(1, 101)])
    code, out, err = run_cli(
        "--db", db_url, "compare-models", "v1", "v2", "--horizon", "1h", "--format", "json"
    )
    assert code == 0, err
    document = json.loads(out)
    (one_hour,) = document["horizons"]
    assert one_hour["test"] == "mcnemar_exact" and one_hour["pairs"] == 100
    assert one_hour["basis"] == "paired" and one_hour["confounded"] is False
    assert one_hour["better"] == "B"
    # metrics over the 100 pairs only: A's ETHUSDT rows would lift its accuracy to 0.675
    assert one_hour["a"]["n"] == 100 and one_hour["a"]["accuracy"] == pytest.approx(0.35)
    assert one_hour["b"]["accuracy"] == pytest.approx(0.70)
    assert document["coverage"]["a"]["symbols"] == ["BTCUSDT", "ETHUSDT"]
    assert document["coverage"]["a"]["predictions"] == 200
    assert document["shared_candles"] == 100
    code, out, err = run_cli("--db", db_url, "compare-models", "v1", "v2", "--horizon", "1h")
    assert code == 0, err
    assert "B better at 1h: +35.0 pts" in out
    assert "pairs with outcomes: 1h 100" in out
