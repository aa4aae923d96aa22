"""Updating the daily rollups by deltas: what the backfill does in each chunk instead of
recomputing every touched key from its raw rows.

A cron tick changes the outcomes of a few hundred rows and takes in the rows logged since the
last run, while a touched key (day, symbol, model_version) holds a whole day of a symbol's
rows (270 at 10M predictions a year for 100 symbols), and the rollup aggregation evaluates
~430 expressions per row. So ``RollupDelta`` copies the changed rows' aggregated columns
into a temporary table, before the outcome UPDATE with weight -1 and after it with +1, and
the new rows with +1; ``apply`` aggregates that copy once (``rollup_sql.additive_select``
with the weight) and adds the per-key sums to ``ml_prediction_daily`` (an upsert: a new key
gets its row). A changed row enters only the horizons its change can move: those whose
outcome it gets, and all of them when it had no outcome before (``with_outcome``); for the
others its two copies would cancel. The daily IC, the one figure that is not a sum, is
recomputed for the (key, horizon)s whose return pairs changed, from their pairs, ranked here.
The tiers follow (``store.rollup_tiers``). Counts are exact; float sums differ from a
recomputation only in rounding (relative 1e-15 per step).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpred_cli.config import HORIZONS
from mlpred_cli.store.column_types import UTCDateTime
from mlpred_cli.store.database import is_sqlite
from mlpred_cli.store.rollup_columns import (
    ADDITIVE_COLUMNS,
    ARCHIVED_DAYS_TABLE,
    KEY_COLUMNS,
    ROLLUP_TABLE,
)
from mlpred_cli.store.rollup_sql import ROW_COLUMNS, additive_select, day_sql
from mlpred_cli.store.rollup_tiers import add_daily, subtract_daily
from mlpred_cli.store.rollup_touched import (
    TOUCHED_DAILY,
    TOUCHED_TABLE,
    fill_touched,
    span_binds,
    touched_rows,
)
from mlpred_cli.store.rollups import RowSource, without_jit

_CHANGES_TABLE = "rollup_changes"
_IC_TABLE = "rollup_ic"

_TOUCH = tuple(f"touch_{horizon}" for horizon in HORIZONS)
_COPIED = ("id", "datetime", "symbol", "model_version", *ROW_COLUMNS)
#: The copied columns as a SELECT list over the prediction rows ``p``.
_COPIED_SQL = ", ".join(f"p.{name}" for name in _COPIED)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _pair(horizon: str) -> str:
    return f"p.predicted_return_{horizon} IS NOT NULL AND p.actual_return_{horizon} IS NOT NULL"


class RollupDelta:
    """Weighted copies of changed rows, gathered in one transaction and then applied."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        without_jit(conn)  # for the chunk's whole transaction (see ``rollups.without_jit``)
        touch = ", ".join(f"CAST(0 AS INTEGER) AS {name}" for name in _TOUCH)
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_CHANGES_TABLE}")
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {_CHANGES_TABLE} AS SELECT CAST(0 AS INTEGER) AS weight, "
            f"{touch}, {_COPIED_SQL} FROM ml_predictions p WHERE 1 = 0"
        )

    def _insert(self, select: str, params: dict[str, Any]) -> None:
        names = ", ".join(("weight", *_TOUCH, *_COPIED))
        times = [name for name in ("dt_lo", "dt_hi") if f":{name}" in select]
        statement = sa.text(f"INSERT INTO {_CHANGES_TABLE} ({names}) {select}").bindparams(
            *(sa.bindparam(name, type_=UTCDateTime) for name in times)
        )
        self._conn.execute(statement, params)

    def take_before(
        self, source: RowSource, params: dict[str, Any], changes: Mapping[str, str]
    ) -> None:
        """Before the UPDATE: copy the rows ``p`` of the (FROM, WHERE) ``source`` with weight
        -1; ``changes[horizon]`` is SQL true for a row whose ``horizon`` outcome changes.
        A row enters the sums of the horizons it changes, of all when it had no outcome yet
        (its ``with_outcome`` counts change); elsewhere its two copies would cancel."""
        no_outcome = " AND ".join(f"p.actual_direction_{h} IS NULL" for h in HORIZONS)
        touch = ", ".join(
            f"CASE WHEN ({changes[h]}) OR ({no_outcome}) THEN 1 ELSE 0 END" for h in HORIZONS
        )
        rows_from, where = source
        self._insert(f"SELECT -1, {touch}, {_COPIED_SQL} FROM {rows_from} WHERE {where}", params)

    def take_after(self, span: dict[str, Any]) -> None:
        """After the UPDATE: copy the rows taken before, as they are now, with weight +1;
        ``span`` holds their first and last datetime (``dt_lo`` / ``dt_hi``, for pruning)."""
        touch = ", ".join(f"b.{name}" for name in _TOUCH)
        self._insert(
            f"SELECT 1, {touch}, {_COPIED_SQL} FROM {_CHANGES_TABLE} b CROSS JOIN ml_predictions p "
            "WHERE b.weight = -1 AND p.id = b.id AND p.datetime = b.datetime "
            "AND p.datetime >= :dt_lo AND p.datetime <= :dt_hi",
            span,
        )

    def take_new(self, source: RowSource, params: dict[str, Any]) -> None:
        """Copy the rows ``p`` of ``source``, new to the rollups, with weight +1."""
        touch = ", ".join("1" for _ in HORIZONS)
        rows_from, where = source
        self._insert(f"SELECT 1, {touch}, {_COPIED_SQL} FROM {rows_from} WHERE {where}", params)

    def _keys_sql(self) -> str:
        day = day_sql(self._conn.dialect.name)
        return (
            f"SELECT DISTINCT {day}, p.symbol, COALESCE(p.model_version, '') "
            f"FROM {_CHANGES_TABLE} p"
        )

    def keys(self) -> int:
        """The keys (day, symbol, model_version) the copied rows touch."""
        return int(
            self._conn.exec_driver_sql(f"SELECT COUNT(*) FROM ({self._keys_sql()}) k").scalar_one()
        )

    def discard(self) -> None:
        """Drop the copied rows."""
        self._conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_CHANGES_TABLE}")

    def apply(self, through: int) -> int:
        """Add the copied rows' weighted sums to the daily rollups (archived days left alone)
        with the touched keys' daily ICs recomputed from their rows with ``id <= through``,
        and keep the tiers in step; inside the caller's transaction. Returns the keys
        touched."""
        conn = self._conn
        keys, span_lo, span_hi = fill_touched(conn, self._keys_sql(), {})
        if not keys:
            self.discard()
            return 0
        first_day = span_lo.date() if span_lo is not None else None
        subtract_daily(conn, TOUCHED_DAILY, first_day=first_day)
        self._store_ics(through, span_lo, span_hi)
        columns = ", ".join((*KEY_COLUMNS, *ADDITIVE_COLUMNS))
        sums = additive_select(
            conn.dialect.name,
            rows_from=f"{_CHANGES_TABLE} p",
            weight="p.weight",
            horizon_where={h: f"p.touch_{h} = 1" for h in HORIZONS},
        )
        update = ", ".join(
            f"{name} = {ROLLUP_TABLE}.{name} + excluded.{name}" for name in ADDITIVE_COLUMNS
        )
        matches = " AND ".join(f"i.{key} = a.{key}" for key in KEY_COLUMNS)
        conn.exec_driver_sql(
            f"INSERT INTO {ROLLUP_TABLE} ({columns}, ic) "
            f"SELECT {', '.join(f'a.{name}' for name in (*KEY_COLUMNS, *ADDITIVE_COLUMNS))}, "
            f"i.ic FROM ({sums}) a LEFT JOIN {_IC_TABLE} i ON {matches} "
            f"WHERE a.day NOT IN (SELECT day FROM {ARCHIVED_DAYS_TABLE}) "
            f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {update}, ic = excluded.ic"
        )
        add_daily(conn, TOUCHED_DAILY, first_day=first_day)
        for table in (TOUCHED_TABLE, _IC_TABLE):
            conn.exec_driver_sql(f"DROP TABLE {table}")
        self.discard()
        return keys

    def _store_ics(self, through: int, span_lo: Any, span_hi: Any) -> None:
        """Into a temporary table: each touched key's daily IC per horizon (null where there
        is none), from the return pairs of its rows with ``id <= through``."""
        conn = self._conn
        keys, groups, x, y = self._pairs(through, span_lo, span_hi)
        ids, ics = spearman_by_group(groups, x, y)
        by_group = dict(zip(ids.tolist(), ics.tolist(), strict=True))
        found: dict[str, list[Any]] = {"day": [], "symbol": [], "version": [], "h": [], "ic": []}
        for position, (day, symbol, version) in enumerate(keys):
            for index, horizon in enumerate(HORIZONS):
                ic = by_group.get(position * len(HORIZONS) + index)
                found["day"].append(day)
                found["symbol"].append(symbol)
                found["version"].append(version)
                found["h"].append(horizon)
                found["ic"].append(None if ic is None or math.isnan(ic) else ic)
        day_type = "TEXT" if is_sqlite(conn) else "DATE"
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_IC_TABLE}")
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {_IC_TABLE} (day {day_type} NOT NULL, "
            "symbol VARCHAR(20) NOT NULL, model_version VARCHAR(50) NOT NULL, "
            "horizon VARCHAR(10) NOT NULL, ic DOUBLE PRECISION, "
            "PRIMARY KEY (day, symbol, model_version, horizon))"
        )
        if not keys:
            return
        names = "day, symbol, model_version, horizon, ic"
        if is_sqlite(conn):
            conn.execute(
                sa.text(
                    f"INSERT INTO {_IC_TABLE} ({names}) VALUES (:day, :symbol, :version, :h, :ic)"
                ),
                [dict(zip(found, row, strict=True)) for row in zip(*found.values(), strict=True)],
            )
        else:
            conn.execute(
                sa.text(
                    f"INSERT INTO {_IC_TABLE} ({names}) SELECT * FROM unnest("
                    "CAST(:day AS DATE[]), CAST(:symbol AS TEXT[]), CAST(:version AS TEXT[]), "
                    "CAST(:h AS TEXT[]), CAST(:ic AS DOUBLE PRECISION[]))"
                ),
                found,
            )
            conn.exec_driver_sql(f"ANALYZE {_IC_TABLE}")

    def _pairs(
        self, through: int, span_lo: Any, span_hi: Any
    ) -> tuple[list[tuple[Any, str, str]], IntArray, FloatArray, FloatArray]:
        """The keys of the touched (day, symbol)s (every model version: a key not touched
        is left out of the upsert), and the (group, predicted, actual return) pairs of their
        rows with ``id <= through``, group ``key position * len(HORIZONS) + horizon index``;
        read in one pass, on PostgreSQL packed per key and horizon as big-endian float8 pairs."""
        conn = self._conn
        joined, condition = touched_rows(conn, every_version=True)
        params = {"through": through, "span_lo": span_lo, "span_hi": span_hi}
        key = "t.day, t.symbol, COALESCE(p.model_version, '')"
        packed = not is_sqlite(conn)
        if packed:  # one aggregate per horizon: x and y of a pair stay together
            values = ", ".join(
                f"string_agg(float8send(p.predicted_return_{h}) || float8send(p.actual_return_{h}),"
                f" ''::bytea) FILTER (WHERE {_pair(h)})"
                for h in HORIZONS
            )
            select = f"SELECT {key}, {values} FROM {joined} WHERE {condition} GROUP BY {key}"
        else:
            values = ", ".join(
                f"{side}_{h}"
                for h in HORIZONS
                for side in ("p.predicted_return", "p.actual_return")
            )
            select = f"SELECT {key}, {values} FROM {joined} WHERE {condition}"
        rows = conn.execute(sa.text(select).bindparams(*span_binds()), params).all()
        if packed:
            return _unpack(rows)
        return _unpacked(rows)


