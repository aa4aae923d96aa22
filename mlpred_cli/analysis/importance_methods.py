"""Feature importance by method: the entry points of ``feature-importance compute --method``.

- ``spearman_ic``: |Spearman IC| with the realized return (``analysis.feature_importance``;
  its snapshots are named ``config.IMPORTANCE_METHOD``, ``spearman_ic`` unless configured);
- ``shap_mean_abs``: mean |phi| of the attributions the bot passed to
  ``log_prediction(..., attributions=...)`` (``analysis.attribution_importance``);
- ``linear_surrogate``: mean |beta_j (x_j - mean_j)| of a ridge surrogate of the model's own
  ``predicted_return_<horizon>`` on the stored feature vectors, with the surrogate's R^2 in
  ``surrogate_r2`` (``analysis.linear_surrogate``).

Each writes one ``ml_feature_importance`` snapshot and returns an ``ImportanceResult``, so
``feature-importance show --method <name>`` gives the same history, rank changes and
sparklines for all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlpred_cli.analysis.attribution_importance import attribution_importance
from mlpred_cli.analysis.feature_importance import (
    ImportanceResult,
    compute_feature_importance,
    feature_name_list,
    snapshot_model_version,
    usage_counts,
)
from mlpred_cli.analysis.linear_surrogate import surrogate_importance
from mlpred_cli.config import MIN_IMPORTANCE_ROWS, check_horizons
from mlpred_cli.derive.importance_snapshot import build_snapshot
from mlpred_cli.errors import InputError, NotEnoughData
from mlpred_cli.store.attribution_reads import read_attribution_inputs
from mlpred_cli.store.importance_reads import read_importance_inputs
from mlpred_cli.store.importance_snapshots import write_snapshot
from mlpred_cli.store.prediction_queries import make_filter
from mlpred_cli.store.source import opened

if TYPE_CHECKING:
    from mlpred_cli.store.prediction_queries import PredictionFilter
    from mlpred_cli.store.source import DatabaseSource

#: The Spearman-IC method (``analysis.feature_importance``).
SPEARMAN_METHOD = "spearman_ic"
#: ``method`` of the snapshots scored from caller-supplied attributions.
SHAP_METHOD = "shap_mean_abs"
#: ``method`` of the snapshots scored by the linear surrogate.
SURROGATE_METHOD = "linear_surrogate"
#: Every method ``compute_importance`` knows.
IMPORTANCE_METHODS = (SPEARMAN_METHOD, SHAP_METHOD, SURROGATE_METHOD)


@dataclass(frozen=True)
class SurrogateResult(ImportanceResult):
    """An ``ImportanceResult`` of the linear surrogate, with its faithfulness.

    ``surrogate_r2`` is the R^2 stored with the snapshot: on the latest ``holdout_rows``
    predictions of a surrogate fitted on the earlier ones when there were enough (see
    ``analysis.linear_surrogate.holdout_size``), else in sample (``r2_kind`` says which;
    None when the predicted return is constant). ``in_sample_r2`` is the fit on every row;
    ``penalty`` the ridge penalty chosen by GCV (multiple of the row count, on standardized
    features); ``imputed`` the missing feature values replaced by their feature's mean;
    ``unpredicted`` the predictions left out for a null ``predicted_return_<horizon>``.
    """

    surrogate_r2: float | None = None
    r2_kind: str = "in-sample"
    in_sample_r2: float | None = None
    holdout_rows: int = 0
    penalty: float = 0.0
    imputed: int = 0
    unpredicted: int = 0


def compute_importance(
    database: DatabaseSource,
    *,
    method: str = SPEARMAN_METHOD,
    days: float | None = 30.0,
    horizon: str = "1h",
    model_version: str | None = None,
    feature_names: Sequence[str] | str | Path | None = None,
    write: bool = True,
    now: datetime | None = None,
) -> ImportanceResult:
    """Score the features by ``method`` (one of ``IMPORTANCE_METHODS``) over the last
    ``days`` days (of ``model_version``, else all) and write the snapshot; see
    ``compute_feature_importance``, ``compute_attribution_importance`` and
    ``compute_surrogate_importance``. Raises ``InputError`` for an unknown method."""
    if method not in IMPORTANCE_METHODS:
        raise InputError(f"unknown method {method!r}; one of {', '.join(IMPORTANCE_METHODS)}")
    compute = {
        SPEARMAN_METHOD: compute_feature_importance,
        SHAP_METHOD: compute_attribution_importance,
        SURROGATE_METHOD: compute_surrogate_importance,
    }[method]
    return compute(
        database,
        days=days,
        horizon=horizon,
        model_version=model_version,
        feature_names=feature_names,
        write=write,
        now=now,
    )


def _too_few(
    count: int,
    what: str,
    selection: PredictionFilter,
    names: list[str] | None,
    skipped: int,
    advice: str,
) -> NotEnoughData:
    hint = (
        f" ({skipped} more have a vector of another length than the {len(names)} names)"
        if names is not None and skipped
        else ""
    )
    return NotEnoughData(
        f"only {count} predictions {selection.describe()} have {what}{hint}; at least "
        f"{MIN_IMPORTANCE_ROWS} are needed ({advice}); nothing written"
    )


def compute_attribution_importance(
    database: DatabaseSource,
    *,
    days: float | None = 30.0,
    horizon: str = "1h",
    model_version: str | None = None,
    feature_names: Sequence[str] | str | Path | None = None,
    write: bool = True,
    now: datetime | None = None,
) -> ImportanceResult:
    """Score every feature by the mean |phi| of the attributions stored with the predictions
    of the last ``days`` days (``log_prediction(..., attributions=...)``; matured or not) and
    write the snapshot (method ``shap_mean_abs``). A null phi leaves that prediction out of
    that feature only; ``usage_count`` = predictions with a finite, non-zero phi;
    ``correlation_with_returns`` is null. ``horizon`` labels the snapshot (the attributions
    explain whatever output the bot computed them for).

    Feature names fix the vector length as in ``compute_feature_importance``. Raises
    ``InputError`` when no prediction in the selection has attributions, ``NotEnoughData``
    below ``MIN_IMPORTANCE_ROWS`` (nothing is written either way).
    """
    check_horizons([horizon])
    moment = now or datetime.now(UTC)
    selection = make_filter(model_version=model_version, days=days, now=moment)
    names = feature_name_list(feature_names)
    width = None if names is None else len(names)
    with opened(database) as engine:
        matrix, versions = read_attribution_inputs(engine, selection, horizon, width)
        if matrix.count == 0 and matrix.skipped == 0:
            raise InputError(
                f"no prediction {selection.describe()} has stored attributions: pass "
                "attributions= to log_prediction to use this method; nothing written"
            )
        if matrix.count < MIN_IMPORTANCE_ROWS:
            raise _too_few(matrix.count, "stored attributions", selection, names,
                           matrix.skipped, "pass attributions= to log_prediction")  # fmt: skip
        scored = attribution_importance(matrix.attributions)
        version = snapshot_model_version(model_version, versions)
        rows = build_snapshot(
            names if names is not None else [f"f{index}" for index in range(matrix.width)],
            scored.scores,
            model_version=version,
            method=SHAP_METHOD,
            horizon=horizon,
            usage_counts=[int(count) for count in scored.usage_counts],
            calculated_at=moment,
        )
        written = write_snapshot(engine, rows) if write else 0
    return ImportanceResult(rows, matrix.count, matrix.skipped, horizon, version, moment, written)


def compute_surrogate_importance(
    database: DatabaseSource,
    *,
    days: float | None = 30.0,
    horizon: str = "1h",
    model_version: str | None = None,
    feature_names: Sequence[str] | str | Path | None = None,
    write: bool = True,
    now: datetime | None = None,
) -> SurrogateResult:
    """Fit a ridge surrogate of the model's ``predicted_return_<horizon>`` on the stored
    feature vectors of the last ``days`` days' predictions (those with a ``<horizon>``
    outcome, the rows ``compute_feature_importance`` reads) and write the snapshot (method
    ``linear_surrogate``): ``importance_score`` = mean |beta_j (x_j - mean_j)| (exact linear
    SHAP values, in units of the predicted return), ``surrogate_r2`` = its R^2 (out of
    sample on the latest predictions when there are enough, see ``SurrogateResult``),
    ``usage_count`` as for the IC, ``correlation_with_returns`` null.

    Missing feature values are imputed with the feature's mean; a constant feature scores 0;
    predictions without a predicted return are left out. Raises ``NotEnoughData`` below
    ``MIN_IMPORTANCE_ROWS`` usable predictions (nothing is written).
    """
    check_horizons([horizon])
    moment = now or datetime.now(UTC)
    selection = make_filter(model_version=model_version, days=days, now=moment)
    names = feature_name_list(feature_names)
    width = None if names is None else len(names)
    with opened(database) as engine:
        matrix, versions = read_importance_inputs(engine, selection, horizon, width)
        predicted = np.isfinite(matrix.predicted_returns)
        count = int(predicted.sum())
        if count < MIN_IMPORTANCE_ROWS:
            raise _too_few(count, f"stored features, a {horizon} prediction and outcome",
                           selection, names, matrix.skipped,
                           "log with store_features=True and run backfill-actuals")  # fmt: skip
        features = matrix.features[:, predicted]
        surrogate = surrogate_importance(
            features, matrix.predicted_returns[predicted], order=matrix.times[predicted]
        )
        version = snapshot_model_version(model_version, versions)
        rows = build_snapshot(
            names if names is not None else [f"f{index}" for index in range(features.shape[0])],
            surrogate.scores,
            model_version=version,
            method=SURROGATE_METHOD,
            horizon=horizon,
            usage_counts=[int(c) for c in usage_counts(features)],
            calculated_at=moment,
            surrogate_r2=surrogate.faithfulness,
        )
        written = write_snapshot(engine, rows) if write else 0
    result = ImportanceResult(rows, count, matrix.skipped, horizon, version, moment, written)
    return SurrogateResult(
        **{name: getattr(result, name) for name in result.__dataclass_fields__},
        surrogate_r2=surrogate.faithfulness,
        r2_kind=surrogate.faithfulness_kind,
        in_sample_r2=surrogate.fit.r2,
        holdout_rows=surrogate.holdout_rows,
        penalty=surrogate.fit.penalty,
        imputed=int(surrogate.fit.imputed.sum()),
        unpredicted=int(predicted.size - count),
    )
