"""Reading a selection's rollup rows: whole days from ``ml_prediction_daily``, the rest
aggregated from raw rows by the same SQL (``store.rollup_sql``), so the sum of the rows equals
the raw computation for any window.

Raw rows are aggregated for the days the period's edges cut, for the days holding rows above
the rollups' watermark (logged since the last backfill) and for everything while the rollups
were never built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpred_cli.store.column_types import UTCDateTime
from mlpred_cli.store.prediction_queries import PredictionFilter
from mlpred_cli.store.prediction_reads import reading
from mlpred_cli.store.rollup_columns import ADDITIVE_COLUMNS, ALL_COLUMNS, COUNT_COLUMNS
from mlpred_cli.store.rollup_sql import day_sql, rollup_select
from mlpred_cli.store.rollups import complete_through, without_jit
from mlpred_cli.store.source import DatabaseSource
from mlpred_cli.store.tables import archived_days_table, rollup_table

R = rollup_table.c


@dataclass
class RollupRows:
    """A selection's rollup-shaped rows (``frame``: one row per day, symbol, model_version and
    horizon and source part; sum them) and where they came from: ``rollup_days`` read from
    the table, ``raw_days`` aggregated from raw rows, ``archived_days`` of the period whose
    raw rows are archived (only their rollups are left)."""

    frame: pd.DataFrame
    rollup_days: int = 0
    raw_days: int = 0
    archived_days: list[date] = field(default_factory=list)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


@dataclass(frozen=True)
class _Plan:
    """Whole days ``[first_whole, end_whole)`` (None: open) and the cut ranges at the edges."""

    first_whole: date | None
    end_whole: date | None
    edges: list[tuple[datetime | None, datetime | None]]


def _plan(selection: PredictionFilter) -> _Plan:
    since, until = selection.since, selection.until
    edges: list[tuple[datetime | None, datetime | None]] = []
    first_whole = end_whole = None
    if since is not None:
        first_whole = (
            since.date() if since == _midnight(since.date()) else since.date() + timedelta(1)
        )
    if until is not None:
        end_whole = until.date()
    if first_whole is not None and end_whole is not None and first_whole >= end_whole:
        return _Plan(first_whole, first_whole, [(since, until)])
    if since is not None and first_whole is not None and since < _midnight(first_whole):
        edges.append((since, _midnight(first_whole)))
    if until is not None and end_whole is not None and until > _midnight(end_whole):
        edges.append((_midnight(end_whole), until))
    return _Plan(first_whole, end_whole, edges)


class _RawWhere:
    """A WHERE clause over ``p`` built from the selection, its values bound."""

    def __init__(self, selection: PredictionFilter) -> None:
        self.parts: list[str] = []
        self.params: dict[str, Any] = {}
        self.times: list[str] = []
        if selection.symbol is not None:
            self.parts.append("p.symbol = :sel_symbol")
            self.params["sel_symbol"] = selection.symbol
        if selection.model_version is not None:
            self.parts.append("p.model_version = :sel_model")
            self.params["sel_model"] = selection.model_version

    def time_range(self, start: datetime | None, end: datetime | None) -> str:
        """SQL of ``start <= p.datetime < end`` (open ends dropped)."""
        terms = []
        for bound, operator in ((start, ">="), (end, "<")):
            if bound is not None:
                name = f"t{len(self.times)}"
                self.times.append(name)
                self.params[name] = bound
                terms.append(f"p.datetime {operator} :{name}")
        return " AND ".join(terms) or "1 = 1"

    def text(self, extra: str) -> str:
        return " AND ".join([*self.parts, f"({extra})"])

    def statement(self, sql: str) -> sa.TextClause:
        return sa.text(sql).bindparams(
            *(sa.bindparam(name, type_=UTCDateTime) for name in self.times)
        )


def _raw_frame(conn: Connection, where: _RawWhere, ranges: str) -> pd.DataFrame:
    sql = rollup_select(conn.dialect.name, where=where.text(ranges))
    without_jit(conn)
    result = conn.execute(where.statement(sql), where.params)
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def _days_above(
    conn: Connection, selection: PredictionFilter, plan: _Plan, through: int
) -> list[date]:
    """The whole days of the selection holding rows above the watermark."""
    where = _RawWhere(selection)
    span = where.time_range(
        _midnight(plan.first_whole) if plan.first_whole else None,
        _midnight(plan.end_whole) if plan.end_whole else None,
    )
    where.params["through"] = through
    sql = (
        f"SELECT DISTINCT {day_sql(conn.dialect.name)} FROM ml_predictions p "
        f"WHERE p.id > :through AND {where.text(span)}"
    )
    days = conn.execute(where.statement(sql), where.params).scalars().all()
    return sorted(value if isinstance(value, date) else date.fromisoformat(value) for value in days)


def _in_whole(column: Any, plan: _Plan) -> list[Any]:
    clauses = []
    if plan.first_whole is not None:
        clauses.append(column >= plan.first_whole)
    if plan.end_whole is not None:
        clauses.append(column < plan.end_whole)
    return clauses


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in ALL_COLUMNS})
    frame = frame.copy()
    frame["day"] = frame["day"].map(lambda v: v if isinstance(v, str) else v.isoformat())
    for name in COUNT_COLUMNS:
        frame[name] = frame[name].fillna(0).astype("int64")
    for name in ADDITIVE_COLUMNS:
        if name not in COUNT_COLUMNS:
            frame[name] = frame[name].fillna(0.0).astype(float)
    frame["ic"] = frame["ic"].astype(float)
    return frame[list(ALL_COLUMNS)]


def read_rollups(source: DatabaseSource, selection: PredictionFilter) -> RollupRows:
    """``read_rollup_rows`` on its own connection to ``source``."""
    with reading(source) as engine, engine.connect() as conn:
        return read_rollup_rows(conn, selection)


def read_rollup_rows(conn: Connection, selection: PredictionFilter) -> RollupRows:
    """The selection's rollup-shaped rows, whole days from the table where it holds them."""
    plan = _plan(selection)
    through = complete_through(conn)
    where = _RawWhere(selection)
    if through is None:  # never built: everything from raw rows
        span = where.time_range(selection.since, selection.until)
        frame = _normalise(_raw_frame(conn, where, span))
        return RollupRows(frame, raw_days=int(frame["day"].nunique()))
    fresh_days = _days_above(conn, selection, plan, through)
    clauses = [*_in_whole(R.day, plan)]
    if selection.symbol is not None:
        clauses.append(R.symbol == selection.symbol)
    if selection.model_version is not None:
        clauses.append(R.model_version == selection.model_version)
    if fresh_days:
        clauses.append(R.day.notin_(fresh_days))
    result = conn.execute(sa.select(*(R[name] for name in ALL_COLUMNS)).where(*clauses))
    stored = pd.DataFrame(result.all(), columns=list(result.keys()))
    ranges = [where.time_range(start, end) for start, end in plan.edges]
    ranges += [where.time_range(_midnight(d), _midnight(d + timedelta(1))) for d in fresh_days]
    parts = [stored]
    if ranges:
        parts.append(_raw_frame(conn, where, " OR ".join(f"({r})" for r in ranges)))
    frame = _normalise(pd.concat([p for p in parts if not p.empty], ignore_index=True)
                       if any(not p.empty for p in parts) else pd.DataFrame())  # fmt: skip
    archived = conn.execute(
        sa.select(archived_days_table.c.day)
        .where(*_in_whole(archived_days_table.c.day, plan))
        .order_by(archived_days_table.c.day)
    ).scalars()
    return RollupRows(
        frame,
        rollup_days=int(stored["day"].nunique()) if not stored.empty else 0,
        raw_days=len(plan.edges) + len(fresh_days),
        archived_days=list(archived),
    )
