"""Feature validation, hash and statistics (pure numpy, no database)."""

from __future__ import annotations

import hashlib
import math
import struct

import numpy as np
import pytest

from mlpred_cli.derive.feature_stats import (
    as_feature_array,
    feature_hash,
    feature_stats_columns,
    format_feature_hash,
)
from mlpred_cli.errors import InputError


def _reference_hash(values: list[float]) -> int:
    """The DESIGN.md rule written with struct instead of numpy."""
    data = struct.pack(f"<{len(values)}f", *values)
    return int(hashlib.md5(data).hexdigest()[:15], 16)


# ------------------------------------------------------------------ as_feature_array


def test_list_becomes_float64_copy() -> None:
    array = as_feature_array([1, 2, 3])
    assert array.dtype == np.float64
    assert array.flags.c_contiguous
    assert array.tolist() == [1.0, 2.0, 3.0]


def test_array_is_copied_not_viewed() -> None:
    original = np.arange(6, dtype=np.float32).reshape(2, 3)
    array = as_feature_array(original)
    original[1, 2] = 99.0
    assert array[1, 2] == 5.0
    assert array.dtype == np.float64


def test_fortran_ordered_window_becomes_c_contiguous() -> None:
    window = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    array = as_feature_array(window)
    assert array.flags.c_contiguous
    assert array[2].tolist() == [8.0, 9.0, 10.0, 11.0]


