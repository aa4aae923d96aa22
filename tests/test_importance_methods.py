"""Feature importance by method: mean |phi| of caller-supplied attributions (``shap``) and the
ridge surrogate of the model's predicted return with linear SHAP values and its R^2
(``linear-surrogate``), pure and end to end on both backends, with the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlpred_cli import MLPredictionLogger
from mlpred_cli.analysis.attribution_importance import attribution_importance
from mlpred_cli.analysis.importance_methods import (
    IMPORTANCE_METHODS,
    SHAP_METHOD,
    SURROGATE_METHOD,
    SurrogateResult,
    compute_attribution_importance,
    compute_importance,
    compute_surrogate_importance,
)
from mlpred_cli.analysis.linear_surrogate import (
    PENALTY_GRID,
    fit_surrogate,
    holdout_size,
    r_squared,
    surrogate_importance,
)
from mlpred_cli.cli.model_commands import STORED_METHODS
from mlpred_cli.errors import InputError, NotEnoughData
from mlpred_cli.render.model_views import show_feature_importance
from mlpred_cli.store.tables import feature_importance_table, predictions_table
from tests.cli_helpers import run_cli
from tests.factories import insert_predictions, prediction_row

NOW = datetime.now(UTC)
FEATURES = 10
#: The planted linear model: predicted_return_1h = INTERCEPT + COEFFICIENTS @ x.
COEFFICIENTS = np.array([0.002, -0.001, 0.0, 0.0, 0.0005, 0.0, 0.0, 0.004, 0.0, -0.0003])
INTERCEPT = 0.0007


# ---------------------------------------------------------------- pure: attributions


def test_attribution_importance_by_hand() -> None:
    attributions = np.array(
        [
            [0.5, -1.5, 1.0, np.nan],  # mean |phi| of the three given: 1.0
            [0.0, 0.0, 2.0, 0.0],  # 0.5; one non-zero
            [np.nan, np.nan, np.nan, np.nan],  # never given: 0, used 0
        ]
    )
    result = attribution_importance(attributions)
    assert list(result.scores) == pytest.approx([1.0, 0.5, 0.0])
    assert list(result.usage_counts) == [3, 1, 0]
    assert list(result.given) == [3, 4, 0]


# ---------------------------------------------------------------- pure: the surrogate


def _features(rows: int, seed: int = 3) -> np.ndarray:
    """(FEATURES, rows): feature j has spread j + 1 around 5; feature 3 is constant 2.5."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(FEATURES, rows)) * np.arange(1, FEATURES + 1)[:, None] + 5.0
    values[3] = 2.5
    return values


def test_surrogate_recovers_a_linear_models_coefficients() -> None:
    features = _features(200)
    predicted = INTERCEPT + COEFFICIENTS @ features
    features[6, ::7] = np.nan  # missing values of a feature the model ignores: imputed
    importance = surrogate_importance(features, predicted)
    fit = importance.fit
    assert fit.coefficients == pytest.approx(COEFFICIENTS, abs=1e-7)
    assert fit.intercept == pytest.approx(INTERCEPT, abs=1e-6)
    assert fit.coefficients[3] == 0.0  # constant: beta 0, not a huge number
    assert fit.penalty == PENALTY_GRID[0]  # noiseless: GCV shrinks as little as it can
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    assert importance.holdout_rows == holdout_size(200) == 40
    assert importance.faithfulness_kind == "holdout"
    assert importance.faithfulness == pytest.approx(1.0, abs=1e-9)
    assert int(fit.imputed[6]) == len(range(0, 200, 7))
    # score = mean |beta_j (x_j - mean_j)|: feature 7 (beta 0.004, spread 8) leads
    expected = np.abs(COEFFICIENTS * np.nanstd(features, axis=1)) * np.sqrt(2 / np.pi)
    assert int(np.argmax(importance.scores)) == 7
    assert importance.scores[7] == pytest.approx(expected[7], rel=0.15)
    assert importance.scores[3] == 0.0


