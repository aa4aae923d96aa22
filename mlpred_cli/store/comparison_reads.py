"""The read behind ``compare-models``: the rows of two model versions, on one connection."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpred_cli.errors import InputError
from mlpred_cli.store.prediction_queries import P, PredictionFilter, distinct_values, read_frame
from mlpred_cli.store.prediction_reads import reading
from mlpred_cli.store.source import DatabaseSource


def _exists(conn: Connection, version: str) -> bool:
    probe = sa.select(P.id).where(P.model_version == version).limit(1)
    return conn.execute(probe).first() is not None


def read_version_rows(
    source: DatabaseSource,
    selection: PredictionFilter,
    versions: Sequence[str],
    columns: Sequence[str],
) -> pd.DataFrame:
    """``columns`` of the selection's rows of the given model ``versions``, oldest first.

    Raises ``InputError`` naming the versions that exist when one of ``versions`` has no
    prediction at all (in the whole table, not just the selection); the rows are then not
    read.
    """
    statement = (
        sa.select(*(P[name] for name in columns))
        .where(*selection.clauses(), P.model_version.in_(list(versions)))
        .order_by(P.datetime, P.id)
    )
    with reading(source) as engine, engine.connect() as conn:
        # one index probe per version; the whole table's versions only for the error
        unknown = [version for version in versions if not _exists(conn, version)]
        if unknown:
            statement = distinct_values(PredictionFilter(), "model_version")
            existing = list(conn.execute(statement).scalars().all())
            listed = ", ".join(existing) if existing else "none"
            raise InputError(f"unknown model version {unknown[0]!r}; versions that exist: {listed}")
        return read_frame(conn, statement)