def _unpack(
    rows: Sequence[Any],
) -> tuple[list[tuple[Any, str, str]], IntArray, FloatArray, FloatArray]:
    """Keys and pairs from one row per key holding each horizon's packed (x, y) pairs."""
    keys, groups, xs, ys = [], [], [], []
    for position, row in enumerate(rows):
        keys.append((row[0], row[1], row[2]))
        for index in range(len(HORIZONS)):
            packed = row[3 + index]
            if packed is None:
                continue
            pairs = np.frombuffer(bytes(packed), dtype=">f8").astype(np.float64).reshape(-1, 2)
            xs.append(pairs[:, 0])
            ys.append(pairs[:, 1])
            groups.append(np.full(len(pairs), position * len(HORIZONS) + index, dtype=np.int64))
    if not xs:
        return keys, np.empty(0, np.int64), np.empty(0), np.empty(0)
    return keys, np.concatenate(groups), np.concatenate(xs), np.concatenate(ys)


def _unpacked(
    rows: Sequence[Any],
) -> tuple[list[tuple[Any, str, str]], IntArray, FloatArray, FloatArray]:
    """Keys and pairs from one row per prediction (key, then each horizon's two sides)."""
    positions: dict[tuple[Any, str, str], int] = {}
    for row in rows:
        positions.setdefault((row[0], row[1], row[2]), len(positions))
    if not rows:
        return [], np.empty(0, np.int64), np.empty(0), np.empty(0)
    position = np.asarray([positions[(row[0], row[1], row[2])] for row in rows], dtype=np.int64)
    values = np.asarray([row[3:] for row in rows], dtype=np.float64)  # None -> nan
    groups, xs, ys = [], [], []
    for index in range(len(HORIZONS)):
        x, y = values[:, 2 * index], values[:, 2 * index + 1]
        both = ~np.isnan(x) & ~np.isnan(y)
        groups.append(position[both] * len(HORIZONS) + index)
        xs.append(x[both])
        ys.append(y[both])
    return list(positions), np.concatenate(groups), np.concatenate(xs), np.concatenate(ys)