def test_linear_shap_values_add_up_to_the_surrogates_prediction() -> None:
    rng = np.random.default_rng(5)
    features = _features(80)
    features[0, ::5] = np.nan
    predicted = np.tanh(features[7] / 10) + 0.3 * features[1] + rng.normal(0, 0.5, 80)
    fit = fit_surrogate(features, predicted)
    shap = fit.shap_values(features)
    assert np.all(shap[0, ::5] == 0.0)  # imputed at the mean: no contribution
    # efficiency: the mean prediction plus the attributions is the surrogate's output
    assert fit.predict(features) == pytest.approx(predicted.mean() + shap.sum(axis=0))
    assert fit.penalty > PENALTY_GRID[0]  # noisy target: GCV picks a real penalty


def test_surrogate_of_a_nonlinear_model_reports_a_low_r2() -> None:
    features = _features(300)
    predicted = ((features[7] - 5.0) / 8.0) ** 2  # symmetric: no linear trend at all
    importance = surrogate_importance(features, predicted)
    assert importance.fit.r2 is not None and importance.fit.r2 < 0.1
    assert importance.faithfulness is not None and importance.faithfulness < 0.1


def test_surrogate_with_fewer_rows_than_features() -> None:
    rng = np.random.default_rng(8)
    features = rng.normal(size=(40, 25))
    predicted = 2 * features[0] - features[1] + rng.normal(0, 0.1, 25)
    importance = surrogate_importance(features, predicted)
    assert importance.holdout_rows == 0 and importance.faithfulness_kind == "in-sample"
    assert np.all(np.isfinite(importance.fit.coefficients))
    # GCV never picks an interpolating fit (it would have R^2 exactly 1)
    assert importance.fit.penalty > PENALTY_GRID[0]
    assert importance.fit.r2 is not None and 0.5 < importance.fit.r2 < 1.0
    assert set(np.argsort(-importance.scores)[:2]) == {0, 1}


def test_the_holdout_is_the_latest_rows() -> None:
    features = _features(200)
    times = np.random.default_rng(1).permutation(200).astype(float)  # not in row order
    latest = times >= 160
    predicted = np.where(latest, -1.0, 1.0) * features[7]  # the model flipped lately
    importance = surrogate_importance(features, predicted, order=times)
    assert importance.holdout_rows == 40
    assert importance.holdout_r2 is not None and importance.holdout_r2 < 0  # fit on the old
    assert importance.fit.r2 is not None and importance.fit.r2 > 0.2


def test_r_squared_edges() -> None:
    target = np.array([1.0, 2.0, 3.0])
    assert r_squared(target, target) == 1.0
    assert r_squared(target, np.full(3, 2.0)) == 0.0
    assert r_squared(target, np.array([3.0, 2.0, 1.0])) == pytest.approx(-3.0)
    assert r_squared(np.ones(3), np.ones(3)) is None
    constant = surrogate_importance(_features(60), np.full(60, 0.001))
    assert constant.fit.r2 is None and constant.faithfulness is None
    assert np.all(constant.scores == 0.0)


# ---------------------------------------------------------------- end to end


def _rows(
    count: int,
    *,
    predicted: str = "linear",
    attributions: bool = True,
    version: str = "v1",
    seed: int = 4,
) -> list[dict[str, Any]]:
    """Predictions (newest first, one per hour) with features, a 1h outcome and the model's
    1h predicted return (``linear``: the planted linear model; ``square``: feature 7
    squared). Attributions: feature 7 dominates; feature 2 is null on every third row and 0
    on every fourth; feature 9 is never given (null)."""
    features = _features(count, seed)
    if predicted == "linear":
        returns = INTERCEPT + COEFFICIENTS @ features
    else:
        returns = 0.001 * ((features[7] - 5.0) / 8.0) ** 2
    rng = np.random.default_rng(seed + 1)
    rows = []
    for index in range(count):
        phi: list[float | None] = [float(v) for v in rng.normal(0, 0.1, FEATURES)]
        phi[7] = float(rng.choice([-1.0, 1.0]) * (1.0 + rng.random()))
        phi[2] = None if index % 3 == 0 else (0.0 if index % 4 == 0 else phi[2])
        phi[9] = None
        rows.append(
            prediction_row(
                "BTCUSDT",
                NOW - timedelta(hours=index),
                model_version=version,
                features_count=FEATURES,
                features_array=[float(v) for v in features[:, index]],
                feature_attributions=phi if attributions else None,
                predicted_return_1h=float(returns[index]),
                actual_return_1h=float(rng.normal(0, 0.01)),
            )
        )
    return rows


