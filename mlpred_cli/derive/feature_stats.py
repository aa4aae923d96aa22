"""Input features: validation on the caller's path, the feature hash, and per-batch statistics.

A prediction's features are either one vector (usually 240 values) or a 2-D window
``lookback x features`` whose last row is the vector the model saw most recently.
NaN and inf are valid input: they are counted, never rejected.

Statistics (``feature_stats_columns``), all of the vector (the window's last row):

* ``features_mean`` / ``features_std`` (population, ddof 0) / ``features_min`` /
  ``features_max`` over its finite values; None when it has no finite value;
* ``nan_count``, ``inf_count``;
* ``zero_variance_count``: the number of features whose values are identical in every row of
  the window. NaN counts as equal to NaN, so an all-NaN column (a dead feature) counts as
  constant, while a column mixing NaN and numbers does not. None for a 1-D vector or a
  single-row window, where constancy cannot be observed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlpred_cli.derive.finite_values import floats_or_none
from mlpred_cli.errors import InputError
from mlpred_cli.store.prediction_row import FEATURE_STAT_COLUMNS

#: Array kinds accepted as numeric features: bool, signed/unsigned integers, floats.
_NUMERIC_KINDS = frozenset("biuf")
#: Hex digits of the MD5 kept by the feature hash (15 fit a signed 64-bit BIGINT).
FEATURE_HASH_HEX_DIGITS = 15
#: The statistics that are integers (the others are floats).
_INT_STATS = frozenset(
    {"features_count", "features_hash", "lookback_periods", "nan_count", "inf_count",
     "zero_variance_count"}
)  # fmt: skip


def as_feature_array(features: object) -> np.ndarray:
    """Validate the caller's features and return a float64, C-contiguous copy.

    Accepts a list, tuple or array: a 1-D vector, or a 2-D window (lookback x features).
    Raises InputError for None, empty input, 0-D or >2-D arrays, ragged or non-numeric data.
    """
    if features is None:
        raise InputError("features are required, got None")
    if isinstance(features, np.ndarray):
        array = features
    else:
        try:
            array = np.asarray(features)
        except (ValueError, TypeError) as error:
            raise InputError(f"features must be a numeric vector or window: {error}") from None
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise InputError(f"features must be numeric, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise InputError(f"features must be 1-D or 2-D, got {array.ndim}-D array")
    if array.size == 0:
        raise InputError(f"features must not be empty, got shape {array.shape}")
    return np.array(array, dtype=np.float64, order="C", copy=True)


def feature_hash(features: np.ndarray) -> int:
    """The feature hash of DESIGN.md: MD5 of the features as little-endian float32 bytes
    (C order, the whole window when 2-D), first 15 hex digits as a non-negative integer."""
    return _md5_prefix(np.ascontiguousarray(features, dtype="<f4"))


def format_feature_hash(value: int) -> str:
    """A feature hash as 16 zero-padded lower-case hex digits."""
    if value < 0:
        raise InputError(f"feature hash must be non-negative, got {value}")
    return f"{value:016x}"


def _vector_stats(vectors: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics of each row of ``vectors`` (rows x features) over its finite values (NaN
    where a row has none)."""
    finite = np.isfinite(vectors)
    if finite.all():  # the usual case: one pass to check, then the plain reductions
        zeros = np.zeros(len(vectors), dtype=np.int64)
        return {
            "features_mean": vectors.mean(axis=1),
            "features_std": vectors.std(axis=1),
            "features_min": vectors.min(axis=1),
            "features_max": vectors.max(axis=1),
            "nan_count": zeros,
            "inf_count": zeros.copy(),
        }
    nan_mask = np.isnan(vectors)
    inf_mask = np.isinf(vectors)
    finite_count = finite.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        zeroed = np.where(finite, vectors, 0.0)
        mean = zeroed.sum(axis=1) / finite_count
        deviation = np.where(finite, vectors - mean[:, None], 0.0)
        std = np.sqrt(np.einsum("ij,ij->i", deviation, deviation) / finite_count)
        minimum = np.where(finite, vectors, np.inf).min(axis=1)
        maximum = np.where(finite, vectors, -np.inf).max(axis=1)
        empty = finite_count == 0
        for stat in (mean, std, minimum, maximum):
            stat[empty] = np.nan
    return {
        "features_mean": mean,
        "features_std": std,
        "features_min": minimum,
        "features_max": maximum,
        "nan_count": nan_mask.sum(axis=1).astype(np.int64),
        "inf_count": inf_mask.sum(axis=1).astype(np.int64),
    }


