"""Raw-output interpretation and validation of the bot's predictions (pure numpy)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from mlpred_cli.config import MIN_SIGNAL_CONFIDENCE
from mlpred_cli.derive.raw_outputs import (
    as_raw_outputs,
    interpret_raw_outputs,
    prediction_columns,
    validate_predictions,
)
from mlpred_cli.errors import InputError

NEUTRAL_LOGITS = [0.0, 0.0, 5.0]


def _raw(
    returns: tuple[float, float, float, float] = (0.01, 0.01, 0.01, 0.01),
    logits: list[list[float]] | None = None,
    extremes: tuple[float, float, float, float] = (-0.01, 0.02, -0.03, 0.01),
) -> list[float]:
    """One raw output vector: returns, 4 x (LONG, SHORT, NEUTRAL) logits, drawdown/rally."""
    horizon_logits = logits or [NEUTRAL_LOGITS] * 4
    return [*returns, *(value for triple in horizon_logits for value in triple), *extremes]


def _one(raw: list[float]) -> dict[str, Any]:
    columns = interpret_raw_outputs(np.array([raw]))
    return {name: values[0] for name, values in columns.items()}


def _softmax_top(logits: list[float]) -> float:
    exponentials = [math.exp(value) for value in logits]
    return max(exponentials) / sum(exponentials)


# ------------------------------------------------------------------ softmax and signal


def test_known_vector_by_hand() -> None:
    raw = _raw(
        returns=(0.01, -0.02, 0.03, 0.0),
        logits=[[2.0, 1.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]],
        extremes=(-0.01, 0.02, -0.03, 0.01),
    )
    result = _one(raw)
    e = math.e
    assert result["predicted_return_1h"] == -0.02
    assert result["direction_15m"] == "LONG"
    assert result["direction_15m_confidence"] == pytest.approx(e**2 / (e**2 + e + 1))
    assert result["direction_1h"] == "SHORT"
    assert result["direction_1h_confidence"] == pytest.approx(e**3 / (e**3 + 2))
    assert result["direction_4h"] == "NEUTRAL"
    assert result["direction_4h_confidence"] == pytest.approx(e / (e + 2))
    assert result["direction_12h"] == "LONG"  # a three-way tie goes to LONG
    assert result["direction_12h_confidence"] == pytest.approx(1 / 3)
    # strongest LONG/SHORT: 1h SHORT at 0.909 >= threshold, return -0.02 agrees
    assert result["signal_type"] == "SHORT"
    assert result["signal_timeframe"] == "1h"
    assert result["signal_confidence"] == pytest.approx(e**3 / (e**3 + 2))
    # 4h extremes; SHORT's adverse side is the rally: 0.01 / (0.03 + 0.01)
    assert result["max_drawdown_predicted"] == -0.03
    assert result["max_rally_predicted"] == 0.01
    assert result["risk_score"] == pytest.approx(0.25)


def test_softmax_is_stable_for_huge_logits() -> None:
    result = _one(_raw(logits=[[1000.0, 999.0, 0.0], *[NEUTRAL_LOGITS] * 3]))
    assert result["direction_15m"] == "LONG"
    assert result["direction_15m_confidence"] == pytest.approx(math.e / (math.e + 1))


def test_accepted_long_signal_and_its_risk() -> None:
    logits = [NEUTRAL_LOGITS, NEUTRAL_LOGITS, [4.0, 0.0, 0.0], NEUTRAL_LOGITS]
    result = _one(_raw(returns=(0.0, 0.0, 0.02, 0.0), logits=logits))
    assert result["signal_type"] == "LONG"
    assert result["signal_timeframe"] == "4h"
    assert result["signal_confidence"] == pytest.approx(_softmax_top([4.0, 0.0, 0.0]))
    # LONG's adverse side is the drawdown: 0.03 / (0.03 + 0.01)
    assert result["risk_score"] == pytest.approx(0.75)


def test_below_threshold_gives_neutral_with_neutral_probability() -> None:
    weak = [0.5, 0.0, 0.0]  # LONG at e^.5 / (e^.5 + 2) = 0.452
    assert _softmax_top(weak) < MIN_SIGNAL_CONFIDENCE
    result = _one(_raw(logits=[weak, [0.0, 0.0, 0.2], [0.0, 0.0, 0.2], [0.0, 0.0, 0.2]]))
    assert result["direction_15m"] == "LONG"
    assert result["signal_type"] == "NEUTRAL"
    # NEUTRAL speaks for the horizon most confident in NEUTRAL: 1h, 4h and 12h tie at
    # e^.2 / (e^.2 + 2) = 0.379 (above 15m's 1 / (e^.5 + 2) = 0.276); the shorter wins.
    assert result["signal_timeframe"] == "1h"
    assert result["signal_confidence"] == pytest.approx(math.exp(0.2) / (math.exp(0.2) + 2))
    assert result["risk_score"] is None


def test_return_disagreeing_in_sign_gives_neutral() -> None:
    logits = [[5.0, 0.0, 0.0], *[NEUTRAL_LOGITS] * 3]
    result = _one(_raw(returns=(-0.01, 0.0, 0.0, 0.0), logits=logits))
    assert result["direction_15m"] == "LONG"
    assert result["signal_type"] == "NEUTRAL"
    assert result["signal_timeframe"] == "1h"
    assert result["signal_confidence"] == pytest.approx(_softmax_top(NEUTRAL_LOGITS))


def test_zero_return_does_not_agree() -> None:
    logits = [[0.0, 5.0, 0.0], *[NEUTRAL_LOGITS] * 3]
    assert _one(_raw(returns=(0.0, 0.0, 0.0, 0.0), logits=logits))["signal_type"] == "NEUTRAL"


def test_strongest_trade_horizon_is_chosen() -> None:
    logits = [[3.0, 0.0, 0.0], [0.0, 4.0, 0.0], [2.0, 0.0, 0.0], NEUTRAL_LOGITS]
    result = _one(_raw(returns=(0.01, -0.01, 0.01, 0.0), logits=logits))
    assert result["signal_type"] == "SHORT"
    assert result["signal_timeframe"] == "1h"


def test_all_neutral_picks_most_confident_neutral_horizon() -> None:
    logits = [[0.0, 0.0, 1.0], [0.0, 0.0, 3.0], [0.0, 0.0, 2.0], [0.0, 0.0, 1.0]]
    result = _one(_raw(logits=logits))
    assert result["signal_type"] == "NEUTRAL"
    assert result["signal_timeframe"] == "1h"
    assert result["signal_confidence"] == pytest.approx(math.exp(3) / (math.exp(3) + 2))


def test_nan_logits_leave_that_horizon_empty() -> None:
    logits = [[math.nan, 0.0, 0.0], [0.0, 0.0, math.inf], [4.0, 0.0, 0.0], NEUTRAL_LOGITS]
    result = _one(_raw(returns=(0.01, 0.01, 0.01, 0.01), logits=logits))
    for horizon in ("15m", "1h"):
        assert result[f"direction_{horizon}"] is None
        assert result[f"direction_{horizon}_confidence"] is None
    assert result["signal_type"] == "LONG"
    assert result["signal_timeframe"] == "4h"


def test_all_nan_outputs_do_not_crash() -> None:
    result = _one([math.nan] * 20)
    assert all(value is None for value in result.values())


def test_nan_return_cannot_confirm_a_signal() -> None:
    logits = [[5.0, 0.0, 0.0], *[NEUTRAL_LOGITS] * 3]
    result = _one(_raw(returns=(math.nan, 0.0, 0.0, 0.0), logits=logits))
    assert result["predicted_return_15m"] is None
    assert result["signal_type"] == "NEUTRAL"


def test_missing_4h_extremes_fall_back_to_1h() -> None:
    logits = [[5.0, 0.0, 0.0], *[NEUTRAL_LOGITS] * 3]
    result = _one(_raw(logits=logits, extremes=(-0.01, 0.03, math.nan, math.inf)))
    assert result["max_drawdown_predicted"] == -0.01
    assert result["max_rally_predicted"] == 0.03
    assert result["risk_score"] == pytest.approx(0.25)


def test_zero_excursion_has_no_risk_score() -> None:
    logits = [[5.0, 0.0, 0.0], *[NEUTRAL_LOGITS] * 3]
    result = _one(_raw(logits=logits, extremes=(0.0, 0.0, 0.0, 0.0)))
    assert result["signal_type"] == "LONG"
    assert result["risk_score"] is None


def test_batch_rows_are_independent_and_plain_python() -> None:
    rng = np.random.default_rng(5)
    raw = rng.normal(size=(40, 20))
    raw[7, 4] = np.nan
    columns = interpret_raw_outputs(raw)
    for row in range(40):
        single = _one(raw[row].tolist())
        for name, values in columns.items():
            assert values[row] == single[name], (row, name)
            assert values[row] is None or type(values[row]) in (str, float)
        risk = columns["risk_score"][row]
        assert risk is None or 0.0 <= risk <= 1.0


def test_interpret_rejects_wrong_shape() -> None:
    with pytest.raises(InputError, match="rows x 20"):
        interpret_raw_outputs(np.zeros((3, 19)))


# ------------------------------------------------------------------ as_raw_outputs


def test_raw_outputs_accepted_shapes() -> None:
    values = list(range(20))
    assert as_raw_outputs(None) is None
    for shaped in (values, np.array(values), np.array([values]), np.array(values).reshape(20, 1)):
        raw = as_raw_outputs(shaped)
        assert raw is not None
        assert raw.shape == (20,) and raw.dtype == np.float64
        assert raw.tolist() == [float(v) for v in values]


def test_raw_outputs_are_copied() -> None:
    source = np.zeros(20)
    raw = as_raw_outputs(source)
    source[0] = 1.0
    assert raw is not None and raw[0] == 0.0


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (list(range(19)), "exactly 20 values"),
        (np.zeros((2, 10)), "exactly 20 values"),
        (np.zeros((1, 1, 20)), "exactly 20 values"),
        (3.0, "exactly 20 values"),
        (["x"] * 20, "numeric"),
        ([None] * 20, "numeric"),
    ],
)
def test_raw_outputs_invalid(outputs: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        as_raw_outputs(outputs)


# ------------------------------------------------------------------ bot predictions


def test_validate_normalises() -> None:
    predictions = {
        "returns_1h": np.float32(0.5),
        "direction_1h": "long",
        "confidence_1h": 1,
        "signal_type": "Short",
        "signal_confidence": None,
        "primary_timeframe": "4H",
        "max_drawdown": math.nan,
    }
    result = validate_predictions(predictions)
    assert result == {
        "returns_1h": 0.5,
        "direction_1h": "LONG",
        "confidence_1h": 1.0,
        "signal_type": "SHORT",
        "signal_confidence": None,
        "primary_timeframe": "4h",
        "max_drawdown": None,
    }
    assert result is not predictions
    assert type(result["confidence_1h"]) is float
    assert validate_predictions(None) is None


@pytest.mark.parametrize(
    ("predictions", "message"),
    [
        ([("returns_1h", 0.1)], "must be a mapping"),
        ({"returns_30m": 0.1}, r"unknown key 'returns_30m'; accepted keys: returns_15m, "),
        ({"direction_1h": "UP"}, r"predictions\['direction_1h'\] must be one of LONG"),
        ({"signal_type": 1}, r"predictions\['signal_type'\] must be one of"),
        ({"returns_1h": "0.1"}, r"predictions\['returns_1h'\] must be a number, got str"),
        ({"risk_score": True}, "must be a number, got bool"),
        ({"confidence_4h": 85.0}, r"must be between 0 and 1, got 85.0"),
        ({"primary_timeframe": "30m"}, r"must be one of 15m, 1h, 4h, 12h"),
    ],
)
def test_validate_rejects(predictions: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        validate_predictions(predictions)


def test_prediction_columns_renames_present_keys_only() -> None:
    columns = prediction_columns(
        {
            "returns_1h": 0.1,
            "confidence_1h": 0.7,
            "direction_12h": "LONG",
            "max_drawdown": -0.02,
            "max_rally": 0.03,
            "primary_timeframe": "1h",
            "signal_type": "LONG",
            "signal_confidence": 0.7,
            "risk_score": 0.4,
        }
    )
    assert columns == {
        "predicted_return_1h": 0.1,
        "direction_1h_confidence": 0.7,
        "direction_12h": "LONG",
        "max_drawdown_predicted": -0.02,
        "max_rally_predicted": 0.03,
        "signal_timeframe": "1h",
        "signal_type": "LONG",
        "signal_confidence": 0.7,
        "risk_score": 0.4,
    }
    assert prediction_columns({}) == {}