def _stored(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(feature_importance_table)).all()
    return {row.feature_name: row for row in rows}


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        statement = sa.select(sa.func.count()).select_from(feature_importance_table)
        return int(conn.execute(statement).scalar_one())


def test_shap_ranks_the_planted_feature_first(engine: Engine) -> None:
    insert_predictions(engine, _rows(40, predicted="square"))
    insert_predictions(engine, [prediction_row("BTCUSDT", NOW, feature_attributions=[1.0] * 4)])
    result = compute_attribution_importance(engine, days=30, horizon="1h")
    assert (result.predictions, result.skipped, result.written) == (40, 1, FEATURES)
    assert result.ranked()[0]["feature_name"] == "f7"
    stored = _stored(engine)
    best = stored["f7"]
    assert (best.importance_rank, best.method, best.horizon, best.model_version) == (
        1, SHAP_METHOD, "1h", "v1",
    )  # fmt: skip
    assert 1.0 <= best.importance_score <= 2.0  # mean |phi| of values in [1, 2)
    assert best.usage_count == 40
    assert best.correlation_with_returns is None
    assert (best.p_value, best.q_value, best.surrogate_r2) == (None, None, None)
    given = [i for i in range(40) if i % 3 != 0]
    assert stored["f2"].usage_count == sum(1 for i in given if i % 4 != 0)
    never = stored["f9"]
    assert (never.importance_score, never.usage_count, never.importance_rank) == (0.0, 0, 10)


def test_shap_without_attributions_says_how_and_writes_nothing(engine: Engine) -> None:
    insert_predictions(engine, _rows(40, attributions=False))
    with pytest.raises(InputError, match="pass attributions= to log_prediction"):
        compute_importance(engine, method=SHAP_METHOD)
    insert_predictions(engine, _rows(5, version="v2"))
    with pytest.raises(NotEnoughData, match="only 5 predictions"):
        compute_importance(engine, method=SHAP_METHOD)
    assert _count(engine) == 0


def test_surrogate_end_to_end_recovers_the_linear_model(engine: Engine) -> None:
    rows = _rows(60)
    rows[5]["predicted_return_1h"] = None  # no prediction at 1h: left out
    insert_predictions(engine, rows)
    result = compute_surrogate_importance(engine, days=30, horizon="1h")
    assert isinstance(result, SurrogateResult)
    assert (result.predictions, result.unpredicted, result.written) == (59, 1, FEATURES)
    assert result.r2_kind == "holdout" and result.holdout_rows == 11
    assert result.surrogate_r2 == pytest.approx(1.0, abs=1e-6)
    assert result.in_sample_r2 == pytest.approx(1.0, abs=1e-6)
    stored = _stored(engine)
    assert stored["f7"].importance_rank == 1
    assert stored["f7"].method == SURROGATE_METHOD
    assert stored["f7"].surrogate_r2 == pytest.approx(result.surrogate_r2)
    assert stored["f3"].importance_score == 0.0  # constant feature
    assert stored["f2"].importance_score == pytest.approx(0.0, abs=1e-9)  # beta 0
    features = np.array([row["features_array"] for i, row in enumerate(rows) if i != 5]).T
    expected = np.abs(COEFFICIENTS[:, None] * (features - features.mean(axis=1)[:, None]))
    scores = [stored[f"f{j}"].importance_score for j in range(FEATURES)]
    assert scores == pytest.approx(list(expected.mean(axis=1)), rel=1e-5, abs=1e-9)


def test_surrogate_holds_out_the_newest_predictions(engine: Engine) -> None:
    rows = _rows(60)  # newest first
    for row in rows[:12]:  # the newest 12: the model changed
        row["predicted_return_1h"] = -row["predicted_return_1h"]
    insert_predictions(engine, rows)  # stored newest first: the holdout follows time
    result = compute_surrogate_importance(engine, write=False)
    assert isinstance(result, SurrogateResult) and result.holdout_rows == 12
    # fitted on the 48 older rows only, it predicts the newest 12 backwards: R^2 about -4.9
    # (a holdout of the first-stored rows, fitted on a mix, would give about -0.7)
    assert result.surrogate_r2 is not None and result.surrogate_r2 < -3
    assert result.in_sample_r2 is not None and result.in_sample_r2 > 0