def test_nan_and_inf_are_valid() -> None:
    array = as_feature_array([np.nan, np.inf, -np.inf, 1.0])
    assert np.isnan(array[0]) and np.isinf(array[1])


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (None, "required"),
        ([], "empty"),
        (np.empty((0, 240)), "empty"),
        (np.empty((3, 0)), "empty"),
        (5.0, "0-D"),
        (np.zeros((2, 3, 4)), "got 3-D array"),
        (["a", "b"], "numeric"),
        ([1.0, None], "numeric"),
        ([[1.0, 2.0], [3.0]], "numeric vector or window"),
        (np.array([1 + 2j]), "numeric"),
        ("abc", "numeric"),
    ],
)
def test_invalid_features_raise_input_error(features: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        as_feature_array(features)


# ------------------------------------------------------------------ hash


def test_hash_matches_reference_rule() -> None:
    values = [1.0, 2.0, -0.5, 3.25]
    assert feature_hash(np.array(values)) == _reference_hash(values)


def test_hash_uses_float32_so_float32_and_float64_agree() -> None:
    values = np.array([0.1, 0.2, 0.3])
    assert feature_hash(values) == feature_hash(values.astype(np.float32))


def test_hash_of_window_covers_every_row() -> None:
    window = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert feature_hash(window) == _reference_hash([1.0, 2.0, 3.0, 4.0])
    assert feature_hash(window) != feature_hash(window[-1])


def test_hash_fits_signed_bigint() -> None:
    for seed in range(20):
        value = feature_hash(np.random.default_rng(seed).normal(size=240))
        assert 0 <= value < 16**15 <= 2**63 - 1


def test_format_feature_hash_is_16_hex_digits() -> None:
    assert format_feature_hash(255) == "00000000000000ff"
    assert format_feature_hash(16**15 - 1) == "0fffffffffffffff"
    with pytest.raises(InputError, match="non-negative"):
        format_feature_hash(-1)


# ------------------------------------------------------------------ statistics


def _stats_of(*arrays: object) -> dict[str, list[object]]:
    return feature_stats_columns([as_feature_array(array) for array in arrays])


def test_vector_statistics_over_finite_values() -> None:
    columns = _stats_of([1.0, 2.0, 3.0, 4.0, np.nan, np.inf, -np.inf])
    # finite values 1..4: mean 2.5, population variance (2.25 + .25 + .25 + 2.25) / 4 = 1.25
    assert columns["features_mean"] == [2.5]
    assert columns["features_std"] == [pytest.approx(math.sqrt(1.25))]
    assert columns["features_min"] == [1.0]
    assert columns["features_max"] == [4.0]
    assert columns["nan_count"] == [1]
    assert columns["inf_count"] == [2]
    assert columns["features_count"] == [7]
    assert columns["lookback_periods"] == [1]
    assert columns["zero_variance_count"] == [None]


def test_vector_without_finite_values_has_no_statistics() -> None:
    columns = _stats_of([np.nan, np.inf, np.nan])
    for name in ("features_mean", "features_std", "features_min", "features_max"):
        assert columns[name] == [None]
    assert columns["nan_count"] == [2]
    assert columns["inf_count"] == [1]


def test_window_statistics_use_last_row_and_count_constant_columns() -> None:
    window = [
        # const  varies  all-NaN  NaN-then-1  const-inf
        [5.0, 1.0, np.nan, np.nan, np.inf],
        [5.0, 2.0, np.nan, 1.0, np.inf],
        [5.0, 1.0, np.nan, 1.0, np.inf],
    ]
    columns = _stats_of(window)
    # constant: column 0 (5, 5, 5), column 2 (all NaN), column 4 (inf, inf, inf)
    assert columns["zero_variance_count"] == [3]
    assert columns["lookback_periods"] == [3]
    assert columns["features_count"] == [5]
    # last row: 5, 1, NaN, 1, inf -> finite 5, 1, 1
    assert columns["features_mean"] == [pytest.approx(7.0 / 3.0)]
    assert columns["features_min"] == [1.0]
    assert columns["features_max"] == [5.0]
    assert columns["nan_count"] == [1]
    assert columns["inf_count"] == [1]
    assert columns["features_hash"] == [feature_hash(np.array(window))]


def test_window_of_all_constant_columns() -> None:
    columns = _stats_of(np.ones((4, 6)))
    assert columns["zero_variance_count"] == [6]
    assert columns["features_std"] == [0.0]


def test_single_row_window_has_no_zero_variance_count() -> None:
    columns = _stats_of([[1.0, 2.0, 3.0]])
    assert columns["zero_variance_count"] == [None]
    assert columns["lookback_periods"] == [1]
    assert columns["features_mean"] == [2.0]


def test_mixed_shapes_keep_batch_order() -> None:
    arrays = [
        np.array([1.0, 3.0]),
        np.array([[0.0, 1.0], [0.0, 2.0], [0.0, 6.0]]),
        np.array([10.0, 20.0, 30.0]),
        np.array([5.0, 7.0]),
    ]
    columns = _stats_of(*arrays)
    assert columns["features_mean"] == [2.0, 3.0, 20.0, 6.0]
    assert columns["features_count"] == [2, 2, 3, 2]
    assert columns["lookback_periods"] == [1, 3, 1, 1]
    assert columns["zero_variance_count"] == [None, 1, None, None]
    assert columns["features_hash"] == [feature_hash(array) for array in arrays]


def test_values_are_plain_python_types() -> None:
    columns = _stats_of([1.0, np.nan], [[1.0, 2.0], [1.0, 3.0]])
    for name, values in columns.items():
        for value in values:
            assert value is None or type(value) in (int, float), (name, type(value))
    assert type(columns["features_hash"][0]) is int
    assert type(columns["nan_count"][0]) is int


def test_batch_statistics_equal_one_by_one() -> None:
    rng = np.random.default_rng(7)
    arrays = [rng.normal(size=240) for _ in range(50)]
    arrays[3][10] = np.nan
    arrays[9][:] = np.inf
    batch = feature_stats_columns(arrays)
    for position, array in enumerate(arrays):
        single = feature_stats_columns([array])
        for name in batch:
            assert batch[name][position] == pytest.approx(single[name][0], nan_ok=True), name
    finite = arrays[3][np.isfinite(arrays[3])]
    assert batch["features_mean"][3] == pytest.approx(float(np.mean(finite)))
    assert batch["features_std"][3] == pytest.approx(float(np.std(finite)))


def test_empty_batch_gives_empty_columns() -> None:
    columns = feature_stats_columns([])
    assert columns["features_mean"] == []
    assert columns["zero_variance_count"] == []
