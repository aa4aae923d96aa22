"""Writing feature-importance snapshots to ``ml_feature_importance``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Engine

from mlpred_cli.store.driver_errors import database_errors
from mlpred_cli.store.tables import feature_importance_table


def write_snapshot(engine: Engine, rows: Sequence[dict[str, Any]]) -> int:
    """Insert a snapshot's rows in one transaction; returns how many.

    Raises ``RowRejected`` when the database refuses a row (nothing is written then),
    ``DatabaseUnavailable`` when it cannot be reached, ``DatabaseError`` otherwise.
    """
    if rows:
        with database_errors(engine.url), engine.begin() as conn:
            conn.execute(feature_importance_table.insert(), list(rows))
    return len(rows)
