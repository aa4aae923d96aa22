"""Deleting predictions by ``prediction_id``: how ``log-test`` removes exactly the synthetic
rows it wrote, and nothing else."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlpred_cli.store.driver_errors import database_errors
from mlpred_cli.store.tables import predictions_table

#: Ids bound per DELETE (SQLite's default limit on bound parameters is 32766).
DELETE_CHUNK = 1_000


def delete_predictions_by_id(engine: Engine, ids: Sequence[str]) -> int:
    """Delete the rows with these ``prediction_id``s (UUID text) in one transaction; ids not
    stored are ignored. Returns how many rows were deleted."""
    wanted = [uuid.UUID(pid) for pid in ids]
    deleted = 0
    with database_errors(engine.url), engine.begin() as conn:
        for start in range(0, len(wanted), DELETE_CHUNK):
            chunk = wanted[start : start + DELETE_CHUNK]
            statement = sa.delete(predictions_table).where(
                predictions_table.c.prediction_id.in_(chunk)
            )
            deleted += conn.execute(statement).rowcount
    return deleted
