"""The readable tables of ``compare-models``: what each version predicted, metrics side by
side, the tests, and the verdict of a horizon with too few pairs to name a winner."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlpred_cli.render.verdicts import accuracy_points

if TYPE_CHECKING:
    from mlpred_cli.analysis.compare import ModelComparison, VersionCoverage

#: Symbols a coverage row names before it says how many more there are.
COVERAGE_SYMBOLS_SHOWN = 4

#: Rows of ``metric_rows``: (label, metric key).
TABLE_METRICS: tuple[tuple[str, str], ...] = (
    ("n", "n"),
    ("accuracy (95% CI)", "accuracy"),
    ("directional n", "n_directional"),
    ("hit rate (95% CI)", "hit_rate"),
    ("IC", "ic"),
    ("MAE", "mae"),
    ("calibration error", "calibration_error"),
    ("mean confidence", "mean_confidence"),
    ("inference p50 ms", "inference_ms_p50"),
)


def _cell(metrics: dict[str, Any], key: str) -> Any:
    value = metrics[key]
    if key in ("accuracy", "hit_rate"):
        if value is None:
            return None
        return f"{value:.3f} [{metrics[f'{key}_low']:.3f}, {metrics[f'{key}_high']:.3f}]"
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


def test_rows(comparison: ModelComparison) -> list[dict[str, Any]]:
    """The tests: one row per horizon, differences B - A."""
    rows = []
    for item in comparison.horizons:
        interval = (
            None
            if item.ic_difference_low is None or item.ic_difference_high is None
            else f"[{item.ic_difference_low:+.3f}, {item.ic_difference_high:+.3f}]"
        )
        rows.append(
            {
                "horizon": item.horizon,
                "test": item.test,
                "pairs": item.pairs,
                "accuracy B-A": None
                if item.accuracy_difference is None
                else accuracy_points(item.accuracy_difference),
                "p_value": item.p_value,
                "IC B-A": item.ic_difference,
                "IC B-A 95% interval": interval,
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
