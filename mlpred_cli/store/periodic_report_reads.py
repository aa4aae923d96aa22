"""The reads behind ``mlpred report`` beyond what ``analyze`` reads (``store.report_reads``):
the period's rollups per day and per (day, symbol, model version), the previous period's
rollups, the version mix, how much of the window is due, the newest outcomes, and a
row-level sample of realized returns for the quintile and signal figures. One connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpred_cli.config import HORIZONS, REPORT_SAMPLE_MAX_ROWS
from mlpred_cli.store.liveness_reads import DEFAULT_CANDLE_INTERVAL, due_through, newest_outcomes
from mlpred_cli.store.monitor_reads import SAMPLE_SLOT_MS, version_spans
from mlpred_cli.store.prediction_queries import P, PredictionFilter, any_outcome, read_frame
from mlpred_cli.store.prediction_reads import reading
from mlpred_cli.store.rollup_columns import ACCURACY_INDEX_COLUMNS
from mlpred_cli.store.rollup_reads import read_rollup_rows
from mlpred_cli.store.source import DatabaseSource

#: Row-level columns of the realized-return sample.
SAMPLE_COLUMNS: tuple[str, ...] = (
    "datetime",
    "signal_type",
    "signal_confidence",
    "signal_timeframe",
    *(f"predicted_return_{h}" for h in HORIZONS),
    *(f"actual_return_{h}" for h in HORIZONS),
    *(f"actual_direction_{h}" for h in HORIZONS),
)


#: The rollup columns of the daily series and the previous period's summary.
DAILY_COLUMNS: tuple[str, ...] = (
    *ACCURACY_INDEX_COLUMNS,
    "directional",
    "directional_correct",
)


@dataclass
class PeriodicReportData:
    """What ``read_periodic_report_data`` read for one window.

    ``daily``: rollup figures per day and horizon; ``symbol_days``: the daily ICs per
    (day, symbol, model version) and horizon (``ic_sum`` / ``ic_days``); ``by_version``:
    rollup figures per model version and horizon; ``previous_horizons`` /
    ``previous_symbols``: the previous period's rollups in total and per symbol (None
    without a previous period); ``not_due``: per horizon, the window's predictions whose
    outcome is not due yet at ``now``; ``newest_outcome``: per horizon, the newest
    prediction time with a filled outcome; ``sample``: ``SAMPLE_COLUMNS`` of rows with a
    realized return, an even sample beyond ``sample_rows`` rows (``sampled``);
    ``version_first_day``: each model version's first day in the whole history.
    """

    daily: pd.DataFrame
    symbol_days: pd.DataFrame
    by_version: pd.DataFrame
    not_due: dict[str, int]
    newest_outcome: dict[str, datetime | None]
    sample: pd.DataFrame
    sampled: bool = False
    previous_horizons: pd.DataFrame | None = None
    previous_symbols: pd.DataFrame | None = None
    version_first_day: dict[str, date] = field(default_factory=dict)


def count_not_due(
    conn: Connection, selection: PredictionFilter, now: datetime, candle_interval: timedelta
) -> dict[str, int]:
    """Per horizon, the selection's predictions whose outcome is not due at ``now``: only
    the tail after each horizon's due time is counted, a few hours of rows at most."""
    counts: dict[str, int] = {}
    for horizon in HORIZONS:
        cutoff = due_through(now, horizon, candle_interval)
        statement = sa.select(sa.func.count()).where(*selection.clauses(), P.datetime > cutoff)
        counts[horizon] = int(conn.execute(statement).scalar_one())
    return counts


def read_return_sample(
    conn: Connection,
    selection: PredictionFilter,
    max_rows: int = REPORT_SAMPLE_MAX_ROWS,
    *,
    outcome_rows: int | None = None,
) -> tuple[pd.DataFrame, bool]:
    """``SAMPLE_COLUMNS`` of the selection's rows with an outcome at some horizon,
    oldest first, and whether they are an even sample of about ``max_rows`` because there
    were more: every k-th 15-minute slot, each with every symbol's rows (a stride over ids
    would keep some symbols only: the logger writes a candle's symbols in turn).
    ``outcome_rows``, when the caller counted them already (``overview``'s
    ``with_outcomes``), saves a count over the window."""
    clauses = [*selection.clauses(), any_outcome()]
    rows = (
        int(conn.execute(sa.select(sa.func.count()).where(*clauses)).scalar_one())
        if outcome_rows is None
        else outcome_rows
    )
    stride = -(-rows // max_rows) if rows > max_rows else 1
    if stride > 1:
        clauses.append(P.timestamp % (stride * SAMPLE_SLOT_MS) < SAMPLE_SLOT_MS)
    statement = (
        sa.select(*(P[name] for name in SAMPLE_COLUMNS)).where(*clauses).order_by(P.datetime, P.id)
    )
    return read_frame(conn, statement), stride > 1


def _first_days(conn: Connection, selection: PredictionFilter) -> dict[str, date]:
    # over the whole history (rollups, then raw rows above their watermark), not the window
    spans = version_spans(conn, replace(selection, model_version=None))
    return {span.model_version: span.first_day for span in spans if span.model_version}


def read_periodic_report_data(
    source: DatabaseSource,
    selection: PredictionFilter,
    previous: PredictionFilter | None,
    now: datetime,
    *,
    candle_interval: timedelta = DEFAULT_CANDLE_INTERVAL,
    sample_rows: int = REPORT_SAMPLE_MAX_ROWS,
    outcome_rows: int | None = None,
) -> PeriodicReportData:
    """Read the report's figures for ``selection`` (and the ``previous`` period) as of
    ``now`` (timezone-aware UTC) on one connection; ``outcome_rows`` as in
    ``read_return_sample``."""
    with reading(source) as engine, engine.connect() as conn:
        sample, sampled = read_return_sample(
            conn, selection, sample_rows, outcome_rows=outcome_rows
        )
        lookback = (now - selection.since) if selection.since is not None else timedelta(365)
        data = PeriodicReportData(
            daily=read_rollup_rows(conn, selection, ("day",), DAILY_COLUMNS).frame,
            symbol_days=read_rollup_rows(
                conn, selection, ("day", "symbol", "model_version"), ("ic_n",)
            ).frame,
            by_version=read_rollup_rows(
                conn, selection, ("model_version",), ACCURACY_INDEX_COLUMNS
            ).frame,
            not_due=count_not_due(conn, selection, now, candle_interval),
            newest_outcome=newest_outcomes(
                conn,
                replace(selection, since=None),
                max(lookback, timedelta(days=1)),
                now=now,
                candle_interval=candle_interval,
            ),
            sample=sample,
            sampled=sampled,
            version_first_day=_first_days(conn, selection),
        )
        if previous is not None:
            data.previous_horizons = read_rollup_rows(conn, previous, (), DAILY_COLUMNS).frame
            data.previous_symbols = read_rollup_rows(
                conn, previous, ("symbol",), ACCURACY_INDEX_COLUMNS
            ).frame
    return data
