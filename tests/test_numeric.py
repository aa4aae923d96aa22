"""floats_or_none: plain lists with None for NaN and inf, at any depth."""

from __future__ import annotations

import numpy as np

from mlpred_cli.derive.finite_values import floats_or_none


def test_vector_and_window() -> None:
    assert floats_or_none(np.array([1.0, np.nan, np.inf, -2.5])) == [1.0, None, None, -2.5]
    window = np.array([[1.0, -np.inf], [np.nan, 4.0]])
    assert floats_or_none(window) == [[1.0, None], [None, 4.0]]
    assert floats_or_none(np.array([], dtype=float)) == []
