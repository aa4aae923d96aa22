"""Keeping the coarser rollup tiers (``ml_prediction_monthly``, ``ml_prediction_daily_total``)
equal to the sums of the daily rows they cover.

The tiers cover the days before a boundary, ``ml_rollup_state.tiers_before`` (None: no day
yet). ``advance_tiers`` moves it to ``TIER_LAG_DAYS`` before today and adds the days it passes,
so the cron tick's changes (today's and yesterday's keys) never reach the tiers; a day is
added once. Changes of daily rows before the boundary (a late backfill, a rebuild, deleted
rows) happen in ``store.rollups`` as "delete some daily rows, insert their recomputed rows":
around it ``subtract_daily`` takes the old rows out of each tier and ``add_daily`` puts the
new ones in (an upsert of per-key sums) in the same transaction. So a tier row always equals
the sum of its daily rows before the boundary, and readers take the days from the boundary on
from the daily rows. Integer columns are exact; float sums carry the rounding of the
additions (relative 1e-15 per step), and ``rebuild_tiers`` (a full ``rollup rebuild``)
recomputes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpred_cli.store.database import is_sqlite
from mlpred_cli.store.rollup_columns import (
    ADDITIVE_COLUMNS,
    DAILY_TOTAL_KEY_COLUMNS,
    DAILY_TOTAL_TABLE,
    MONTHLY_KEY_COLUMNS,
    MONTHLY_TABLE,
    ROLLUP_STATE_NAME,
    ROLLUP_STATE_TABLE,
    ROLLUP_TABLE,
    TIER_IC_COLUMNS,
)

#: Days before today the tiers stop: the cron tick's outcomes land on today's and
#: yesterday's keys (the 12 h horizon), which stay out of them.
TIER_LAG_DAYS = 2


@dataclass(frozen=True)
class Tier:
    """One tier: its table, its key columns, and the SQL of each key over a daily row ``d``."""

    table: str
    keys: tuple[str, ...]

    def key_sql(self, dialect: str) -> list[str]:
        """SQL of each key column computed from the daily row ``d``."""
        return [_month_sql(dialect) if key == "month" else f"d.{key}" for key in self.keys]


TIERS: tuple[Tier, ...] = (
    Tier(MONTHLY_TABLE, MONTHLY_KEY_COLUMNS),
    Tier(DAILY_TOTAL_TABLE, DAILY_TOTAL_KEY_COLUMNS),
)

_VALUE_COLUMNS: tuple[str, ...] = (*ADDITIVE_COLUMNS, *TIER_IC_COLUMNS)

#: Typed bound parameters a ``where`` clause names (``sa.bindparam``), with their values.
Bound = tuple[Sequence[sa.BindParameter[Any]], dict[str, Any]]

_NOTHING: Bound = ((), {})


def _month_sql(dialect: str) -> str:
    """SQL of the first day of ``d.day``'s month, comparable with a ``Date`` column."""
    if dialect == "sqlite":
        return "substr(d.day, 1, 7) || '-01'"
    return "CAST(date_trunc('month', d.day) AS DATE)"


def as_date(value: Any) -> date | None:
    """A date column's value as a date (SQLite returns ISO text), None as None."""
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def tiers_before(conn: Connection) -> date | None:
    """The day before which the tiers hold the daily rows (None: they hold none)."""
    value = conn.execute(
        sa.text(f"SELECT tiers_before FROM {ROLLUP_STATE_TABLE} WHERE name = :name"),
        {"name": ROLLUP_STATE_NAME},
    ).scalar()
    return as_date(value)


def _sums(sign: str) -> list[str]:
    values = [f"{sign}SUM(d.{name})" for name in ADDITIVE_COLUMNS]
    values += [
        f"{sign}COALESCE(SUM(d.ic), 0.0)",
        f"{sign}COALESCE(SUM(d.ic * d.ic), 0.0)",
        f"{sign}COUNT(d.ic)",
    ]
    return values


def _upsert(conn: Connection, tier: Tier, sign: str, where: str, bound: Bound) -> None:
    keys = tier.key_sql(conn.dialect.name)
    selected = ", ".join(f"{sql} AS {name}" for sql, name in zip(keys, tier.keys, strict=True))
    values = ", ".join(
        f"{sql} AS {name}" for sql, name in zip(_sums(sign), _VALUE_COLUMNS, strict=True)
    )
    update = ", ".join(f"{name} = {tier.table}.{name} + excluded.{name}" for name in _VALUE_COLUMNS)
    binds, params = bound
    statement = sa.text(
        f"INSERT INTO {tier.table} ({', '.join((*tier.keys, *_VALUE_COLUMNS))}) "
        f"SELECT {selected}, {values} FROM {ROLLUP_TABLE} d WHERE {where} "
        f"GROUP BY {', '.join(keys)} "
        f"ON CONFLICT ({', '.join(tier.keys)}) DO UPDATE SET {update}"
    ).bindparams(*binds, sa.bindparam("tiers_before", type_=sa.Date))
    conn.execute(statement, params)


