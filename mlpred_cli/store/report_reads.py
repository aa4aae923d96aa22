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

from mlpred_cli.config import POOLED_IC_MAX_ROWS
from mlpred_cli.store.prediction_queries import (
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
    ``halves`` (``half_means`` split there), ``inference_times``.
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
            data.inference_times = np.asarray(
                conn.execute(column_values(selection, "inference_time_ms")).scalars().all(),
                dtype=float,
            )
        if with_rows:
            data.rows = read_frame(conn, select_predictions(selection))
    return data
