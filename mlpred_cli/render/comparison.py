"""The readable tables of ``compare-models``: what each version predicted, metrics side by
side, the tests, and the verdict of a horizon with too few pairs to name a winner. Figures
that treat overlapping outcomes as independent are labelled ``naive``, the corrected ones
``overlap``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlpred_cli.render.verdicts import accuracy_points, p_value_text

if TYPE_CHECKING:
    from mlpred_cli.analysis.compare import ModelComparison, VersionCoverage

#: Symbols a coverage row names before it says how many more there are.
COVERAGE_SYMBOLS_SHOWN = 4

#: Rows of ``metric_rows``: (label, metric key).
TABLE_METRICS: tuple[tuple[str, str], ...] = (
    ("n", "n"),
    ("accuracy (naive 95% CI)", "accuracy"),
    ("accuracy (overlap 95% CI)", "accuracy_overlap"),
    ("effective n (overlap)", "n_effective"),
    ("directional n", "n_directional"),
    ("hit rate (naive 95% CI)", "hit_rate"),
    ("IC", "ic"),
    ("MAE", "mae"),
    ("calibration error", "calibration_error"),
    ("mean confidence", "mean_confidence"),
    ("inference p50 ms", "inference_ms_p50"),
)


def _interval(value: float | None, low: float | None, high: float | None) -> str | None:
    if value is None or low is None or high is None:
        return None
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _cell(metrics: dict[str, Any], key: str) -> Any:
    if key == "accuracy_overlap":
        low, high = metrics["accuracy_overlap_low"], metrics["accuracy_overlap_high"]
        return _interval(metrics["accuracy"], low, high)
    value = metrics[key]
    if key in ("accuracy", "hit_rate"):
        return _interval(value, metrics[f"{key}_low"], metrics[f"{key}_high"])
    if key == "n_effective" and value is not None:
        return f"{value:.1f}"
    return value


def metric_rows(comparison: ModelComparison) -> list[dict[str, Any]]:
    """Side by side: one row per metric, one column per horizon and version (``"1h A"``,
    ``"1h B"``), intervals as ``0.585 [0.510, 0.656]`` text."""
    rows = []
    for label, key in TABLE_METRICS:
        row: dict[str, Any] = {"metric": label}
        for item in comparison.horizons:
            for side, metrics in (("A", item.a), ("B", item.b)):
                row[f"{item.horizon} {side}"] = _cell(metrics, key)
        rows.append(row)
    return rows


#: The test of each row of ``test_rows``: (naive name, overlap-corrected name).
TEST_LABELS = {
    "mcnemar_exact": ("McNemar naive", "McNemar overlap"),
    "two_proportion_z": ("z-test naive", "z-test overlap"),
}


def _ic_interval(low: float | None, high: float | None) -> str | None:
    return None if low is None or high is None else f"[{low:+.3f}, {high:+.3f}]"


def _signed(value: float | None) -> str | None:
    return None if value is None else f"{value:+.3f}"


def _count(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f}"


def _p(value: float | None) -> str | None:
    """A p-value as ``0.317``, scientific below 0.001 (``2.4e-12``), never a bare 0."""
    return None if value is None else p_value_text(value).removeprefix("p = ")


def test_rows(comparison: ModelComparison) -> list[dict[str, Any]]:
    """The tests, differences B - A: per horizon a ``naive`` row (outcomes taken as
    independent: exact McNemar, plain bootstrap) and, when paired, an ``overlap`` row (the
    overlap-corrected McNemar, pairs at their effective number, block bootstrap)."""
    rows = []
    for item in comparison.horizons:
        naive, overlap = TEST_LABELS.get(item.test or "", (item.test, None))
        difference = (
            None if item.accuracy_difference is None else accuracy_points(item.accuracy_difference)
        )
        rows.append(
            {
                "horizon": item.horizon,
                "test": naive,
                "pairs": item.pairs,
                "accuracy": difference,
                "p_value": _p(item.p_value),
                "IC": _signed(item.ic_difference),
                "IC 95% CI": _ic_interval(item.ic_difference_low, item.ic_difference_high),
            }
        )
        if item.basis == "paired":
            rows.append(
                {
                    "horizon": "",
                    "test": overlap,
                    "pairs": _count(item.pairs_effective),
                    "accuracy": difference,
                    "p_value": _p(item.p_value_overlap),
                    "IC": _signed(item.ic_difference),
                    "IC 95% CI": _ic_interval(
                        item.ic_difference_low_overlap, item.ic_difference_high_overlap
                    ),
                }
            )
    return rows


def _symbols_text(symbols: list[str]) -> str:
    shown = ", ".join(symbols[:COVERAGE_SYMBOLS_SHOWN])
    more = len(symbols) - COVERAGE_SYMBOLS_SHOWN
    return f"{shown} +{more} more" if more > 0 else shown or "-"


def _coverage_row(label: str, version: str, coverage: VersionCoverage) -> dict[str, Any]:
    return {
        "": label,
        "version": version,
        "predictions": coverage.predictions,
        "symbols": _symbols_text(coverage.symbols),
        "first (UTC)": None if coverage.first is None else f"{coverage.first:%Y-%m-%d %H:%M}",
        "last (UTC)": None if coverage.last is None else f"{coverage.last:%Y-%m-%d %H:%M}",
    }


def coverage_rows(comparison: ModelComparison) -> list[dict[str, Any]]:
    """What each version predicted in the window: one row per version."""
    return [
        _coverage_row("A", comparison.version_a, comparison.coverage_a),
        _coverage_row("B", comparison.version_b, comparison.coverage_b),
    ]


def pairs_line(comparison: ModelComparison) -> str:
    """How many candles both versions predicted, and the pairs with outcomes per horizon."""
    per_horizon = ", ".join(f"{item.horizon} {item.pairs}" for item in comparison.horizons)
    return (
        f"Candles both versions predicted: {comparison.shared_candles}; "
        f"pairs with outcomes: {per_horizon} (a verdict needs {comparison.min_pairs})."
    )
