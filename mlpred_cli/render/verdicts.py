"""The sentences of ``compare-models``: one verdict per horizon, and the ``+1.2 pts`` /
``p = 0.004`` figures they quote."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from mlpred_cli.config import MIN_PAIRED_PREDICTIONS

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


#: What a verdict adds when only the naive test (independent outcomes) is significant.
NAIVE_ONLY = "significant only if overlapping outcomes were independent"


def _naive_note(item: HorizonComparison, p_value: float) -> str:
    """``; naive p = ...`` when the overlap-corrected p-value differs from the naive one
    (outcomes overlapped), else nothing; says when only the naive one is significant."""
    if item.p_value_overlap is None or item.p_value_overlap == p_value:
        return ""
    if item.better is None and item.better_naive is not None:
        return f"; naive {p_value_text(p_value)}, {NAIVE_ONLY}"
    return f"; naive {p_value_text(p_value)}"


def horizon_verdict(item: HorizonComparison, min_pairs: int = MIN_PAIRED_PREDICTIONS) -> str:
    """The verdict of one horizon, e.g. ``B better at 1h: +12.3 pts, p = 0.001 (paired
    McNemar)`` or ``no significant difference at 1h (...)``; follows ``item.better``. The
    p-value quoted is the overlap-corrected one; where outcomes overlapped the naive one is
    added (``overlap-corrected; naive p = ...``), with ``NAIVE_ONLY`` when only it is
    significant. A ``confounded`` horizon (fewer than ``min_pairs`` pairs) names no winner
    and says why."""
    horizon = item.horizon
    if item.confounded:
        return confounded_verdict(item, min_pairs)
    if item.test is None:
        return f"not enough data at {horizon}: a version has no outcomes"
    test = TEST_NAMES.get(item.test, item.test)
    difference, p_value = item.accuracy_difference, item.p_value
    if difference is None or p_value is None:
        return f"no significant difference at {horizon} ({test}: not testable)"
    note = _naive_note(item, p_value)
    if note:
        test = f"{test}, overlap-corrected{note}"
        p_value = p_value if item.p_value_overlap is None else item.p_value_overlap
    if item.better is not None:
        shown = difference if item.better == "B" else -difference
        figures = f"{accuracy_points(shown)}, {p_value_text(p_value)}"
        return f"{item.better} better at {horizon}: {figures} ({test})"
    figures = f"{accuracy_points(difference)}, {p_value_text(p_value)}, {test}"
    return f"no significant difference at {horizon} ({figures})"


def confounded_verdict(item: HorizonComparison, min_pairs: int) -> str:
    """The sentence of a horizon with too few pairs: no winner, and why."""
    figures = ""
    if item.accuracy_difference is not None and item.p_value is not None:
        test = TEST_NAMES.get(item.test or "", item.test)
        figures = (
            f" ({accuracy_points(item.accuracy_difference)}, {p_value_text(item.p_value)}, {test})"
        )
    return (
        f"no winner at {item.horizon}: {item.pairs} paired predictions (fewer than "
        f"{min_pairs}); the unpaired comparison{figures} is confounded by what each version "
        "predicted (different symbols or periods, see coverage)"
    )


def with_verdicts(comparison: ModelComparison) -> ModelComparison:
    """The comparison with each horizon's ``verdict`` sentence filled in."""
    horizons = [
        replace(item, verdict=horizon_verdict(item, comparison.min_pairs))
        for item in comparison.horizons
    ]
    return replace(comparison, horizons=horizons)
