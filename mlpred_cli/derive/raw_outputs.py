"""From the model's 20 raw outputs (or the bot's own predictions dict) to ``ml_predictions``
columns.

Raw output layout (DESIGN.md): 0-3 predicted returns for 15m / 1h / 4h / 12h; 4-15 direction
logits, three per horizon in the order LONG, SHORT, NEUTRAL; 16-19 max drawdown 1h, max rally
1h, max drawdown 4h, max rally 4h.

Rules of ``interpret_raw_outputs``:

* **Per horizon**: softmax of its three logits; direction = the most probable class (ties go
  to LONG, then SHORT), confidence = its probability. A horizon with a NaN or infinite logit
  has no direction and no confidence (None).
* **Signal**: the candidate is the horizon whose LONG/SHORT direction has the highest
  confidence (ties go to the shorter horizon). The signal is that direction when its
  confidence >= ``MIN_SIGNAL_CONFIDENCE`` and that horizon's predicted return agrees in sign
  (> 0 for LONG, < 0 for SHORT); ``signal_confidence`` is then that confidence and
  ``signal_timeframe`` that horizon. Otherwise the signal is NEUTRAL, ``signal_timeframe`` is
  the horizon with the highest NEUTRAL probability (ties: the shorter) and
  ``signal_confidence`` is that probability. No usable horizon at all -> signal, confidence
  and timeframe are None.
* **Drawdown / rally**: ``max_drawdown_predicted`` / ``max_rally_predicted`` are the 4h values
  (outputs 18, 19), as the model emits them; the 4h path contains the 1h path, so its extremes
  are the larger ones. When a 4h value is not finite the 1h value (16, 17) is used.
* **Risk score** in [0, 1]: the adverse share of the predicted price excursion for the signal's
  trade, ``|adverse| / (|drawdown| + |rally|)``, the adverse side being the drawdown for LONG and
  the rally for SHORT. None for a NEUTRAL signal (no trade), or when both are 0 or missing.

Non-finite numbers become None. When the bot passes its own ``predictions`` dict as well as raw
outputs, the writer uses the dict's values and fills only the columns it lacks from the raw
outputs: the bot's dict wins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mlpred_cli.config import HORIZONS, MIN_SIGNAL_CONFIDENCE, SIGNAL_TYPES
from mlpred_cli.derive.finite_values import floats_or_none
from mlpred_cli.errors import InputError

RAW_OUTPUT_COUNT = 20
_RETURNS = slice(0, 4)
_LOGITS = slice(4, 16)
_DRAWDOWN_1H, _RALLY_1H, _DRAWDOWN_4H, _RALLY_4H = 16, 17, 18, 19
_LONG, _SHORT, _NEUTRAL = 0, 1, 2
_NUMERIC_KINDS = frozenset("biuf")

#: The bot's prediction keys -> ``ml_predictions`` columns.
PREDICTION_KEY_COLUMNS: dict[str, str] = {
    **{f"returns_{horizon}": f"predicted_return_{horizon}" for horizon in HORIZONS},
    **{f"direction_{horizon}": f"direction_{horizon}" for horizon in HORIZONS},
    **{f"confidence_{horizon}": f"direction_{horizon}_confidence" for horizon in HORIZONS},
    "risk_score": "risk_score",
    "max_drawdown": "max_drawdown_predicted",
    "max_rally": "max_rally_predicted",
    "signal_type": "signal_type",
    "signal_confidence": "signal_confidence",
    "primary_timeframe": "signal_timeframe",
}
_DIRECTION_KEYS = frozenset([f"direction_{horizon}" for horizon in HORIZONS] + ["signal_type"])
#: Keys whose value is a probability and must lie in [0, 1].
_PROBABILITY_KEYS = frozenset(
    [f"confidence_{horizon}" for horizon in HORIZONS] + ["signal_confidence", "risk_score"]
)
_ACCEPTED_KEYS_TEXT = ", ".join(PREDICTION_KEY_COLUMNS)


def as_raw_outputs(model_outputs: object) -> np.ndarray | None:
    """Validate the model's raw outputs (caller path): None -> None, otherwise exactly 20
    numbers (a 1 x 20 or 20 x 1 array is flattened), returned as a float64 copy.
    NaN and inf are accepted here and become None when interpreted."""
    if model_outputs is None:
        return None
    try:
        array = (
            model_outputs if isinstance(model_outputs, np.ndarray) else np.asarray(model_outputs)
        )
    except (ValueError, TypeError) as error:
        raise InputError(f"model_outputs must be {RAW_OUTPUT_COUNT} numbers: {error}") from None
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise InputError(f"model_outputs must be numeric, got dtype {array.dtype}")
    flat_shape = array.ndim == 1 or (array.ndim == 2 and 1 in array.shape)
    if array.size != RAW_OUTPUT_COUNT or not flat_shape:
        raise InputError(
            f"model_outputs must hold exactly {RAW_OUTPUT_COUNT} values (1-D, 1x20 or 20x1), "
            f"got shape {array.shape}"
        )
    return np.array(array, dtype=np.float64, copy=True).reshape(RAW_OUTPUT_COUNT)


def _number(key: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        raise InputError(f"predictions[{key!r}] must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        return None
    if key in _PROBABILITY_KEYS and not 0.0 <= number <= 1.0:
        raise InputError(f"predictions[{key!r}] must be between 0 and 1, got {number}")
    return number


def _direction(key: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.upper() not in SIGNAL_TYPES:
        raise InputError(
            f"predictions[{key!r}] must be one of {', '.join(SIGNAL_TYPES)}, got {value!r}"
        )
    return value.upper()


def _horizon(key: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in HORIZONS:
        raise InputError(
            f"predictions[{key!r}] must be one of {', '.join(HORIZONS)}, got {value!r}"
        )
    return value.lower()


def validate_predictions(predictions: object) -> dict[str, Any] | None:
    """Validate the bot's own predictions (caller path) and return a normalised shallow copy.

    None -> None. Otherwise a mapping with any subset of the keys in ``PREDICTION_KEY_COLUMNS``.
    Directions are normalised to upper case, ``primary_timeframe`` to a horizon name, numbers to
    float (NaN / inf -> None); confidences and ``risk_score`` must lie in [0, 1]. None values
    are kept as None. Unknown keys, wrong types and out-of-range values raise InputError.
    """
    if predictions is None:
        return None
    if not isinstance(predictions, Mapping):
        raise InputError(f"predictions must be a mapping (dict), got {type(predictions).__name__}")
    normalised: dict[str, Any] = {}
    for key, value in predictions.items():
        if key not in PREDICTION_KEY_COLUMNS:
            raise InputError(
                f"predictions has an unknown key {key!r}; accepted keys: {_ACCEPTED_KEYS_TEXT}"
            )
        if key in _DIRECTION_KEYS:
            normalised[key] = _direction(key, value)
        elif key == "primary_timeframe":
            normalised[key] = _horizon(key, value)
        else:
            normalised[key] = _number(key, value)
    return normalised


def prediction_columns(predictions: Mapping[str, Any]) -> dict[str, Any]:
    """A validated predictions dict as ``ml_predictions`` columns (``returns_1h`` ->
    ``predicted_return_1h``, ``confidence_1h`` -> ``direction_1h_confidence``, ...). Keys absent
    from the dict are absent from the result."""
    return {PREDICTION_KEY_COLUMNS[key]: value for key, value in predictions.items()}


def _finite_or_nan(values: np.ndarray) -> np.ndarray:
    """A float64 copy with NaN wherever a value is not finite (inf included)."""
    out = np.array(values, dtype=np.float64)
    out[~np.isfinite(out)] = np.nan
    return out


def _labels_or_none(indices: np.ndarray, valid: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    """``labels[index]`` per row as an object array, None where ``valid`` is False."""
    names: np.ndarray = np.array(labels, dtype=object)[indices]
    names[~valid] = None
    return names


def interpret_raw_outputs(raw: np.ndarray) -> dict[str, list[Any]]:
    """Interpret a batch of raw outputs (rows x 20) into ``ml_predictions`` columns aligned with
    the rows, following the rules of the module docstring. Plain Python values; None where a
    value is missing or not finite."""
    return {
        name: values.tolist() if values.dtype == object else floats_or_none(values)
        for name, values in interpret_raw_arrays(raw).items()
    }


def interpret_raw_arrays(raw: np.ndarray) -> dict[str, np.ndarray]:
    """``interpret_raw_outputs`` as arrays (the writer's form): float64 columns with NaN
    where a value is missing, label columns as object arrays with None."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != RAW_OUTPUT_COUNT:
        raise InputError(f"raw outputs must be rows x {RAW_OUTPUT_COUNT}, got shape {raw.shape}")
    rows = raw.shape[0]
    row_index = np.arange(rows)
    returns = raw[:, _RETURNS]
    logits = raw[:, _LOGITS].reshape(rows, len(HORIZONS), len(SIGNAL_TYPES))

    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        usable = np.isfinite(logits).all(axis=2)
        safe_logits = np.where(usable[:, :, None], logits, 0.0)
        exponentials = np.exp(safe_logits - safe_logits.max(axis=2, keepdims=True))
        probabilities = exponentials / exponentials.sum(axis=2, keepdims=True)
        direction = probabilities.argmax(axis=2)
        confidence = np.where(usable, probabilities.max(axis=2), np.nan)

        trade = usable & (direction != _NEUTRAL)
        has_candidate = trade.any(axis=1)
        has_usable = usable.any(axis=1)
        trade_horizon = np.where(trade, confidence, -1.0).argmax(axis=1)
        neutral_probability = probabilities[:, :, _NEUTRAL]
        neutral_horizon = np.where(usable, neutral_probability, -1.0).argmax(axis=1)
        horizon = np.where(has_candidate, trade_horizon, neutral_horizon)

        candidate_direction = direction[row_index, horizon]
        candidate_confidence = confidence[row_index, horizon]
        candidate_return = returns[row_index, horizon]
        agrees = ((candidate_direction == _LONG) & (candidate_return > 0.0)) | (
            (candidate_direction == _SHORT) & (candidate_return < 0.0)
        )
        accepted = has_candidate & (candidate_confidence >= MIN_SIGNAL_CONFIDENCE) & agrees
        signal = np.where(accepted, candidate_direction, _NEUTRAL)
        # A NEUTRAL signal speaks for the horizon most confident in NEUTRAL, not for the
        # rejected candidate (whose NEUTRAL probability can be tiny).
        timeframe = np.where(accepted, horizon, neutral_horizon)
        signal_confidence = np.where(
            accepted, candidate_confidence, neutral_probability[row_index, neutral_horizon]
        )
        signal_confidence[~has_usable] = np.nan

        drawdown = np.where(
            np.isfinite(raw[:, _DRAWDOWN_4H]), raw[:, _DRAWDOWN_4H], raw[:, _DRAWDOWN_1H]
        )
        rally = np.where(np.isfinite(raw[:, _RALLY_4H]), raw[:, _RALLY_4H], raw[:, _RALLY_1H])
        excursion = np.abs(drawdown) + np.abs(rally)
        adverse = np.where(signal == _LONG, np.abs(drawdown), np.abs(rally))
        risk = np.where(
            accepted & (excursion > 0.0),
            adverse / np.where(excursion > 0.0, excursion, 1.0),
            np.nan,
        )

    finite_or_nan = _finite_or_nan
    columns: dict[str, np.ndarray] = {}
    for position, name in enumerate(HORIZONS):
        columns[f"predicted_return_{name}"] = finite_or_nan(returns[:, position])
        columns[f"direction_{name}"] = _labels_or_none(
            direction[:, position], usable[:, position], SIGNAL_TYPES
        )
        columns[f"direction_{name}_confidence"] = finite_or_nan(confidence[:, position])
    columns["max_drawdown_predicted"] = finite_or_nan(drawdown)
    columns["max_rally_predicted"] = finite_or_nan(rally)
    columns["risk_score"] = finite_or_nan(risk)
    columns["signal_type"] = _labels_or_none(signal, has_usable, SIGNAL_TYPES)
    columns["signal_confidence"] = finite_or_nan(signal_confidence)
    columns["signal_timeframe"] = _labels_or_none(timeframe, has_usable, HORIZONS)
    return columns