def group_average_ranks(groups: IntArray, values: FloatArray) -> FloatArray:
    """Each value's rank among its group's values (``groups``: dense ids 0..k-1), ties
    sharing the mean of their positions (``scipy.stats.rankdata(method="average")`` per
    group)."""
    # By value (any order among equal values), then stably by group: a radix sort of small
    # ids, four times faster than a lexsort of the two.
    small = np.uint16 if len(groups) == 0 or groups.max() < 2**16 else np.int64
    order = np.argsort(values)
    order = order[np.argsort(groups.astype(small)[order], kind="stable")]
    g, v = groups[order], values[order]
    size = len(v)
    starts = np.r_[True, g[1:] != g[:-1]]
    first_of_group = np.maximum.accumulate(np.where(starts, np.arange(size), 0))
    position = (np.arange(size) - first_of_group + 1).astype(np.float64)
    # NaN ties with NaN (PostgreSQL sorts it above every number and equal to itself)
    differs = (v[1:] != v[:-1]) & ~(np.isnan(v[1:]) & np.isnan(v[:-1]))
    runs = starts | np.r_[True, differs]
    run_starts = np.flatnonzero(runs)
    run_ends = np.r_[run_starts[1:] - 1, size - 1]
    mean_rank = (position[run_starts] + position[run_ends]) / 2.0
    ranks = np.empty(size, dtype=np.float64)
    ranks[order] = mean_rank[np.cumsum(runs) - 1]
    return ranks


