"""Text sparklines: a series of numbers as block characters (``▁▂▃▄▅▆▇█``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlpred_cli.analysis.feature_importance import ImportanceView

#: Blocks of the text sparkline, lowest first.
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None]) -> str:
    """One block character per value, scaled from the series' minimum (▁) to its maximum (█);
    a constant series is all ▄, a missing value is a space."""
    known = [value for value in values if value is not None and math.isfinite(value)]
    if not known:
        return " " * len(values)
    low, high = min(known), max(known)
    top = len(SPARK_BLOCKS) - 1
    marks = []
    for value in values:
        if value is None or not math.isfinite(value):
            marks.append(" ")
        elif high == low:
            marks.append(SPARK_BLOCKS[top // 2])
        else:
            marks.append(SPARK_BLOCKS[round((value - low) / (high - low) * top)])
    return "".join(marks)


def with_trends(view: ImportanceView) -> ImportanceView:
    """The view with each feature's ``trend`` (last key): the sparkline of its score
    history."""
    features = [
        {**feature, "trend": sparkline(view.score_history[feature["feature_name"]])}
        for feature in view.features
    ]
    return replace(view, features=features)
