"""``compare_models`` and ``show_feature_importance`` as people read them: the analysis
result plus its text (verdict sentences, trend sparklines). What the public API and the CLI
return and print."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlpred_cli.analysis import compare, feature_importance
from mlpred_cli.config import (
    COMPARE_ALPHA,
    IMPORTANCE_FDR_LEVEL,
    MIN_PAIRED_PREDICTIONS,
    SPARKLINE_SNAPSHOTS,
)
from mlpred_cli.render.sparkline import with_trends
from mlpred_cli.render.verdicts import with_verdicts

if TYPE_CHECKING:
    from mlpred_cli.analysis.compare import ModelComparison
    from mlpred_cli.analysis.feature_importance import ImportanceView
    from mlpred_cli.store.source import DatabaseSource


def compare_models(
    database: DatabaseSource,
    version_a: str,
    version_b: str,
    *,
    days: float | None = 30.0,
    horizons: list[str] | None = None,
    symbol: str | None = None,
    alpha: float = COMPARE_ALPHA,
    min_pairs: int = MIN_PAIRED_PREDICTIONS,
    seed: int | None = None,
    now: datetime | None = None,
) -> ModelComparison:
    """``analysis.compare.compare_versions`` (same arguments) with each horizon's verdict
    sentence (``B better at 1h: +12.3 pts, p = 0.001 (paired McNemar)``)."""
    comparison = compare.compare_versions(
        database,
        version_a,
        version_b,
        days=days,
        horizons=horizons,
        symbol=symbol,
        alpha=alpha,
        min_pairs=min_pairs,
        seed=seed,
        now=now,
    )
    return with_verdicts(comparison)


def show_feature_importance(
    database: DatabaseSource,
    *,
    top: int = 20,
    model_version: str | None = None,
    method: str | None = None,
    history: int = SPARKLINE_SNAPSHOTS,
    fdr_level: float = IMPORTANCE_FDR_LEVEL,
) -> ImportanceView:
    """``analysis.feature_importance.importance_snapshot_view`` (same arguments) with each
    feature's ``trend``, a sparkline of its score over the snapshots of the history."""
    view = feature_importance.importance_snapshot_view(
        database,
        top=top,
        model_version=model_version,
        method=method,
        history=history,
        fdr_level=fdr_level,
    )
    return with_trends(view)


# ---------------------------------------------------------------- significance text


def significance_line(tested: int | None, significant: int | None, level: float) -> str | None:
    """How many features survive the false-discovery control, in one sentence; None when
    no feature has a q-value (an old snapshot, or a method without a test): no claim."""
    if not tested or significant is None:
        return None
    how = "Benjamini-Hochberg; p-values at the overlap-corrected effective sample size"
    line = f"{significant} of {tested} features significant at q < {level:g} ({how})"
    if significant == 0:
        line += (
            ": the ranking is indistinguishable from noise (ICs this large are expected by "
            "chance alone among this many features)"
        )
    return line


def importance_significance_line(rows: Sequence[Mapping[str, Any]], level: float) -> str | None:
    """``significance_line`` over a computed snapshot's rows (all its features)."""
    q_values = [row["q_value"] for row in rows if row.get("q_value") is not None]
    return significance_line(len(q_values), sum(q < level for q in q_values), level)


def rank_stability_line(stability: float | None, history: int) -> str:
    """The rank correlation with the previous snapshot, in one line."""
    if stability is None:
        reason = "no previous snapshot" if history < 2 else "fewer than 3 shared features"
        return f"Rank stability: - ({reason})"
    return f"Rank stability: {stability:.2f} (Spearman correlation with the previous ranks)"


def with_significance(rows: Sequence[Mapping[str, Any]], level: float) -> list[dict[str, Any]]:
    """Rows with ``significant`` (q-value below ``level``; None without a q-value)."""
    return [
        {**row, "significant": feature_importance.is_significant(row.get("q_value"), level)}
        for row in rows
    ]


def probability_text(value: float | None) -> str:
    """A p- or q-value for a table cell: three decimals, or two digits of scientific
    notation below 0.001; "-" when missing."""
    if value is None:
        return "-"
    return f"{value:.3f}" if value >= 0.001 else f"{value:.0e}"


def significance_cells(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows for a table: p and q as text (``probability_text``), the effective n rounded,
    ``significant`` as "yes"
    (q below the level), "" (not) or "-" (no test)."""
    marks = {True: "yes", False: "", None: "-"}
    return [
        {
            **row,
            "p_value": probability_text(row.get("p_value")),
            "q_value": probability_text(row.get("q_value")),
            "n_effective": (
                "-" if row.get("n_effective") is None else f"{row['n_effective']:,.0f}"
            ),
            "significant": marks[row.get("significant")],
        }
        for row in rows
    ]