def spearman_by_group(
    groups: IntArray, x: FloatArray, y: FloatArray
) -> tuple[IntArray, FloatArray]:
    """Per group id, the Spearman IC of ``x`` vs ``y`` exactly as ``rollup_sql`` computes it:
    Pearson correlation of average ranks; NaN below 3 pairs or when a side is constant.
    Rank sums are exact in floating point, so the figure equals the SQL one. ``groups``:
    non-negative ids, at most a few times as many as the pairs. Returns the sorted group ids
    and their ICs."""
    if len(groups) == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    present = np.zeros(int(groups.max()) + 1, dtype=bool)  # ids are small: no sort
    present[groups] = True
    ids = np.flatnonzero(present)
    index = (np.cumsum(present) - 1)[groups]
    rx, ry = group_average_ranks(index, x), group_average_ranks(index, y)
    count = len(ids)

    def total(weights: FloatArray | None) -> FloatArray:
        return np.bincount(index, weights=weights, minlength=count).astype(np.float64)

    n, sx, sy = total(None), total(rx), total(ry)
    covariance = n * total(rx * ry) - sx * sy
    variance_x = n * total(rx * rx) - sx * sx
    variance_y = n * total(ry * ry) - sy * sy
    usable = (n >= 3) & (variance_x > 0) & (variance_y > 0)
    ics = np.full(count, np.nan)
    ics[usable] = covariance[usable] / np.sqrt(variance_x[usable] * variance_y[usable])
    return ids.astype(np.int64), ics
