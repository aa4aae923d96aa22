"""One-sided CUSUM on standardized daily figures (negative = worse).

``S_0 = 0``, ``S_d = max(0, S_(d-1) - z_d - k)``: every day worse than the allowance ``k``
(in standard errors) adds to the statistic, every better day takes from it, so a sustained
drop of delta standard errors a day crosses a limit ``h`` after about ``h / (delta - k)`` days
while a stable series stays near 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def lower_cusum(z: np.ndarray, allowance: float | np.ndarray) -> np.ndarray:
    """The CUSUM statistic after each day of ``z`` (worse = negative), starting at 0;
    ``allowance`` is one value or one per day."""
    values = np.asarray(z, dtype=float)
    allowances = np.broadcast_to(np.asarray(allowance, dtype=float), values.shape)
    statistic = np.empty(len(values), dtype=float)
    level = 0.0
    for index, value in enumerate(values):
        level = max(0.0, level - float(value) - float(allowances[index]))
        statistic[index] = level
    return statistic


@dataclass(frozen=True)
class Excursion:
    """The run of the CUSUM that holds its peak in the judged days: ``peak`` its value at
    ``peak_index``, ``start_index`` the first day of the run (the estimated change point),
    ``first_warning`` / ``first_critical`` the first judged days at or above the limits
    (None when never)."""

    peak: float
    peak_index: int
    start_index: int
    first_warning: int | None
    first_critical: int | None


def excursion(
    statistic: np.ndarray, judged_from: int, warning_limit: float, critical_limit: float
) -> Excursion:
    """The ``Excursion`` of ``statistic`` over the days from ``judged_from`` on (the verdict
    is the peak over those days, so an alarm raised in them stays visible)."""
    judged = statistic[judged_from:]
    peak_index = judged_from + int(np.argmax(judged))
    start_index = peak_index
    while start_index > 0 and statistic[start_index - 1] > 0:
        start_index -= 1

    def first_at(limit: float) -> int | None:
        hits = np.flatnonzero(judged >= limit)
        return judged_from + int(hits[0]) if hits.size else None

    return Excursion(
        peak=float(statistic[peak_index]),
        peak_index=peak_index,
        start_index=start_index,
        first_warning=first_at(warning_limit),
        first_critical=first_at(critical_limit),
    )