def test_surrogate_needs_predicted_returns(engine: Engine) -> None:
    rows = _rows(40)
    for row in rows[:15]:
        row["predicted_return_1h"] = None
    insert_predictions(engine, rows)
    with pytest.raises(NotEnoughData, match="only 25 predictions"):
        compute_importance(engine, method=SURROGATE_METHOD)
    assert _count(engine) == 0


def test_logged_attributions_feed_the_shap_method(db_url: str, engine: Engine) -> None:
    rng = np.random.default_rng(2)
    with MLPredictionLogger(db_url, store_features=True, flush_interval_s=0.05) as logger:
        ids = []
        for _ in range(32):
            phi = rng.normal(0, 0.1, FEATURES)
            phi[7] = 3.0
            ids.append(
                logger.log_prediction_sync(
                    symbol="BTCUSDT",
                    features=rng.normal(size=FEATURES),
                    predictions={"returns_1h": 0.001},
                    attributions=phi,
                )
            )
    with engine.begin() as conn:  # what backfill-actuals would fill in
        conn.execute(sa.update(predictions_table).values(actual_return_1h=0.002))
    result = compute_importance(engine, method=SHAP_METHOD, write=False)
    assert result.predictions == 32
    assert result.ranked()[0]["feature_name"] == "f7"
    assert result.ranked()[0]["importance_score"] == pytest.approx(3.0)


# ---------------------------------------------------------------- CLI


def test_cli_methods_map_to_the_stored_names() -> None:
    assert sorted(STORED_METHODS.values()) == sorted(IMPORTANCE_METHODS)


def test_cli_shap_compute_and_show_history(engine: Engine, db_url: str) -> None:
    code, _, err = run_cli("--db", db_url, "feature-importance", "compute", "--method", "shap")
    assert code == 2 and "pass attributions= to log_prediction" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _count(engine) == 0

    insert_predictions(engine, _rows(35))
    for _ in range(2):
        code, out, err = run_cli("--db", db_url, "feature-importance", "compute", "--method",
                                 "shap", "--top", "3", "--format", "json")  # fmt: skip
        assert code == 0, err
        assert "method shap_mean_abs" in err
        assert json.loads(out)[0]["feature_name"] == "f7"
    code, out, err = run_cli("--db", db_url, "feature-importance", "show", "--method",
                             SHAP_METHOD, "--format", "json")  # fmt: skip
    assert code == 0, err
    document = json.loads(out)
    assert (document["snapshot"]["method"], document["snapshot"]["history"]) == (SHAP_METHOD, 2)
    first = document["features"][0]
    assert (first["feature_name"], first["rank_change"], first["trend"]) == ("f7", 0, "▄▄")
    view = show_feature_importance(engine, method=SHAP_METHOD)
    assert view.snapshot is not None and view.snapshot["history"] == 2
    # compute's name for the method finds the same snapshot
    code, alias, err = run_cli("--db", db_url, "feature-importance", "show", "--method", "shap",
                               "--format", "json")  # fmt: skip
    assert code == 0, err
    assert json.loads(alias) == document


def test_cli_surrogate_warns_when_it_explains_little(engine: Engine, db_url: str) -> None:
    insert_predictions(engine, _rows(60, predicted="square"))
    code, out, err = run_cli("--db", db_url, "feature-importance", "compute", "--method",
                             "linear-surrogate", "--format", "csv")  # fmt: skip
    assert code == 0, err
    assert "method linear_surrogate" in err
    assert "Surrogate R^2" in err and "on the latest 12 predictions" in err
    assert "Warning: the surrogate explains only" in err
    assert "a linear approximation, not the model" in err
    header = out.splitlines()[0].split(",")
    assert header[:2] == ["importance_rank", "feature_name"] and header[-1] == "surrogate_r2"
    stored = _stored(engine)
    assert stored["f0"].surrogate_r2 is not None and stored["f0"].surrogate_r2 < 0.5
    assert len({row.surrogate_r2 for row in stored.values()}) == 1  # one R^2 per snapshot

    insert_predictions(engine, _rows(60, version="v2"))
    code, _, err = run_cli("--db", db_url, "feature-importance", "compute", "--method",
                           "linear-surrogate", "--model-version", "v2")  # fmt: skip
    assert code == 0, err
    assert "Surrogate R^2 1.000" in err and "Warning" not in err
    code, _, err = run_cli("--db", db_url, "feature-importance", "compute", "--method", "ols")
    assert code == 2 and "--method" in err
