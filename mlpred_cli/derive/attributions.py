"""Caller-supplied feature attributions (e.g. SHAP values): validation on the caller's path.

An attribution vector is aligned with the feature vector (a window's last row): one value per
feature. The caller gives an array-like of that length, or a mapping of feature index or
feature name to value (missing features are null). NaN is accepted and stored as null;
+-inf is rejected, since an infinite attribution is a bug in the explainer, not a value.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from mlpred_cli.errors import InputError

#: Array kinds accepted as attribution values: signed/unsigned integers, floats (not bool).
_NUMERIC_KINDS = frozenset("iuf")


def as_attributions(
    attributions: object, width: int, feature_positions: Mapping[str, int] | None = None
) -> np.ndarray:
    """Validate the caller's attributions for a feature vector of ``width`` values and return
    a float64 copy of length ``width`` (NaN where the mapping gives no value).

    Accepts a 1-D array-like of ``width`` numbers (also shape ``(1, width)``, what an
    explainer returns for one sample), or a mapping ``{index: value}`` / ``{name: value}``
    (names need ``feature_positions``, name -> index, from ``name_positions``). Raises
    InputError for a wrong length, non-numeric or bool values, +-inf, an index out of
    range, an unknown name, or a feature given twice.
    """
    if isinstance(attributions, Mapping):
        return _from_mapping(attributions, width, feature_positions)
    if _is_labelled_series(attributions, width):
        # a pandas Series keyed by feature name (or index), maybe in another order
        return _from_mapping(dict(attributions.items()), width, feature_positions)  # type: ignore[attr-defined]
    if isinstance(attributions, list | tuple) and any(
        isinstance(value, bool | np.bool_) for value in attributions
    ):  # numpy would take True as 1
        raise InputError("attributions must be numbers, got a bool")
    try:
        array = np.asarray(attributions)
    except (ValueError, TypeError) as error:
        raise InputError(f"attributions must be a numeric vector or a mapping: {error}") from None
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise InputError(f"attributions must be numbers, got dtype {array.dtype}")
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1:
        raise InputError(f"attributions must be 1-D, got shape {array.shape}")
    if array.shape[0] != width:
        raise InputError(
            f"attributions have {array.shape[0]} values, the feature vector has {width}"
        )
    vector = np.array(array, dtype=np.float64, copy=True)
    if np.isinf(vector).any():
        raise InputError(f"attributions must not be infinite (index {_first_inf(vector)})")
    return vector


def _is_labelled_series(value: object, width: int) -> bool:
    """True for a pandas Series whose index is not the positions 0..width-1 in order."""
    index = getattr(value, "index", None)
    if index is None or not hasattr(value, "items") or not hasattr(index, "equals"):
        return False
    return not (len(index) == width and index.equals(range(width)))


def _first_inf(vector: np.ndarray) -> int:
    return int(np.flatnonzero(np.isinf(vector))[0])


def _from_mapping(
    attributions: Mapping[object, object], width: int, positions: Mapping[str, int] | None
) -> np.ndarray:
    indices: list[int] = []
    values: list[float] = []
    names: Mapping[str, int] | None = None
    for key, value in attributions.items():
        if isinstance(key, str):
            if names is None:
                names = _checked_names(positions, width)
            index = names.get(key)
            if index is None:
                raise InputError(f"attributions: unknown feature name {key!r}")
        elif type(key) is int and 0 <= key < width:  # the usual case, without ABC checks
            index = key
        else:
            index = _index(key, width)
        indices.append(index)
        values.append(value if type(value) is float else _number(key, value))
    if len(set(indices)) != len(indices):
        raise InputError(f"attributions: feature {_first_repeated(indices)} is given twice")
    given = np.array(values, dtype=np.float64)
    infinite = np.flatnonzero(np.isinf(given))
    if infinite.size:
        key = list(attributions)[int(infinite[0])]
        raise InputError(f"attributions[{key!r}] must not be infinite")
    vector = np.full(width, np.nan)
    vector[indices] = given
    return vector


def _first_repeated(indices: list[int]) -> int:
    seen: set[int] = set()
    for index in indices:
        if index in seen:
            return index
        seen.add(index)
    return -1


def _index(key: object, width: int) -> int:
    if not isinstance(key, numbers.Integral) or isinstance(key, bool | np.bool_):
        raise InputError(f"attributions keys must be feature indices or names, got {key!r}")
    index = int(key)
    if not 0 <= index < width:
        raise InputError(f"attributions: feature index {index} is out of range 0..{width - 1}")
    return index


def _checked_names(positions: Mapping[str, int] | None, width: int) -> Mapping[str, int]:
    if positions is None:
        raise InputError(
            "attributions keyed by feature name need the logger's feature_names; "
            "pass feature_names=[...] to MLPredictionLogger or key by index"
        )
    if len(positions) != width:
        raise InputError(
            f"the logger has {len(positions)} feature_names, the feature vector has {width}"
        )
    return positions


def _number(key: object, value: object) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise InputError(f"attributions[{key!r}] must be a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise InputError(f"attributions[{key!r}] is out of the float64 range") from None


def name_positions(feature_names: Sequence[str] | None) -> dict[str, int] | None:
    """The logger's feature names as name -> index; InputError for non-text or repeated
    names."""
    if feature_names is None:
        return None
    if isinstance(feature_names, str):
        raise InputError("feature_names must be a sequence of names, got a string")
    names = tuple(feature_names)
    for name in names:
        if not isinstance(name, str) or not name:
            raise InputError(f"feature_names must be non-empty strings, got {name!r}")
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise InputError(f"feature_names repeat {', '.join(repeated)}")
    return {name: index for index, name in enumerate(names)}
