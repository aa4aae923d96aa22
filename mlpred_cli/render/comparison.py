"""The readable tables of ``compare-models``: metrics side by side and the tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlpred_cli.render.verdicts import accuracy_points

if TYPE_CHECKING:
    from mlpred_cli.analysis.compare import ModelComparison

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