def _change(conn: Connection, sign: str, where: str, bound: Bound, first_day: date | None) -> bool:
    """Apply ``sign`` times the daily rows ``d`` of ``where`` before the boundary to every
    tier; False (nothing done) when no day before it can match."""
    before = tiers_before(conn)
    if before is None or (first_day is not None and first_day >= before):
        return False
    binds, params = bound
    sealed: Bound = (binds, {**params, "tiers_before": before})
    for tier in TIERS:
        _upsert(conn, tier, sign, f"({where}) AND d.day < :tiers_before", sealed)
    return True


def subtract_daily(
    conn: Connection, where: str, bound: Bound = _NOTHING, first_day: date | None = None
) -> None:
    """Inside the caller's transaction, take the daily rows ``d`` matching ``where`` (SQL over
    ``d`` with the parameters of ``bound``; run it before those rows are deleted) out of
    every tier. ``first_day``: the earliest day ``where`` can match, when known (days from
    the boundary on cost nothing)."""
    _change(conn, "-", where, bound, first_day)


def add_daily(
    conn: Connection, where: str, bound: Bound = _NOTHING, first_day: date | None = None
) -> None:
    """Inside the caller's transaction, add the daily rows ``d`` matching ``where`` (run it
    after they were inserted) to every tier, then drop the tier rows no daily row is left in."""
    if _change(conn, "", where, bound, first_day):
        for tier in TIERS:
            conn.exec_driver_sql(f"DELETE FROM {tier.table} WHERE predictions <= 0")


def _set_before(conn: Connection, before: date) -> None:
    conn.execute(
        sa.text(
            f"UPDATE {ROLLUP_STATE_TABLE} SET tiers_before = :before WHERE name = :name"
        ).bindparams(sa.bindparam("before", type_=sa.Date)),
        {"before": before, "name": ROLLUP_STATE_NAME},
    )


def _target(now: datetime) -> date:
    moment = now.astimezone(UTC) if now.tzinfo is not None else now  # naive: UTC already
    return moment.date() - timedelta(days=TIER_LAG_DAYS)


def read_rollup_state(conn: Connection) -> tuple[int | None, date | None] | None:
    """The state row's ``complete_through_id`` and ``tiers_before`` in one read; None when
    the rollups were never built."""
    row = conn.execute(
        sa.text(
            f"SELECT complete_through_id, tiers_before FROM {ROLLUP_STATE_TABLE} WHERE name = :n"
        ),
        {"n": ROLLUP_STATE_NAME},
    ).first()
    if row is None:
        return None
    through, before = row
    return (None if through is None else int(through)), as_date(before)


def advance_tiers(conn: Connection, now: datetime) -> bool:
    """Inside the caller's transaction, move the tiers' boundary to ``TIER_LAG_DAYS`` before
    ``now``'s day, adding the daily rows of the days it passes (never moves it back; nothing
    while the rollups were never built). True when it moved."""
    state = read_rollup_state(conn)
    if state is None:
        return False
    before, target = state[1], _target(now)
    if before is not None and target <= before:
        return False
    if before is None:
        rebuild_tiers(conn, now)
        return True
    _set_before(conn, target)
    span: Bound = (
        (sa.bindparam("low", type_=sa.Date),),
        {"low": before},
    )
    _change(conn, "", "d.day >= :low", span, None)
    return True


def rebuild_tiers(conn: Connection, now: datetime) -> None:
    """Inside the caller's transaction, recompute every tier from the daily rows before
    ``TIER_LAG_DAYS`` before ``now``'s day (and set that boundary)."""
    if (
        conn.execute(
            sa.text(f"SELECT 1 FROM {ROLLUP_STATE_TABLE} WHERE name = :n"), {"n": ROLLUP_STATE_NAME}
        ).first()
        is None
    ):
        return
    for tier in TIERS:
        conn.exec_driver_sql(f"DELETE FROM {tier.table}")
    _set_before(conn, _target(now))
    _change(conn, "", "1 = 1", _NOTHING, None)
    if not is_sqlite(conn):
        for tier in TIERS:
            conn.exec_driver_sql(f"ANALYZE {tier.table}")
