"""The reads behind ``mlpred analyze``: every aggregate and row-level column the report
needs, run on one connection, returned as plain mappings, frames and arrays
(``analysis.report.build_report`` composes the report from them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpred_cli.config import DRIFT_MAX_ROWS, POOLED_IC_MAX_ROWS
from mlpred_cli.store.prediction_queries import (
    P,
    PredictionFilter,
    column_values,
    distinct_values,
    half_means,
    outcome_values,
    overview,
    read_frame,
    select_predictions,
)
from mlpred_cli.store.prediction_reads import reading
from mlpred_cli.store.rollup_reads import RollupRows, read_rollup_rows
from mlpred_cli.store.source import DatabaseSource


@dataclass
class ReportData:
    """What the analysis queries returned for one selection.

    ``overview`` is the one-row ``overview`` aggregate; ``symbols`` / ``model_versions`` the
    distinct values. When the selection is empty (``overview["predictions"] == 0``) nothing
    else is read. Otherwise: ``rollups`` (the selection's rollup rows: every count and sum
    of the horizons, confidence, calibration, symbols and signals sections), ``outcomes``
    (row-level ``outcome_values`` for the pooled rank ICs; None when the selection has more
    than ``POOLED_IC_MAX_ROWS`` rows with an outcome), ``midpoint`` of the time range and
    ``halves`` (``half_means`` split there), ``drift_rows`` (``read_drift_rows`` of the two
    halves), ``inference_times``.
    ``rows`` holds the selection's predictions when they were asked for (the export).
    """

    selection: PredictionFilter
    overview: Mapping[Any, Any]
    symbols: list[Any]
    model_versions: list[Any]
    rollups: RollupRows | None = None
    outcomes: pd.DataFrame | None = None
    midpoint: datetime | None = None
    halves: Mapping[Any, Any] = field(default_factory=dict)
    drift_rows: tuple[pd.DataFrame, pd.DataFrame] | None = None
    inference_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rows: pd.DataFrame | None = None

    @property
    def empty(self) -> bool:
        """True when the selection holds no predictions."""
        return bool(self.overview["predictions"] == 0)


def read_report_data(
    source: DatabaseSource, selection: PredictionFilter, *, with_rows: bool = False
) -> ReportData:
    """Run the analysis queries for ``selection`` on one connection (and, with
    ``with_rows``, read the selection's predictions on it too, even when it is empty)."""
    with reading(source) as engine, engine.connect() as conn:
        head = conn.execute(overview(selection)).mappings().one()
        data = ReportData(
            selection,
            head,
            list(conn.execute(distinct_values(selection, "symbol")).scalars().all()),
            list(conn.execute(distinct_values(selection, "model_version")).scalars().all()),
        )
        if not data.empty:
            data.rollups = read_rollup_rows(conn, selection, ("symbol",), count_days=True)
            if int(head["with_outcomes"]) <= POOLED_IC_MAX_ROWS:
                data.outcomes = read_frame(conn, outcome_values(selection))
            first, last = head["first"], head["last"]
            data.midpoint = first + (last - first) / 2
            data.halves = conn.execute(half_means(selection, data.midpoint)).mappings().one()
            first_half = P.datetime < data.midpoint
            data.drift_rows = (
                read_drift_rows(conn, selection, first_half),
                read_drift_rows(conn, selection, ~first_half),
            )
            data.inference_times = np.asarray(
                conn.execute(column_values(selection, "inference_time_ms")).scalars().all(),
                dtype=float,
            )
        if with_rows:
            data.rows = read_frame(conn, select_predictions(selection))
    return data


#: Row-level columns the input-drift figures compare.
DRIFT_COLUMNS: tuple[str, ...] = ("features_mean", "features_std")


def read_drift_rows(
    conn: Connection,
    selection: PredictionFilter,
    window: sa.ColumnElement[bool],
    max_rows: int = DRIFT_MAX_ROWS,
) -> pd.DataFrame:
    """``symbol``, ``datetime`` and the ``DRIFT_COLUMNS`` of the selection's rows inside
    ``window``, oldest first; beyond ``max_rows`` rows an even sample (every k-th ``id``)
    of about ``max_rows``."""
    clauses = [*selection.clauses(), window]
    rows = int(conn.execute(sa.select(sa.func.count()).where(*clauses)).scalar_one())
    stride = -(-rows // max_rows) if rows > max_rows else 1
    if stride > 1:
        clauses.append(P.id % stride == 0)
    statement = (
        sa.select(P.symbol, P.datetime, *(P[name] for name in DRIFT_COLUMNS))
        .where(*clauses)
        .order_by(P.datetime, P.id)
    )
    return read_frame(conn, statement)
