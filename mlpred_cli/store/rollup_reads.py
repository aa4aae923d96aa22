"""Reading a selection's rollup rows: whole days from ``ml_prediction_daily``, the rest
aggregated from raw rows by the same SQL (``store.rollup_sql``), so the sum of the rows equals
the raw computation for any window.

Raw rows are aggregated for the days the period's edges cut, for the days holding rows above
the rollups' watermark (logged since the last backfill) and for everything while the rollups
were never built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpred_cli.errors import InputError
from mlpred_cli.store.column_types import UTCDateTime
from mlpred_cli.store.database import is_sqlite
from mlpred_cli.store.prediction_queries import PredictionFilter
from mlpred_cli.store.prediction_reads import reading
from mlpred_cli.store.rollup_columns import ADDITIVE_COLUMNS, COUNT_COLUMNS, SUM_COLUMNS
from mlpred_cli.store.rollup_sql import day_sql, rollup_select
from mlpred_cli.store.rollup_tiers import read_rollup_state, tiers_before
from mlpred_cli.store.rollups import without_jit
from mlpred_cli.store.source import DatabaseSource
from mlpred_cli.store.tables import (
    archived_days_table,
    daily_total_table,
    monthly_table,
    rollup_table,
)

R = rollup_table.c


@dataclass
class RollupRows:
    """A selection's rollup figures (``frame``: one row per group and horizon, see
    ``read_rollup_rows``) and where they came from: ``rollup_days`` read from
    the table, ``raw_days`` aggregated from raw rows, ``archived_days`` of the period whose
    raw rows are archived (only their rollups are left)."""

    frame: pd.DataFrame
    rollup_days: int | None = 0
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
    return pd.DataFrame(list(map(tuple, result)), columns=list(result.keys()))


def _ids_above(conn: Connection, through: int) -> bool:
    """Whether an id above ``through`` may have been handed out: the id sequence's last
    value on PostgreSQL (one row read, where a query on ``id`` would probe every day
    partition of a partitioned table: ~50 ms at 350 partitions), the largest id on SQLite."""
    if is_sqlite(conn):
        return (
            int(conn.exec_driver_sql("SELECT MAX(id) FROM ml_predictions").scalar() or 0) > through
        )
    # null (then assume there may be) without a sequence or the right to read it
    last = conn.exec_driver_sql(
        "SELECT CASE WHEN s.oid IS NOT NULL AND has_sequence_privilege(s.oid, 'SELECT,USAGE') "
        "THEN pg_sequence_last_value(s.oid) END "
        "FROM (SELECT CAST(pg_get_serial_sequence('ml_predictions', 'id') AS regclass) AS oid) s"
    ).scalar()
    return last is None or int(last) > through


def _days_above(
    conn: Connection, selection: PredictionFilter, plan: _Plan, through: int
) -> list[date]:
    """The whole days of the selection holding rows above the watermark."""
    if not _ids_above(conn, through):
        return []
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


#: Keys a read can keep its rows apart by (``horizon`` is always kept).
GROUP_KEYS: tuple[str, ...] = ("day", "symbol", "model_version")

#: The daily-IC sums a read returns in place of each key's ``ic``.
IC_SUMS: tuple[str, ...] = ("ic_sum", "ic_sq_sum", "ic_days")


def _columns_of(by: Sequence[str], columns: Sequence[str] = ADDITIVE_COLUMNS) -> list[str]:
    return [*by, "horizon", *columns, *IC_SUMS]


def _empty(by: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=object) for name in _columns_of(by, columns)})


_INTEGERS = frozenset((*COUNT_COLUMNS, "ic_days"))
_FLOATS = frozenset((*SUM_COLUMNS, "ic_sum", "ic_sq_sum"))


def _typed(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """The frame with day text, integer counts and float sums (nulls as 0), built at once."""
    data: dict[str, pd.Series] = {}
    for name in frame.columns:
        column = frame[name]
        if name == "day" and "day" in by:
            column = column.astype(str)  # a date prints as its ISO form
        elif name in _INTEGERS and column.dtype != "int64":  # int64 holds no null
            column = column.fillna(0).astype("int64")
        elif name in _FLOATS and (column.dtype != "float64" or column.hasnans):
            column = column.fillna(0.0).astype(float)
        data[name] = column
    return pd.DataFrame(data)


def _grouped_raw(frame: pd.DataFrame, by: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Full-key rollup rows (with ``ic``) summed into the groups of ``by``."""
    if frame.empty:
        return _empty(by, columns)
    frame = frame.copy()
    ic = frame["ic"].astype(float)
    frame["ic_sum"] = ic.fillna(0.0)
    frame["ic_sq_sum"] = (ic * ic).fillna(0.0)
    frame["ic_days"] = ic.notna().astype("int64")
    frame = _typed(frame, ["day"])
    keys = [*by, "horizon"]
    summed = frame.groupby(keys, sort=False)[[*columns, *IC_SUMS]].sum()
    return summed.reset_index()[_columns_of(by, columns)]


