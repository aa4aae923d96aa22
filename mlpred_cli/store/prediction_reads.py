"""Reads of ``ml_predictions`` for the analysis entry points: each builds its statement
(so bad options fail before any connection), runs it on the source, and returns a frame.

``reading(source)`` is how every analysis read gets its engine.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlpred_cli.store.driver_errors import database_errors
from mlpred_cli.store.prediction_queries import (
    PredictionFilter,
    accuracy_groups,
    latest_predictions,
    read_frame,
    select_predictions,
)
from mlpred_cli.store.source import DatabaseSource, opened
from mlpred_cli.store.tables import predictions_table


@contextmanager
def reading(source: DatabaseSource) -> Iterator[Engine]:
    """An engine to read ``source`` with, connection failures raised as
    ``DatabaseUnavailable``. A URL or path is opened with ``store.source.opened`` (checked to
    be migrated, disposed afterwards); an ``Engine`` passed in is used as is, without a schema
    round trip (its owner opened it)."""
    if isinstance(source, Engine):
        with database_errors(source.url):
            yield source
        return
    with opened(source) as engine, database_errors(engine.url):
        yield engine


def read_predictions(
    source: DatabaseSource, selection: PredictionFilter, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Rows of the selection, oldest first (all columns but the payloads, or ``columns``)."""
    statement = select_predictions(selection, columns)
    with reading(source) as engine:
        return read_frame(engine, statement)


def read_accuracy_counts(
    source: DatabaseSource,
    selection: PredictionFilter,
    by: str,
    horizons: Sequence[str],
    min_count: int = 0,
) -> pd.DataFrame:
    """``accuracy_groups`` counts of the selection grouped by ``by``."""
    statement = accuracy_groups(selection, by, horizons, min_count)
    with reading(source) as engine:
        return read_frame(engine, statement)


def read_latest_predictions(
    source: DatabaseSource,
    selection: PredictionFilter,
    columns: Sequence[str],
    *,
    limit: int,
    min_confidence: float | None = None,
    include_neutral: bool = True,
) -> pd.DataFrame:
    """The newest rows of the selection, newest first (see ``latest_predictions``)."""
    statement = latest_predictions(
        selection,
        columns,
        limit=limit,
        min_confidence=min_confidence,
        include_neutral=include_neutral,
    )
    with reading(source) as engine:
        return read_frame(engine, statement)


#: Prediction ids per ``IN (...)`` list of ``read_predictions_by_id``.
ID_CHUNK = 500


def read_predictions_by_id(
    engine: Engine, ids: Sequence[str], columns: Sequence[str]
) -> list[dict[str, Any]]:
    """The rows with these ``prediction_id``s (UUID text), ``columns`` of each, ordered by
    symbol and time; ids not stored are simply absent."""
    selected = [predictions_table.c[name] for name in columns]
    wanted = [uuid.UUID(pid) for pid in ids]
    rows: list[dict[str, Any]] = []
    with database_errors(engine.url), engine.connect() as conn:
        for start in range(0, len(wanted), ID_CHUNK):
            chunk = wanted[start : start + ID_CHUNK]
            query = sa.select(*selected).where(predictions_table.c.prediction_id.in_(chunk))
            rows.extend(dict(row) for row in conn.execute(query).mappings())
    rows.sort(key=lambda row: (row["symbol"], row["datetime"]))
    return rows
