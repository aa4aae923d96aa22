"""Keeping the coarser rollup tiers (``ml_prediction_monthly``, ``ml_prediction_daily_total``)
equal to the sums of the daily rows they cover.

Every change of ``ml_prediction_daily`` happens in ``store.rollups`` as "delete some daily
rows, insert their recomputed rows". Around it, ``subtract_daily`` takes the old rows out of
each tier and ``add_daily`` puts the new ones in (an upsert of per-key sums), in the same
transaction: a tier row then equals the sum of its daily rows, and a key whose last daily
row went away is removed. Integer columns are exact; float sums carry the rounding of the
additions (relative 1e-15 per step), and ``rebuild_tiers`` (run by a full ``rollup rebuild``)
recomputes them from the daily rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
    ROLLUP_TABLE,
    TIER_IC_COLUMNS,
)


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


def _month_sql(dialect: str) -> str:
    """SQL of the first day of ``d.day``'s month, comparable with a ``Date`` column."""
    if dialect == "sqlite":
        return "substr(d.day, 1, 7) || '-01'"
    return "CAST(date_trunc('month', d.day) AS DATE)"


def _sums(sign: str) -> list[str]:
    values = [f"{sign}SUM(d.{name})" for name in ADDITIVE_COLUMNS]
    values += [
        f"{sign}COALESCE(SUM(d.ic), 0.0)",
        f"{sign}COALESCE(SUM(d.ic * d.ic), 0.0)",
        f"{sign}COUNT(d.ic)",
    ]
    return values


#: Typed bound parameters a ``where`` clause names (``sa.bindparam``), with their values.
Bound = tuple[Sequence[sa.BindParameter[Any]], dict[str, Any]]

_NOTHING: Bound = ((), {})


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
    ).bindparams(*binds)
    conn.execute(statement, params)


def subtract_daily(conn: Connection, where: str, bound: Bound = _NOTHING) -> None:
    """Inside the caller's transaction, take the daily rows ``d`` matching ``where`` (SQL over
    ``d`` with the parameters of ``bound``; run it before those rows are deleted) out of
    every tier."""
    for tier in TIERS:
        _upsert(conn, tier, "-", where, bound)


def add_daily(conn: Connection, where: str, bound: Bound = _NOTHING) -> None:
    """Inside the caller's transaction, add the daily rows ``d`` matching ``where`` (run it
    after they were inserted) to every tier, then drop the tier rows no daily row is left in."""
    for tier in TIERS:
        _upsert(conn, tier, "", where, bound)
        conn.exec_driver_sql(f"DELETE FROM {tier.table} WHERE predictions <= 0")


def rebuild_tiers(conn: Connection) -> None:
    """Inside the caller's transaction, recompute every tier from the daily rows."""
    for tier in TIERS:
        conn.exec_driver_sql(f"DELETE FROM {tier.table}")
    add_daily(conn, "1 = 1")
    if not is_sqlite(conn):
        for tier in TIERS:
            conn.exec_driver_sql(f"ANALYZE {tier.table}")
