"""The reads behind ``mlpred check``'s performance and drift checks: the model versions and
their first day, the daily rollup rows of a period, and an even sample of raw rows of a
window for the drift statistics.

Model versions are keyed as in the rollups: '' stands for rows without one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpred_cli.store.prediction_queries import PredictionFilter, read_frame
from mlpred_cli.store.rollup_reads import read_rollup_rows
from mlpred_cli.store.rollups import complete_through
from mlpred_cli.store.tables import predictions_table, rollup_table

P = predictions_table.c

#: Width of the time slots the drift sample keeps or skips whole (one 15-minute candle).
SAMPLE_SLOT_MS = 15 * 60 * 1000
R = rollup_table.c


@dataclass(frozen=True)
class VersionSpan:
    """A model version's first and last day with predictions (rollups and raw rows)."""

    model_version: str
    first_day: date
    last_day: date


def _as_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def version_spans(conn: Connection, selection: PredictionFilter) -> list[VersionSpan]:
    """Every model version of the selection's symbol (times ignored) with its first and last
    day: from the rollups (archived days included) and the raw rows above their watermark
    (every raw row while the rollups were never built)."""
    spans: dict[str, tuple[date, date]] = {}

    def add(version: object, first: object, last: object) -> None:
        key = "" if version is None else str(version)
        lo, hi = _as_date(first), _as_date(last)
        if key in spans:
            lo, hi = min(lo, spans[key][0]), max(hi, spans[key][1])
        spans[key] = (lo, hi)

    symbol = [] if selection.symbol is None else [selection.symbol]
    through = complete_through(conn)
    if through is not None:
        query = sa.select(R.model_version, sa.func.min(R.day), sa.func.max(R.day))
        if symbol:
            query = query.where(R.symbol == symbol[0])
        for row in conn.execute(query.group_by(R.model_version)):
            add(*row)
    raw = sa.select(P.model_version, sa.func.min(P.datetime), sa.func.max(P.datetime))
    if symbol:
        raw = raw.where(P.symbol == symbol[0])
    if through is not None:
        raw = raw.where(P.id > through)
    for row in conn.execute(raw.group_by(P.model_version)):
        if row[1] is not None:
            add(*row)
    wanted = selection.model_version
    return [
        VersionSpan(version, first, last)
        for version, (first, last) in sorted(spans.items())
        if wanted is None or version == wanted
    ]


def daily_rollups(
    conn: Connection,
    selection: PredictionFilter,
    columns: Sequence[str],
    by: Sequence[str] = ("day", "model_version"),
) -> pd.DataFrame:
    """The selection's rollup ``columns`` per ``by`` and horizon (``store.rollup_reads``)."""
    return read_rollup_rows(conn, selection, by, columns).frame


def drift_sample(
    conn: Connection,
    *,
    symbol: str | None,
    model_version: str,
    since: datetime,
    until: datetime,
    columns: Sequence[str],
    max_rows: int,
) -> tuple[pd.DataFrame, int]:
    """The ``columns`` (plus ``symbol`` and ``datetime``) of one model version's predictions
    in ``[since, until)`` (of ``symbol`` when given; ``model_version`` '' is rows without
    one), in time order, and how many rows that window holds: every row up to ``max_rows``,
    else an even sample of about ``max_rows`` of them (every k-th 15-minute slot)."""
    clauses = [
        P.datetime >= since,
        P.datetime < until,
        P.model_version.is_(None) if model_version == "" else P.model_version == model_version,
    ]
    if symbol is not None:
        clauses.append(P.symbol == symbol)
    count = sa.select(sa.func.count()).select_from(predictions_table).where(*clauses)
    total = int(conn.execute(count).scalar_one())
    wanted = [P[name] for name in dict.fromkeys(["symbol", "datetime", *columns])]
    query = sa.select(*wanted).where(*clauses)
    if total > max_rows:
        # whole candle slots, every symbol's row of a kept slot: a stride over ids would
        # keep some symbols only (the logger writes a candle's symbols in turn)
        stride = math.ceil(total / max_rows) * SAMPLE_SLOT_MS
        query = query.where(P.timestamp % stride < SAMPLE_SLOT_MS)
    frame = read_frame(conn, query.order_by(P.datetime, P.id))
    return frame, total