def _typed_sum(expression: Any, name: str) -> Any:
    return sa.cast(
        sa.func.sum(expression), sa.BigInteger if name in _INTEGERS else sa.Double
    ).label(name)


def _summed_select(
    table: sa.Table, clauses: list[Any], by: Sequence[str], columns: Sequence[str]
) -> sa.Select[Any]:
    """SELECT of the rows of ``clauses`` of ``table`` (the daily rollups or a tier) summed
    into the groups of ``by``: the additive ``columns`` and the daily-IC sums."""
    c = table.c
    keys = [c[name] for name in (*by, "horizon")]
    sums = [_typed_sum(c[name], name) for name in columns]
    if table is rollup_table:
        sums += [
            sa.cast(sa.func.sum(c.ic), sa.Double).label("ic_sum"),
            sa.cast(sa.func.sum(c.ic * c.ic), sa.Double).label("ic_sq_sum"),
            sa.func.count(c.ic).label("ic_days"),
        ]
    else:
        sums += [_typed_sum(c[name], name) for name in IC_SUMS]
    return sa.select(*keys, *sums).where(*clauses).group_by(*keys)


#: A table (the daily rollups or a tier) and the clauses of its rows a read sums.
StoredPart = tuple[sa.Table, list[Any]]


def _stored(
    conn: Connection, parts: Sequence[StoredPart], by: Sequence[str], columns: Sequence[str]
) -> pd.DataFrame:
    """The rows of every part summed in the database into the groups of ``by``, in one
    statement (a UNION ALL of the parts' sums, summed again)."""
    selects = [_summed_select(table, clauses, by, columns) for table, clauses in parts]
    if len(selects) == 1:
        statement = selects[0]
    else:
        union = sa.union_all(*selects).subquery("parts")
        keys = [union.c[name] for name in (*by, "horizon")]
        sums = [_typed_sum(union.c[name], name) for name in (*columns, *IC_SUMS)]
        statement = sa.select(*keys, *sums).group_by(*keys)
    result = conn.execute(statement)
    # plain tuples: pandas builds a frame from them ~7x faster than from Row objects
    frame = pd.DataFrame(list(map(tuple, result)), columns=list(result.keys()))
    return _empty(by, columns) if frame.empty else _typed(frame, by)[_columns_of(by, columns)]


def _month(day: date) -> date:
    return day.replace(day=1)


def _next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _selected(columns: Any, selection: PredictionFilter) -> list[Any]:
    """The clauses of ``selection``'s symbol and model version over a rollup table's
    ``columns`` (``table.c``)."""
    clauses = []
    if selection.symbol is not None:
        clauses.append(columns.symbol == selection.symbol)
    if selection.model_version is not None:
        clauses.append(columns.model_version == selection.model_version)
    return clauses


def _no_days(conn: Connection, first: date, end: date) -> bool:
    """Whether the daily rollups hold no row of the days ``[first, end)``."""
    found = conn.execute(sa.select(R.day).where(R.day >= first, R.day < end).limit(1)).first()
    return found is None


def _stored_parts(
    conn: Connection,
    before: date | None,
    selection: PredictionFilter,
    plan: _Plan,
    fresh_days: Sequence[date],
    clauses: list[Any],
    by: Sequence[str],
    columns: Sequence[str],
) -> list[pd.DataFrame]:
    """The whole days' figures, summed from the coarsest rows that hold them. Before the
    tiers' boundary ``before`` (``store.rollup_tiers``): the daily totals across symbols when
    neither the selection nor ``by`` names a symbol, else the monthly rows of whole months
    (without fresh days) when ``by`` has no ``day``. The daily rows ``clauses`` select for
    the rest. Fresh days are left to the raw read."""
    if before is None:
        return [_stored(conn, [(rollup_table, clauses)], by, columns)]
    if selection.symbol is None and "symbol" not in by:
        totals = daily_total_table.c
        total = [*_in_whole(totals.day, plan), totals.day < before]
        total += _selected(totals, selection)  # the symbol is None here
        if fresh_days:
            total.append(totals.day.notin_(fresh_days))
        totals_parts: list[StoredPart] = [
            (daily_total_table, total),
            (rollup_table, [*clauses, R.day >= before]),
        ]
        return [_stored(conn, totals_parts, by, columns)]
    if "day" in by:
        return [_stored(conn, [(rollup_table, clauses)], by, columns)]
    # Monthly rows hold the days of their month before the boundary. Used: the months from
    # ``low`` (the first whole month of the window) to ``high`` (exclusive) whose days held
    # lie inside the window, so the days [low, covered) come from them.
    # A month the window cuts still serves when its days outside the window hold no rows
    # (a window from the first prediction on, or reaching past the last one).
    low = None
    if plan.first_whole is not None:
        first = plan.first_whole
        low = first
        if first.day != 1:
            low = _month(first) if _no_days(conn, _month(first), first) else _next_month(low)
    high = _next_month(_month(before - timedelta(days=1)))
    if plan.end_whole is not None and plan.end_whole < before:
        end = plan.end_whole
        cut = _month(end)
        if end != cut and _no_days(conn, end, min(_next_month(cut), before)):
            cut = _next_month(cut)
        high = min(high, cut)
    covered = min(high, before)
    if low is not None and low >= high:
        return [_stored(conn, [(rollup_table, clauses)], by, columns)]
    # a month with a fresh day it holds would count that day's old figures
    fresh_months = sorted({_month(day) for day in fresh_days if day < covered})
    months = monthly_table.c
    monthly = [months.month < high]
    if low is not None:
        monthly.append(months.month >= low)
    monthly += _selected(months, selection)
    if fresh_months:
        monthly.append(months.month.notin_(fresh_months))
    # the daily rows outside the days those months hold, and those of months left out
    outside = [R.day < low] if low is not None else []
    outside.append(R.day >= covered)
    outside += [sa.and_(R.day >= m, R.day < _next_month(m)) for m in fresh_months]
    monthly_parts = [(monthly_table, monthly), (rollup_table, [*clauses, sa.or_(*outside)])]
    return [_stored(conn, monthly_parts, by, columns)]


