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
from mlpred_cli.store.monitor_reads import SAMPLE_SLOT_MS
from mlpred_cli.store.prediction_queries import (
    P,
    PredictionFilter,
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

#: Percentiles of ``inference_time_ms`` in the performance section.
INFERENCE_PERCENTILES: tuple[int, ...] = (50, 95, 99)


@dataclass(frozen=True)
class InferencePercentiles:
    """How many rows have an ``inference_time_ms`` (``n``) and its ``INFERENCE_PERCENTILES``
    (linear interpolation; empty when ``n`` is 0)."""

    n: int
    values: dict[int, float]


def inference_percentiles(conn: Connection, selection: PredictionFilter) -> InferencePercentiles:
    """The selection's ``InferencePercentiles`` over every timed row: PostgreSQL computes
    them with ``percentile_cont`` (linear interpolation, numpy's default) without sending the
    rows; SQLite reads the times and numpy computes them."""
    timing = P.inference_time_ms
    clauses = [*selection.clauses(), timing.isnot(None)]
    if conn.dialect.name == "postgresql":
        shares = [
            sa.func.percentile_cont(p / 100).within_group(timing) for p in INFERENCE_PERCENTILES
        ]
        head = conn.execute(sa.select(sa.func.count(), *shares).where(*clauses)).one()
        n = int(head[0])
        values = {p: float(v) for p, v in zip(INFERENCE_PERCENTILES, head[1:], strict=True)}
        return InferencePercentiles(n, values if n else {})
    times = np.asarray(conn.execute(sa.select(timing).where(*clauses)).scalars().all(), float)
    if not times.size:
        return InferencePercentiles(0, {})
    found = np.percentile(times, INFERENCE_PERCENTILES)
    return InferencePercentiles(
        int(times.size), dict(zip(INFERENCE_PERCENTILES, map(float, found), strict=True))
    )


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
    halves), ``inference_percentiles``.
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
    inference_percentiles: InferencePercentiles = field(
        default_factory=lambda: InferencePercentiles(0, {})
    )
    rows: pd.DataFrame | None = None

    @property
    def empty(self) -> bool:
        """True when the selection holds no predictions."""
        return bool(self.overview["predictions"] == 0)


def read_report_data(
    source: DatabaseSource,
    selection: PredictionFilter,
    *,
    with_rows: bool = False,
    pooled_ic_max_rows: int = POOLED_IC_MAX_ROWS,
) -> ReportData:
    """Run the analysis queries for ``selection`` on one connection (and, with
    ``with_rows``, read the selection's predictions on it too, even when it is empty).
    Above ``pooled_ic_max_rows`` rows with an outcome the row-level outcomes (for the pooled
    rank ICs) are not read."""
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
            if int(head["with_outcomes"]) <= pooled_ic_max_rows:
                data.outcomes = read_frame(conn, outcome_values(selection))
            first, last = head["first"], head["last"]
            data.midpoint = first + (last - first) / 2
            data.halves = conn.execute(half_means(selection, data.midpoint)).mappings().one()
            first_half = P.datetime < data.midpoint
            data.drift_rows = (
                read_drift_rows(conn, selection, first_half),
                read_drift_rows(conn, selection, ~first_half),
            )
            data.inference_percentiles = inference_percentiles(conn, selection)
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
    ``window``, oldest first; beyond ``max_rows`` rows an even sample of about
    ``max_rows`` (every k-th 15-minute slot)."""
    clauses = [*selection.clauses(), window]
    rows = int(conn.execute(sa.select(sa.func.count()).where(*clauses)).scalar_one())
    stride = -(-rows // max_rows) if rows > max_rows else 1
    if stride > 1:  # whole 15-minute slots (every symbol's rows), as ``drift_sample``
        clauses.append(P.timestamp % (stride * SAMPLE_SLOT_MS) < SAMPLE_SLOT_MS)
    statement = (
        sa.select(P.symbol, P.datetime, *(P[name] for name in DRIFT_COLUMNS))
        .where(*clauses)
        .order_by(P.datetime, P.id)
    )
    return read_frame(conn, statement)
