"""The temporary table of rollup keys (day, symbol, model_version) a change touched, and the
SQL that joins them to their prediction rows: shared by the refresh (``store.rollups``) and
the delta updates (``store.rollup_deltas``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpred_cli.store.column_types import UTCDateTime
from mlpred_cli.store.database import is_sqlite
from mlpred_cli.store.rollup_columns import ARCHIVED_DAYS_TABLE

TOUCHED_TABLE = "rollup_touched"


def touched_key(row: str) -> str:
    """SQL over a daily rollup row called ``row``: its key is a touched one."""
    return (
        f"EXISTS (SELECT 1 FROM {TOUCHED_TABLE} t WHERE t.day = {row}.day "
        f"AND t.symbol = {row}.symbol AND t.model_version = {row}.model_version)"
    )


#: SQL over a daily rollup row ``d``: its key is a touched one.
TOUCHED_DAILY = touched_key("d")


def _day_bounds(dialect: str) -> tuple[str, str]:
    """SQL of the first and the next day's first instant of ``day``, in stored form."""
    if dialect == "sqlite":
        return "day || ' 00:00:00.000000'", "date(day, '+1 day') || ' 00:00:00.000000'"
    start = "CAST(day AS TIMESTAMP) AT TIME ZONE 'UTC'"
    return start, "(CAST(day AS TIMESTAMP) + INTERVAL '1 day') AT TIME ZONE 'UTC'"


def fill_touched(
    conn: Connection, keys_sql: str, params: dict[str, Any]
) -> tuple[int, datetime | None, datetime | None]:
    """(Re)create the touched-keys table from ``keys_sql`` (a SELECT of day, symbol,
    model_version), without archived days; returns the number of keys and the span of their
    days (first instant, end)."""
    day_type = "TEXT" if is_sqlite(conn) else "DATE"
    time_type = "TEXT" if is_sqlite(conn) else "TIMESTAMPTZ"
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TOUCHED_TABLE}")
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {TOUCHED_TABLE} (day {day_type} NOT NULL, "
        "symbol VARCHAR(20) NOT NULL, model_version VARCHAR(50) NOT NULL, "
        f"day_start {time_type}, day_end {time_type}, "
        "PRIMARY KEY (day, symbol, model_version))"
    )
    conn.execute(
        sa.text(f"INSERT INTO {TOUCHED_TABLE} (day, symbol, model_version) {keys_sql}"), params
    )
    conn.exec_driver_sql(
        f"DELETE FROM {TOUCHED_TABLE} WHERE day IN (SELECT day FROM {ARCHIVED_DAYS_TABLE})"
    )
    start, end = _day_bounds(conn.dialect.name)
    conn.exec_driver_sql(f"UPDATE {TOUCHED_TABLE} SET day_start = {start}, day_end = {end}")
    keys, span_lo, span_hi = conn.execute(
        sa.text(f"SELECT COUNT(*), MIN(day_start), MAX(day_end) FROM {TOUCHED_TABLE}").columns(
            sa.column("keys", sa.Integer),
            sa.column("lo", UTCDateTime),
            sa.column("hi", UTCDateTime),
        )
    ).one()
    if keys and not is_sqlite(conn):
        conn.exec_driver_sql(f"ANALYZE {TOUCHED_TABLE}")
    return int(keys), span_lo, span_hi


def touched_rows(conn: Connection, *, every_version: bool = False) -> tuple[str, str]:
    """FROM and WHERE clauses of the prediction rows ``p`` of the touched keys with
    ``id <= :through``, inside the days ``:span_lo`` to ``:span_hi`` (bound as values, so
    PostgreSQL prunes a partitioned table to them). ``every_version``: the rows of every
    model version of a touched (day, symbol), each read once (a key per version would read
    the symbol's day once per version)."""
    touched = (
        f"(SELECT DISTINCT day, symbol, day_start, day_end FROM {TOUCHED_TABLE}) t"
        if every_version
        else f"{TOUCHED_TABLE} t"
    )
    # CROSS JOIN keeps SQLite on the touched keys outside, the (symbol, datetime) index inside
    joined = (
        f"{touched} CROSS JOIN ml_predictions p"
        if is_sqlite(conn)
        else f"{touched} JOIN ml_predictions p ON p.symbol = t.symbol "
        "AND p.datetime >= t.day_start AND p.datetime < t.day_end"
    )
    version = "" if every_version else "AND COALESCE(p.model_version, '') = t.model_version "
    condition = (
        "p.symbol = t.symbol AND p.datetime >= t.day_start AND p.datetime < t.day_end "
        f"{version}AND p.id <= :through "
        "AND p.datetime >= :span_lo AND p.datetime < :span_hi"
    )
    return joined, condition


def span_binds() -> list[sa.BindParameter[Any]]:
    """The typed ``:span_lo`` / ``:span_hi`` parameters of ``touched_rows``."""
    return [sa.bindparam("span_lo", type_=UTCDateTime), sa.bindparam("span_hi", type_=UTCDateTime)]
