"""The read behind ``feature-importance compute --method shap``: the selection's stored
attribution vectors and its model versions."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from mlpred_cli.store.attribution_vectors import AttributionMatrix, load_attribution_matrix
from mlpred_cli.store.driver_errors import database_errors
from mlpred_cli.store.prediction_queries import PredictionFilter, distinct_values


def read_attribution_inputs(
    engine: Engine, selection: PredictionFilter, horizon: str, width: int | None
) -> tuple[AttributionMatrix, list[Any]]:
    """On an opened engine, in one connection: the selection's attribution matrix (every
    prediction with ``feature_attributions``, matured or not; ``width`` fixes the vector
    length) and the distinct model versions of the selection."""
    with database_errors(engine.url), engine.connect() as conn:
        matrix = load_attribution_matrix(conn, selection, horizon, width)
        versions = list(conn.execute(distinct_values(selection, "model_version")).scalars().all())
    return matrix, versions
