"""Feature importance from caller-supplied attributions (e.g. SHAP values given to
``log_prediction(..., attributions=...)``): the mean absolute attribution of each feature."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AttributionImportance:
    """Per feature: ``scores`` = mean |phi| over the rows where its attribution was given (0
    when never given); ``usage_counts`` = rows with a finite, non-zero phi; ``given`` = rows
    with a finite phi."""

    scores: np.ndarray
    usage_counts: np.ndarray
    given: np.ndarray


def attribution_importance(attributions: np.ndarray) -> AttributionImportance:
    """Aggregate ``attributions`` (shape (features, rows); NaN where an entry was null or
    non-finite) into the mean |phi| per feature. A row with a null phi for a feature is left
    out of that feature only."""
    if attributions.ndim != 2:
        raise ValueError("attributions must be a (features, rows) matrix")
    finite = np.isfinite(attributions)
    given = finite.sum(axis=1)
    magnitudes = np.where(finite, np.abs(attributions), 0.0).sum(axis=1)
    scores = np.divide(magnitudes, given, out=np.zeros(len(given)), where=given > 0)
    usage = np.count_nonzero(finite & (attributions != 0), axis=1)
    return AttributionImportance(scores, np.asarray(usage), np.asarray(given))
