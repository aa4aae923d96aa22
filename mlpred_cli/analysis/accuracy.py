"""Accuracy tables: database counts in, accuracies with Wilson intervals out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from mlpred_cli.analysis.metrics import proportion, wilson_interval, wilson_intervals


def accuracy_with_interval(correct: int, total: int, prefix: str = "accuracy") -> dict[str, Any]:
    """``{prefix: share, prefix_low: ..., prefix_high: ...}``; all ``None`` when ``total`` is 0."""
    low, high = wilson_interval(correct, total)
    return {prefix: proportion(correct, total), f"{prefix}_low": low, f"{prefix}_high": high}


def add_accuracy_columns(counts: pd.DataFrame, horizons: Sequence[str]) -> pd.DataFrame:
    """From ``n_h``/``correct_h`` count columns, the ``accuracy_h``, ``accuracy_h_low`` and
    ``accuracy_h_high`` columns (None where ``n_h`` is 0); the ``correct_h`` columns go."""
    added: dict[str, pd.Series] = {}
    for horizon in horizons:
        intervals = wilson_intervals(counts[f"correct_{horizon}"], counts[f"n_{horizon}"])
        for suffix, values in zip(("", "_low", "_high"), intervals, strict=True):
            added[f"accuracy_{horizon}{suffix}"] = pd.Series(values, index=counts.index)
    kept = counts.drop(columns=[f"correct_{horizon}" for horizon in horizons])
    return pd.concat([kept, pd.DataFrame(added, index=counts.index)], axis=1)


def accuracy_columns(by: str, horizons: Sequence[str]) -> list[str]:
    """Column order of an accuracy table grouped by ``by``."""
    names = [by, "total", "n_outcomes", "avg_confidence"]
    for horizon in horizons:
        names += [
            f"n_{horizon}",
            f"accuracy_{horizon}",
            f"accuracy_{horizon}_low",
            f"accuracy_{horizon}_high",
            f"n_{horizon}_effective",
            f"accuracy_{horizon}_overlap_low",
            f"accuracy_{horizon}_overlap_high",
        ]
    return names
