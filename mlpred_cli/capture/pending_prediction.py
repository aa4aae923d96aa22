"""What the caller's path hands to the background writer: validated copies, nothing computed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpred_cli.derive.indicators import MarketArrays


@dataclass(slots=True)
class PendingPrediction:
    """One logged prediction waiting for the writer thread.

    Everything here is a private copy made at call time, so the caller may reuse its buffers.
    ``logged_at`` is epoch seconds (UTC) of the call.
    """

    prediction_id: uuid.UUID
    symbol: str
    model_version: str
    features: np.ndarray
    raw_outputs: np.ndarray | None
    predictions: dict[str, Any] | None
    market: MarketArrays | None
    inference_time_ms: float | None
    logged_at: float
    sequence: int = 0  # set by the writer when queued: the order of logging
    segment: int = -1  # the journal segment holding it (-1: in memory only)
    store_payload: bool = False  # journaled by a logger with store_features=True
    attributions: np.ndarray | None = None  # float64, one per feature (NaN: not given)