def _zero_variance_counts(windows: np.ndarray) -> np.ndarray:
    """Per window (windows x rows x features, rows >= 2): features identical in every row."""
    first_row = windows[:, :1, :]
    varies = (windows[:, 1:, :] != first_row).any(axis=1)
    # NaN != NaN flags columns starting with NaN as varying; all-NaN columns are constant.
    suspect = varies & np.isnan(first_row[:, 0, :])
    if suspect.any():
        window_index, feature_index = np.nonzero(suspect)
        all_nan = np.isnan(windows[window_index, :, feature_index]).all(axis=1)
        varies[window_index[all_nan], feature_index[all_nan]] = False
    counts: np.ndarray = windows.shape[2] - varies.sum(axis=1)
    return counts


def _md5_prefix(data: np.ndarray) -> int:
    """First 15 hex digits of the MD5 of a C-contiguous array's bytes, as an integer."""
    digest = hashlib.md5(data.data, usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - 4 * FEATURE_HASH_HEX_DIGITS)


def _md5_prefixes(rows: np.ndarray) -> np.ndarray:
    """``_md5_prefix`` of each row of a C-contiguous 2-D array, as int64."""
    md5 = hashlib.md5
    prefixes = b"".join(md5(row.data, usedforsecurity=False).digest()[:8] for row in rows)
    shift = 64 - 4 * FEATURE_HASH_HEX_DIGITS
    hashes: np.ndarray = (np.frombuffer(prefixes, dtype=">u8") >> shift).astype(np.int64)
    return hashes


def _group_stats(group: list[np.ndarray]) -> dict[str, np.ndarray]:
    """All statistics for arrays of one shape, computed once for the group where possible."""
    size = len(group)
    shape = group[0].shape
    if len(shape) == 1:
        vectors = np.concatenate(group).reshape(size, shape[0])
        hashes = _md5_prefixes(np.ascontiguousarray(vectors, dtype="<f4"))
        lookback, zero_variance = 1, np.full(size, -1, dtype=np.int64)
    else:
        # Windows are large: stacking them costs more memory traffic than it saves calls,
        # so only the last rows are stacked; hash and constancy go window by window.
        vectors = np.stack([window[-1] for window in group])
        hashes = np.array(
            [_md5_prefix(np.ascontiguousarray(window, dtype="<f4")) for window in group],
            dtype=np.int64,
        )
        lookback = shape[0]
        if lookback >= 2:
            zero_variance = np.array(
                [int(_zero_variance_counts(window[None])[0]) for window in group],
                dtype=np.int64,
            )
        else:
            zero_variance = np.full(size, -1, dtype=np.int64)
    columns = _vector_stats(vectors)
    columns["features_count"] = np.full(size, vectors.shape[1], dtype=np.int64)
    columns["features_hash"] = hashes
    columns["lookback_periods"] = np.full(size, lookback, dtype=np.int64)
    columns["zero_variance_count"] = zero_variance
    return columns


def feature_stats_arrays(arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Feature statistics of a batch as arrays aligned with ``arrays`` (the writer's form).

    Float statistics are float64 with NaN where a vector has no finite value; counts and the
    hash are int64; ``zero_variance_count`` is -1 where it cannot be observed. Arrays of
    equal shape are stacked and each statistic is computed once per shape.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for position, array in enumerate(arrays):
        groups.setdefault(array.shape, []).append(position)
    if len(groups) == 1:
        return _group_stats(list(arrays))
    columns: dict[str, np.ndarray] = {
        name: np.empty(len(arrays), dtype=np.int64 if name in _INT_STATS else np.float64)
        for name in FEATURE_STAT_COLUMNS
    }
    for positions in groups.values():
        group_columns = _group_stats([arrays[position] for position in positions])
        for name, values in group_columns.items():
            columns[name][positions] = values
    return columns


def feature_stats_columns(arrays: Sequence[np.ndarray]) -> dict[str, list[Any]]:
    """Feature statistics of a batch, as ``ml_predictions`` columns aligned with ``arrays``.

    ``arrays`` are outputs of ``as_feature_array`` (1-D vectors or 2-D windows). Values are
    plain Python int / float / None; see the module docstring for the definitions.
    """
    columns: dict[str, list[Any]] = {}
    for name, values in feature_stats_arrays(arrays).items():
        if name in _INT_STATS:
            cells: list[Any] = values.tolist()
            if name == "zero_variance_count":
                cells = [None if cell < 0 else cell for cell in cells]
            columns[name] = cells
        else:
            columns[name] = floats_or_none(values)
    return columns
