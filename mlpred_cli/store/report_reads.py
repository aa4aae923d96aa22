"""The reads behind ``mlpred analyze``: every aggregate and row-level column the report
needs, run on one connection, returned as plain mappings, frames and arrays
(``analysis.report.build_report`` composes the report from them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from mlpred_cli.config import HORIZONS
from mlpred_cli.store.prediction_queries import (
    PredictionFilter,
    accuracy_groups,
    column_values,
    confidence_bins,
    distinct_values,
    half_means,
    horizon_summary,
    outcome_values,
    overview,
    read_frame,
    select_predictions,
    signal_counts,
)
from mlpred_cli.store.prediction_reads import reading
from mlpred_cli.store.source import DatabaseSource


@dataclass
class ReportData:
    """What the analysis queries returned for one selection.

    ``overview`` is the one-row ``overview`` aggregate; ``symbols`` / ``model_versions`` the
    distinct values. When the selection is empty (``overview["predictions"] == 0``) nothing
    else is read. Otherwise: ``outcomes`` (row-level ``outcome_values``), ``signal_counts``
    (signal_type, count) pairs, ``horizon_summaries`` (horizon -> ``horizon_summary`` row),
    ``confidence_bins`` rows, ``symbol_counts`` (``accuracy_groups`` by symbol), ``midpoint``
    of the time range and ``halves`` (``half_means`` split there), ``inference_times``.
    ``rows`` holds the selection's predictions when they were asked for (the export).
    """

    selection: PredictionFilter
    overview: Mapping[Any, Any]
    symbols: list[Any]
    model_versions: list[Any]
    outcomes: pd.DataFrame | None = None
    signal_counts: list[tuple[Any, int]] = field(default_factory=list)
    horizon_summaries: dict[str, Mapping[Any, Any]] = field(default_factory=dict)
    confidence_bins: Sequence[Mapping[Any, Any]] = field(default_factory=list)
    symbol_counts: pd.DataFrame | None = None
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
            data.outcomes = read_frame(conn, outcome_values(selection))
            data.signal_counts = [
                (kind, int(count)) for kind, count in conn.execute(signal_counts(selection)).all()
            ]
            data.horizon_summaries = {
                horizon: conn.execute(horizon_summary(selection, horizon)).mappings().one()
                for horizon in HORIZONS
            }
            data.confidence_bins = conn.execute(confidence_bins(selection)).mappings().all()
            data.symbol_counts = read_frame(conn, accuracy_groups(selection, "symbol"))
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