def read_rollups(
    source: DatabaseSource,
    selection: PredictionFilter,
    by: Sequence[str] = GROUP_KEYS,
    columns: Sequence[str] = ADDITIVE_COLUMNS,
) -> RollupRows:
    """``read_rollup_rows`` on its own connection to ``source``."""
    with reading(source) as engine, engine.connect() as conn:
        return read_rollup_rows(conn, selection, by, columns)


def read_rollup_rows(
    conn: Connection,
    selection: PredictionFilter,
    by: Sequence[str] = GROUP_KEYS,
    columns: Sequence[str] = ADDITIVE_COLUMNS,
    *,
    count_days: bool = False,
) -> RollupRows:
    """The selection's rollup figures per group of ``by`` (a subset of ``GROUP_KEYS``) and
    horizon: the additive ``columns`` summed, and the daily ICs as ``ic_sum`` /
    ``ic_sq_sum`` / ``ic_days``. Whole days are summed in the table, the rest aggregated
    from raw rows; ``count_days`` also counts the days read from the table."""
    unknown = [name for name in (*by, *columns) if name not in (*GROUP_KEYS, *ADDITIVE_COLUMNS)]
    if unknown or any(name in ADDITIVE_COLUMNS for name in by):
        raise InputError(f"cannot read rollups by {(unknown or list(by))[0]!r}")
    plan = _plan(selection)
    through, before = read_rollup_state(conn) or (None, None)
    where = _RawWhere(selection)
    if through is None:  # never built: everything from raw rows
        raw = _raw_frame(conn, where, where.time_range(selection.since, selection.until))
        days = int(raw["day"].nunique()) if not raw.empty else 0
        return RollupRows(_grouped_raw(raw, by, columns), raw_days=days)
    fresh_days = _days_above(conn, selection, plan, through)
    clauses = [*_in_whole(R.day, plan), *_selected(R, selection)]
    if fresh_days:
        clauses.append(R.day.notin_(fresh_days))
    stored_days = (
        int(conn.execute(sa.select(sa.func.count(sa.distinct(R.day))).where(*clauses)).scalar_one())
        if count_days
        else None
    )
    while True:
        # On PostgreSQL (READ COMMITTED) each statement has its own snapshot: a backfill
        # moving the tiers' boundary between this read of it and the sum would make the
        # boundary month's row and the daily rows both hold the days it passed. The boundary
        # only moves forward, so reading it again after the sum tells.
        parts = _stored_parts(conn, before, selection, plan, fresh_days, clauses, by, columns)
        after = tiers_before(conn)
        if after == before:
            break
        before = after
    ranges = [where.time_range(start, end) for start, end in plan.edges]
    ranges += [where.time_range(_midnight(d), _midnight(d + timedelta(1))) for d in fresh_days]
    if ranges:
        raw = _raw_frame(conn, where, " OR ".join(f"({r})" for r in ranges))
        parts.append(_grouped_raw(raw, by, columns))
    parts = [part for part in parts if not part.empty]
    if not parts:
        frame = _empty(by, columns)
    elif len(parts) == 1:
        frame = parts[0]
    else:
        merged = pd.concat(parts, ignore_index=True)
        keys = [*by, "horizon"]
        frame = merged.groupby(keys, sort=False)[[*columns, *IC_SUMS]].sum()
        frame = frame.reset_index()[_columns_of(by, columns)]
    archived = conn.execute(
        sa.select(archived_days_table.c.day)
        .where(*_in_whole(archived_days_table.c.day, plan))
        .order_by(archived_days_table.c.day)
    ).scalars()
    return RollupRows(
        frame,
        rollup_days=stored_days,
        raw_days=len(plan.edges) + len(fresh_days),
        archived_days=list(archived),
    )
