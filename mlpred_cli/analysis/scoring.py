"""Which rows of a prediction frame count as scored at a horizon, and whether they were right.

The frame side of the rule ``store.prediction_queries.is_scored`` states in SQL: a row is
scored at a horizon when both its predicted and its actual direction are known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def scored_mask(frame: pd.DataFrame, horizon: str) -> pd.Series:
    """True for the rows with a predicted and an actual direction at ``horizon``."""
    return frame[f"actual_direction_{horizon}"].notna() & frame[f"direction_{horizon}"].notna()


def correct_values(frame: pd.DataFrame, horizon: str) -> pd.Series:
    """True where ``accuracy_<horizon>`` says the row was right (False, None or NaN: not)."""
    return frame[f"accuracy_{horizon}"].map(lambda v: v is True or v == 1)


def scored_rows(frame: pd.DataFrame, horizon: str) -> pd.DataFrame:
    """The scored rows at ``horizon`` with a 0/1 ``correct`` column."""
    rows = frame[scored_mask(frame, horizon)].copy()
    rows["correct"] = correct_values(rows, horizon).astype(int)
    return rows


def correct_flags(frame: pd.DataFrame, horizon: str) -> np.ndarray:
    """1.0 / 0.0 per scored row at ``horizon``; NaN for the rows that are not scored."""
    scored = scored_mask(frame, horizon).to_numpy()
    return np.where(scored, correct_values(frame, horizon).to_numpy(float), np.nan)
