"""The row-level values behind overlap-corrected accuracy intervals: per row with an outcome,
its symbol, reference time, grouping value and, per horizon, whether it was scored and
right."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpred_cli.config import HORIZONS
from mlpred_cli.store.prediction_queries import PredictionFilter, any_outcome, read_frame
from mlpred_cli.store.prediction_reads import reading
from mlpred_cli.store.rollup_reads import RollupRows, read_rollup_rows
from mlpred_cli.store.source import DatabaseSource
from mlpred_cli.store.tables import predictions_table

P = predictions_table.c

#: Groupings whose value is a column of ``ml_predictions`` (``day`` is derived from
#: ``datetime``).
_GROUP_COLUMNS = ("symbol", "model_version", "signal_type")


def read_overlap_rows(
    conn: Connection, selection: PredictionFilter, by: str | None, horizons: Sequence[str]
) -> pd.DataFrame:
    """The selection's rows with an outcome: ``symbol``, ``datetime`` (UTC), the ``by``
    column when it is one, and per horizon ``direction_h``, ``actual_direction_h`` and
    ``accuracy_h``."""
    names = ["symbol", "datetime"]
    if by in _GROUP_COLUMNS and by not in names:
        names.append(by)
    for horizon in horizons:
        names += [f"direction_{horizon}", f"actual_direction_{horizon}", f"accuracy_{horizon}"]
    statement = sa.select(*(P[name] for name in names)).where(*selection.clauses(), any_outcome())
    return read_frame(conn, statement)


def read_accuracy_inputs(
    source: DatabaseSource,
    selection: PredictionFilter,
    by: str,
    columns: Sequence[str],
    horizons: Sequence[str],
    max_rows: int,
) -> tuple[RollupRows, pd.DataFrame | None]:
    """On one connection: the rollup figures an accuracy table by ``by`` sums (``columns``;
    grouped by ``by`` unless it is ``signal_type``, which the rollups hold as columns), and
    ``read_overlap_rows`` when the selection has at most ``max_rows`` rows with an outcome
    (else None)."""
    group_by = () if by == "signal_type" else (by,)
    with reading(source) as engine, engine.connect() as conn:
        rollups = read_rollup_rows(conn, selection, group_by, columns)
        frame = rollups.frame
        first = frame[frame["horizon"] == HORIZONS[0]] if "horizon" in frame else frame.iloc[0:0]
        with_outcome = int(first["with_outcome"].sum()) if not first.empty else 0
        rows = None
        if with_outcome <= max_rows:
            rows = read_overlap_rows(conn, selection, None if by == "day" else by, horizons)
    return rollups, rows
