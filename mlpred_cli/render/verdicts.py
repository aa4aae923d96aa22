"""The sentences of ``compare-models``: one verdict per horizon, and the ``+1.2 pts`` /
``p = 0.004`` figures they quote."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlpred_cli.analysis.compare import HorizonComparison, ModelComparison

#: How each test is named in a verdict.
TEST_NAMES = {"mcnemar_exact": "paired McNemar", "two_proportion_z": "unpaired z-test"}


def accuracy_points(difference: float) -> str:
    """An accuracy difference (a fraction) in percentage points: ``+12.3 pts``."""
    return f"{difference * 100:+.1f} pts"


def p_value_text(p_value: float) -> str:
    """``p = 0.004``; scientific below 0.001 (``p = 3.2e-05``)."""
    return f"p = {p_value:.3f}" if p_value >= 0.001 else f"p = {p_value:.1e}"


def horizon_verdict(item: HorizonComparison) -> str:
    """The verdict of one horizon, e.g. ``B better at 1h: +12.3 pts, p = 0.001 (paired
    McNemar)`` or ``no significant difference at 1h (...)``; follows ``item.better``."""
    horizon = item.horizon
    if item.test is None:
        return f"not enough data at {horizon}: a version has no outcomes"
    test = TEST_NAMES.get(item.test, item.test)
    difference, p_value = item.accuracy_difference, item.p_value
    if difference is None or p_value is None:
        return f"no significant difference at {horizon} ({test}: not testable)"
    if item.better is not None:
        shown = difference if item.better == "B" else -difference
        figures = f"{accuracy_points(shown)}, {p_value_text(p_value)}"
        return f"{item.better} better at {horizon}: {figures} ({test})"
    figures = f"{accuracy_points(difference)}, {p_value_text(p_value)}, {test}"
    return f"no significant difference at {horizon} ({figures})"


def with_verdicts(comparison: ModelComparison) -> ModelComparison:
    """The comparison with each horizon's ``verdict`` sentence filled in."""
    horizons = [replace(item, verdict=horizon_verdict(item)) for item in comparison.horizons]
    return replace(comparison, horizons=horizons)
