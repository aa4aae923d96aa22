"""``compare_models`` and ``show_feature_importance`` as people read them: the analysis
result plus its text (verdict sentences, trend sparklines). What the public API and the CLI
return and print."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from mlpred_cli.analysis import compare, feature_importance
from mlpred_cli.config import COMPARE_ALPHA, MIN_PAIRED_PREDICTIONS, SPARKLINE_SNAPSHOTS
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
) -> ImportanceView:
    """``analysis.feature_importance.importance_snapshot_view`` (same arguments) with each
    feature's ``trend``, a sparkline of its score over the snapshots of the history."""
    view = feature_importance.importance_snapshot_view(
        database, top=top, model_version=model_version, method=method, history=history
    )
    return with_trends(view)
