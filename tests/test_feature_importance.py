"""Feature importance: the Spearman scoring, snapshots written on both backends, the planted
feature that must rank first, usage counts, ``show`` with rank changes and sparklines, and
the CLI."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlpred_cli.analysis.feature_importance import (
    compute_feature_importance,
    spearman_with_returns,
    usage_counts,
)
from mlpred_cli.derive.importance_snapshot import build_snapshot
from mlpred_cli.errors import InputError, NotEnoughData
from mlpred_cli.render.model_views import show_feature_importance
from mlpred_cli.render.sparkline import sparkline
from mlpred_cli.store.feature_vectors import load_feature_matrix
from mlpred_cli.store.importance_snapshots import write_snapshot
from mlpred_cli.store.prediction_queries import make_filter
from mlpred_cli.store.tables import feature_importance_table
from tests.cli_helpers import run_cli
from tests.factories import insert_predictions, prediction_row

NOW = datetime.now(UTC)
FEATURES = 10


def test_sparkline() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([1.0, None, 3.0]) == "▁ █"
    assert sparkline([0.2, 0.2]) == "▄▄"
    assert sparkline([]) == ""
    assert sparkline([None]) == " "


def test_spearman_by_hand() -> None:
    returns = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    features = np.array(
        [
            [1, 2, 3, 4, 5],  # same order: 1
            [50, 40, 30, 20, 10],  # reversed: -1
            [1, 2, 3, 5, 4],  # one swap: 1 - 6*2/(5*24) = 0.9
            [2, 2, 2, 2, 2],  # constant: undefined
            [1, np.nan, 3, 4, 5],  # NaN dropped, the rest in order: 1
            [1, 1, 2, 3, 4],  # ties: ranks 1.5,1.5,3,4,5 -> 9.5 / sqrt(9.5 * 10)
        ],
        dtype=float,
    )
    result = spearman_with_returns(features, returns)
    assert result[[0, 1, 2, 4]] == pytest.approx([1.0, -1.0, 0.9, 1.0])
    assert math.isnan(result[3])
    assert result[5] == pytest.approx(9.5 / math.sqrt(95))
    assert list(usage_counts(np.array([[0.0, 1.0, np.nan, -2.0]]))) == [2]


def _planted_rows(count: int, *, version: str = "v1", start: int = 0) -> list[dict[str, object]]:
    """Feature 7 drives the 1h return; feature 3 is constant 2.5; feature 5 is 0 on every
    third row and null on every fifth (usage = the rest); other features are noise."""
    rng = np.random.default_rng(11)
    rows = []
    for index in range(count):
        actual = float(rng.normal(0, 0.01))
        vector: list[float | None] = [float(v) for v in rng.normal(size=FEATURES)]
        vector[7] = actual * 100 + 0.001 * float(rng.normal())
        vector[3] = 2.5
        vector[5] = 0.0 if index % 3 == 0 else (None if index % 5 == 0 else 1.0 + index)
        stored: object = vector
        if index % 4 == 0:  # a 2-D window: the last row is the vector
            stored = [[9.0] * FEATURES, vector]
        rows.append(
            prediction_row(
                "BTCUSDT",
                NOW - timedelta(hours=start + index),
                model_version=version,
                features_count=FEATURES,
                features_array=stored,
                actual_return_1h=actual,
            )
        )
    return rows


def _expected_usage_5(count: int) -> int:
    return sum(1 for i in range(count) if i % 3 != 0 and i % 5 != 0)


def test_compute_ranks_the_planted_feature_first(engine: Engine) -> None:
    insert_predictions(engine, _planted_rows(60))
    # not usable: no features, no 1h outcome, too old (inserted one by one: other columns)
    extra = [
        prediction_row("BTCUSDT", NOW, actual_return_1h=0.01),
        prediction_row("BTCUSDT", NOW, features_array=[1.0] * FEATURES),
        prediction_row("BTCUSDT", NOW - timedelta(days=40), features_count=FEATURES,
                       features_array=[1.0] * FEATURES, actual_return_1h=0.01),
    ]  # fmt: skip
    for row in extra:
        insert_predictions(engine, [row])

    result = compute_feature_importance(engine, days=30, horizon="1h")
    assert (result.predictions, result.skipped, result.written) == (60, 0, FEATURES)
    assert result.model_version == "v1"
    with engine.connect() as conn:
        stored = {
            row.feature_name: row for row in conn.execute(sa.select(feature_importance_table)).all()
        }
    assert len(stored) == FEATURES
    assert sorted(row.importance_rank for row in stored.values()) == list(range(1, FEATURES + 1))
    best = stored["f7"]
    assert best.importance_rank == 1
    assert best.correlation_with_returns > 0.99
    assert best.importance_score == pytest.approx(abs(best.correlation_with_returns))
    assert (best.method, best.horizon, best.model_version) == ("spearman_ic", "1h", "v1")
    constant = stored["f3"]
    assert constant.importance_score == 0.0
    assert constant.correlation_with_returns is None
    assert constant.usage_count == 60  # 2.5 is finite and non-zero everywhere
    assert constant.importance_rank == FEATURES or stored["f5"].importance_score == 0
    assert stored["f5"].usage_count == _expected_usage_5(60)
    assert stored["f0"].usage_count == 60


def test_compute_needs_thirty_rows_and_writes_nothing(engine: Engine) -> None:
    insert_predictions(engine, _planted_rows(29))
    with pytest.raises(NotEnoughData, match="only 29 predictions"):
        compute_feature_importance(engine)
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(feature_importance_table)).scalar()
            == 0
        )


def test_compute_with_feature_names_and_model_version(engine: Engine, tmp_path: Path) -> None:
    insert_predictions(engine, _planted_rows(40, version="v2"))
    insert_predictions(engine, _planted_rows(5, version="v3", start=100))
    names = [f"feature_{letter}" for letter in "abcdefghij"]
    path = tmp_path / "names.txt"
    path.write_text("\n".join(names) + "\n\n")
    result = compute_feature_importance(engine, model_version="v2", feature_names=path)
    assert result.predictions == 40
    assert result.ranked()[0]["feature_name"] == "feature_h"  # index 7
    assert result.model_version == "v2"
    # names that do not match the stored vectors: nothing usable
    with pytest.raises(NotEnoughData, match="another length"):
        compute_feature_importance(engine, model_version="v2", feature_names=names[:4])


def test_compute_finds_the_vector_length_when_features_count_disagrees(engine: Engine) -> None:
    rows = _planted_rows(40)
    for row in rows:
        row["features_count"] = 240  # says 240, the stored vectors hold 10
    insert_predictions(engine, rows)
    result = compute_feature_importance(engine, write=False)
    assert (result.predictions, result.written) == (40, 0)
    assert result.ranked()[0]["feature_name"] == "f7"


@pytest.mark.sqlite_only
def test_compute_reads_hand_written_json_with_line_breaks(engine: Engine) -> None:
    insert_predictions(engine, _planted_rows(35))
    with engine.begin() as conn:  # pretty-printed JSON, as another tool might store it
        conn.exec_driver_sql(
            "UPDATE ml_predictions SET features_array = replace(replace(features_array, "
            "', ', ',' || char(10) || char(9)), '[', '[' || char(13) || char(10))"
        )
    result = compute_feature_importance(engine, write=False)
    assert result.predictions == 35
    assert result.ranked()[0]["feature_name"] == "f7"


def test_feature_matrix_carries_times_symbols_and_predictions(engine: Engine) -> None:
    rows = [
        prediction_row(
            "BTC/USDT" if index % 2 else "ETH,USDT",  # a comma must not split the line
            NOW - timedelta(minutes=15 * index),
            features_count=3,
            features_array=[float(index), None, 1.0],
            actual_return_1h=0.001 * index,
            predicted_return_1h=None if index == 2 else 0.01 * index,
        )
        for index in range(5)
    ]
    insert_predictions(engine, rows)
    with engine.connect() as conn:
        matrix = load_feature_matrix(conn, make_filter(days=None), "1h")
    order = np.argsort(matrix.features[0])  # feature 0 is the row index
    assert list(matrix.features[0][order]) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert list(matrix.symbols[order]) == ["ETH,USDT", "BTC/USDT"] * 2 + ["ETH,USDT"]
    expected_times = [
        int((NOW - timedelta(minutes=15 * i)).timestamp() * 1000) / 1000 for i in range(5)
    ]
    assert list(matrix.times[order]) == pytest.approx(expected_times)
    predicted = matrix.predicted_returns[order]
    assert math.isnan(predicted[2])
    assert list(predicted[[0, 1, 3, 4]]) == pytest.approx([0.0, 0.01, 0.03, 0.04])
    assert list(matrix.actual_returns[order]) == pytest.approx([0.001 * i for i in range(5)])
    assert np.isnan(matrix.features[1]).all()


def test_build_snapshot_fills_significance_columns(engine: Engine) -> None:
    rows = build_snapshot(
        ["a", "b"],
        [0.3, 0.1],
        model_version="v1",
        p_values=[0.001, float("nan")],
        q_values=np.array([0.002, np.nan]),
        n_effective=[120.5, None],
        surrogate_r2=0.25,
    )
    write_snapshot(engine, rows)
    with engine.connect() as conn:
        stored = {r.feature_name: r for r in conn.execute(sa.select(feature_importance_table))}
    assert (stored["a"].p_value, stored["a"].q_value, stored["a"].n_effective) == (
        0.001,
        0.002,
        120.5,
    )
    assert (stored["b"].p_value, stored["b"].q_value, stored["b"].n_effective) == (None,) * 3
    assert stored["a"].surrogate_r2 == stored["b"].surrogate_r2 == 0.25
    with pytest.raises(InputError, match="p_values"):
        build_snapshot(["a", "b"], [0.3, 0.1], model_version="v1", p_values=[0.1])


def _snapshot(engine: Engine, scores: dict[str, float], moment: datetime, **kwargs: object) -> None:
    options = {"model_version": "v1", "method": "model", **kwargs}
    rows = build_snapshot(list(scores), list(scores.values()), calculated_at=moment, **options)  # type: ignore[arg-type]
    write_snapshot(engine, rows)


def test_show_rank_change_and_trend(engine: Engine) -> None:
    first, second, third = NOW - timedelta(days=2), NOW - timedelta(days=1), NOW
    _snapshot(engine, {"rsi": 0.1, "macd": 0.5, "volume": 0.3}, first)
    _snapshot(engine, {"rsi": 0.2, "macd": 0.45, "volume": 0.3}, second)
    _snapshot(engine, {"rsi": 0.6, "macd": 0.3, "volume": 0.1, "atr": 0.2}, third)
    # newer snapshots of another version / method must not enter v1's history
    _snapshot(engine, {"rsi": 0.9}, third + timedelta(hours=1), model_version="v9")
    _snapshot(engine, {"rsi": 0.0, "macd": 1.0}, third + timedelta(hours=2), method="shap")

    view = show_feature_importance(engine, model_version="v1", method="model", top=3)
    assert view.snapshot is not None
    assert (view.snapshot["features"], view.snapshot["history"]) == (4, 3)
    assert view.snapshot["calculated_at"] == third
    by_name = {row["feature_name"]: row for row in view.features}
    assert [row["feature_name"] for row in view.features] == ["rsi", "macd", "atr"]  # top 3
    assert by_name["rsi"]["rank_change"] == 2  # 3rd -> 1st
    assert by_name["macd"]["rank_change"] == -1  # 1st -> 2nd
    assert by_name["atr"]["rank_change"] is None  # new
    assert by_name["rsi"]["trend"] == "▁▂█"  # 0.1, 0.2, 0.6
    assert by_name["macd"]["trend"] == "█▆▁"  # 0.5, 0.45, 0.3: (0.15 / 0.2) * 7 = 5.25 -> 5
    assert by_name["atr"]["trend"] == "  ▄"

    latest = show_feature_importance(engine)  # newest of all: the shap snapshot
    assert latest.snapshot is not None and latest.snapshot["method"] == "shap"
    assert latest.snapshot["history"] == 1
    assert latest.features[0]["rank_change"] is None
    assert show_feature_importance(engine, model_version="nope").snapshot is None


def test_cli_compute_and_show(engine: Engine, db_url: str) -> None:
    insert_predictions(engine, _planted_rows(35))
    code, out, err = run_cli("--db", db_url, "feature-importance", "compute", "--top", "3",
                             "--format", "json")  # fmt: skip
    assert code == 0, err
    top = json.loads(out)
    assert [row["importance_rank"] for row in top] == [1, 2, 3]
    assert top[0]["feature_name"] == "f7"
    assert "Wrote 10 features (35 predictions" in err

    code, out, err = run_cli("--db", db_url, "feature-importance", "show", "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["snapshot"]["method"] == "spearman_ic"
    assert document["features"][0]["feature_name"] == "f7"
    assert document["features"][0]["trend"] == "▄"

    code, out, _ = run_cli("--db", db_url, "feature-importance", "show", "--top", "2")
    assert code == 0 and "f7" in out

    code, _, err = run_cli("--db", db_url, "feature-importance", "compute", "--horizon", "2h")
    assert code == 2 and "unknown horizon" in err
    code, _, err = run_cli("--db", db_url, "feature-importance", "compute", "--days", "0.0001")
    assert code == 1 and "nothing written" in err
    code, _, err = run_cli("--db", db_url, "feature-importance", "show", "--top", "0")
    assert code == 2 and "--top" in err
