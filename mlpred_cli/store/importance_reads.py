"""The reads behind ``feature-importance``: the feature matrix to score, and the newest
snapshot of ``ml_feature_importance`` with its history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from mlpred_cli.store.driver_errors import database_errors
from mlpred_cli.store.feature_vectors import FeatureMatrix, load_feature_matrix
from mlpred_cli.store.prediction_queries import PredictionFilter, distinct_values
from mlpred_cli.store.prediction_reads import reading
from mlpred_cli.store.source import DatabaseSource
from mlpred_cli.store.tables import feature_importance_table

F = feature_importance_table.c


def read_importance_inputs(
    engine: Engine, selection: PredictionFilter, horizon: str, width: int | None
) -> tuple[FeatureMatrix, list[Any]]:
    """On an opened engine, in one connection: the selection's feature matrix with
    ``actual_return_<horizon>`` (``load_feature_matrix``; ``width`` fixes the vector length)
    and the distinct model versions of the selection."""
    with database_errors(engine.url), engine.connect() as conn:
        matrix = load_feature_matrix(conn, selection, horizon, width)
        versions = list(conn.execute(distinct_values(selection, "model_version")).scalars().all())
    return matrix, versions


@dataclass(frozen=True)
class SnapshotHistory:
    """The newest matching snapshot and the rows of it and its predecessors.

    ``latest`` holds model_version, method, horizon and calculated_at of the newest snapshot;
    ``moments`` the ``calculated_at`` of the snapshots in its history (same model version,
    method and horizon; at most ``history``; oldest first); ``rows`` their feature rows
    (feature_name, importance_score, importance_rank, correlation_with_returns, usage_count,
    p_value, q_value, n_effective, surrogate_r2, calculated_at), unordered.
    """

    latest: Mapping[Any, Any]
    moments: list[datetime]
    rows: Sequence[Mapping[Any, Any]]


def _same(column: sa.Column[Any], value: Any) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def read_snapshot_history(
    source: DatabaseSource,
    *,
    model_version: str | None,
    method: str | None,
    history: int,
) -> SnapshotHistory | None:
    """The newest snapshot (of ``model_version`` / ``method`` when given) and its last
    ``history`` snapshots; None when no snapshot matches."""
    filters = []
    if model_version is not None:
        filters.append(F.model_version == model_version)
    if method is not None:
        filters.append(F.method == method)
    with reading(source) as engine, engine.connect() as conn:
        latest = (
            conn.execute(
                sa.select(F.model_version, F.method, F.horizon, F.calculated_at)
                .where(*filters)
                .order_by(F.calculated_at.desc(), F.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        if latest is None:
            return None
        same = [
            _same(F.model_version, latest["model_version"]),
            F.method == latest["method"],
            _same(F.horizon, latest["horizon"]),
        ]
        moments = (
            conn.execute(
                sa.select(F.calculated_at)
                .where(*same, F.calculated_at <= latest["calculated_at"])
                .distinct()
                .order_by(F.calculated_at.desc())
                .limit(history)
            )
            .scalars()
            .all()
        )
        moments = sorted(moments)
        rows = (
            conn.execute(
                sa.select(
                    F.feature_name,
                    F.importance_score,
                    F.importance_rank,
                    F.correlation_with_returns,
                    F.usage_count,
                    F.p_value,
                    F.q_value,
                    F.n_effective,
                    F.surrogate_r2,
                    F.calculated_at,
                ).where(*same, F.calculated_at.in_(moments))
            )
            .mappings()
            .all()
        )
    return SnapshotHistory(latest, list(moments), rows)
