"""Updating the daily rollups by deltas: what the backfill does in each chunk instead of
recomputing every touched key from its raw rows.

A cron tick changes the outcomes of a few hundred rows and takes in the rows logged since the
last run, while a touched key (day, symbol, model_version) holds a whole day of a symbol's
rows (270 at 10M predictions a year for 100 symbols), and the rollup aggregation evaluates
~500 expressions per row. So ``RollupDelta`` aggregates only the changed rows: their rollup
sums before the change with sign -1 (taken before the outcome UPDATE), after it with sign +1,
and those of the new rows with +1, into a temporary table; ``apply`` adds the per-key sums
to ``ml_prediction_daily`` (an upsert: a new key gets its row) and recomputes the touched
keys' daily IC, the one figure that is not a sum, from their rows. The tiers follow
(``store.rollup_tiers``). Counts are exact; float sums differ from a recomputation only in
rounding (relative 1e-15 per step).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpred_cli.config import HORIZONS
from mlpred_cli.store.column_types import UTCDateTime
from mlpred_cli.store.database import is_sqlite
from mlpred_cli.store.rollup_columns import (
    ADDITIVE_COLUMNS,
    ARCHIVED_DAYS_TABLE,
    COUNT_COLUMNS,
    KEY_COLUMNS,
    ROLLUP_TABLE,
)
from mlpred_cli.store.rollup_sql import additive_select, day_sql
from mlpred_cli.store.rollup_tiers import add_daily, subtract_daily
from mlpred_cli.store.rollup_touched import (
    TOUCHED_DAILY,
    TOUCHED_TABLE,
    fill_touched,
    span_binds,
    touched_key,
    touched_rows,
)
from mlpred_cli.store.rollups import RowSource, without_jit

_DELTA_TABLE = "rollup_delta"
_IC_TABLE = "rollup_ic"


class RollupDelta:
    """Signed rollup sums of changed rows, gathered in one transaction and then applied."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        counts = set(COUNT_COLUMNS)
        day_type = "TEXT" if is_sqlite(conn) else "DATE"
        columns = [
            f"day {day_type} NOT NULL",
            "symbol VARCHAR(20) NOT NULL",
            "model_version VARCHAR(50) NOT NULL",
            "horizon VARCHAR(10) NOT NULL",
        ]
        columns += [
            f"{name} {'BIGINT' if name in counts else 'DOUBLE PRECISION'} NOT NULL"
            for name in ADDITIVE_COLUMNS
        ]
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_DELTA_TABLE}")
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {_DELTA_TABLE} ({', '.join(columns)})")

    def take(self, sign: int, sources: Sequence[RowSource], params: dict[str, Any]) -> None:
        """Add the rollup sums of the rows ``p`` of each (FROM, WHERE) source, times ``sign``
        (-1 before the rows change, +1 after, or for rows new to the rollups)."""
        names = ", ".join((*KEY_COLUMNS, *ADDITIVE_COLUMNS))
        signed = ", ".join(
            [*(f"a.{key}" for key in KEY_COLUMNS), *(f"{sign} * a.{c}" for c in ADDITIVE_COLUMNS)]
        )
        without_jit(self._conn)
        for rows_from, where in sources:
            select = additive_select(self._conn.dialect.name, rows_from=rows_from, where=where)
            statement = sa.text(
                f"INSERT INTO {_DELTA_TABLE} ({names}) SELECT {signed} FROM ({select}) a"
            )
            times = [name for name in ("dt_lo", "dt_hi") if f":{name}" in where]
            statement = statement.bindparams(
                *(sa.bindparam(name, type_=UTCDateTime) for name in times)
            )
            self._conn.execute(statement, params)

    def keys(self) -> int:
        """The keys (day, symbol, model_version) the gathered sums touch."""
        return int(
            self._conn.exec_driver_sql(
                "SELECT COUNT(*) FROM (SELECT DISTINCT day, symbol, model_version "
                f"FROM {_DELTA_TABLE}) k"
            ).scalar_one()
        )

    def discard(self) -> None:
        """Drop the gathered sums."""
        self._conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_DELTA_TABLE}")

    def apply(self, through: int) -> int:
        """Add the gathered sums to the daily rollups (archived days left alone), recompute
        the touched keys' daily IC from their rows with ``id <= through`` and keep the tiers
        in step; inside the caller's transaction. Returns the keys touched."""
        conn = self._conn
        keys, span_lo, span_hi = fill_touched(
            conn, f"SELECT DISTINCT day, symbol, model_version FROM {_DELTA_TABLE}", {}
        )
        if not keys:
            self.discard()
            return 0
        first_day = span_lo.date() if span_lo is not None else None
        subtract_daily(conn, TOUCHED_DAILY, first_day=first_day)
        key_list = ", ".join(KEY_COLUMNS)
        sums = ", ".join(f"SUM({name})" for name in ADDITIVE_COLUMNS)
        update = ", ".join(
            f"{name} = {ROLLUP_TABLE}.{name} + excluded.{name}" for name in ADDITIVE_COLUMNS
        )
        conn.exec_driver_sql(
            f"INSERT INTO {ROLLUP_TABLE} ({key_list}, {', '.join(ADDITIVE_COLUMNS)}) "
            f"SELECT {key_list}, {sums} FROM {_DELTA_TABLE} "
            f"WHERE day NOT IN (SELECT day FROM {ARCHIVED_DAYS_TABLE}) GROUP BY {key_list} "
            f"ON CONFLICT ({key_list}) DO UPDATE SET {update}"
        )
        self._update_ics(through, span_lo, span_hi)
        add_daily(conn, TOUCHED_DAILY, first_day=first_day)
        conn.exec_driver_sql(f"DROP TABLE {TOUCHED_TABLE}")
        self.discard()
        return keys

    def _update_ics(self, through: int, span_lo: Any, span_hi: Any) -> None:
        """Recompute the touched keys' daily ICs from their rows with ``id <= through``: one
        read of their return pairs, ranked here (a few times faster than the SQL's four
        window-function passes), written back through a temporary table."""
        conn = self._conn
        joined, condition = touched_rows(conn)
        day = day_sql(conn.dialect.name)
        pairs = ", ".join(
            f"p.predicted_return_{h} AS x_{h}, p.actual_return_{h} AS y_{h}" for h in HORIZONS
        )
        result = conn.execute(
            sa.text(
                f"SELECT {day} AS day, p.symbol AS symbol, COALESCE(p.model_version, '') "
                f"AS model_version, {pairs} FROM {joined} WHERE {condition}"
            ).bindparams(*span_binds()),
            {"through": through, "span_lo": span_lo, "span_hi": span_hi},
        )
        frame = pd.DataFrame(list(map(tuple, result)), columns=list(result.keys()))
        ics = daily_ics(frame)
        conn.exec_driver_sql(
            f"UPDATE {ROLLUP_TABLE} SET ic = NULL WHERE {touched_key(ROLLUP_TABLE)}"
        )
        if not ics:
            return
        day_type = "TEXT" if is_sqlite(conn) else "DATE"
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_IC_TABLE}")
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {_IC_TABLE} (day {day_type} NOT NULL, "
            "symbol VARCHAR(20) NOT NULL, model_version VARCHAR(50) NOT NULL, "
            "horizon VARCHAR(10) NOT NULL, ic DOUBLE PRECISION NOT NULL)"
        )
        conn.execute(
            sa.text(
                f"INSERT INTO {_IC_TABLE} (day, symbol, model_version, horizon, ic) "
                "VALUES (:day, :symbol, :model_version, :horizon, :ic)"
            ),
            ics,
        )
        matches = " AND ".join(f"i.{key} = {ROLLUP_TABLE}.{key}" for key in KEY_COLUMNS)
        conn.exec_driver_sql(
            f"UPDATE {ROLLUP_TABLE} SET ic = i.ic FROM {_IC_TABLE} i WHERE {matches}"
        )
        conn.exec_driver_sql(f"DROP TABLE {_IC_TABLE}")


def daily_ics(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (day, symbol, model_version) of ``frame`` and horizon, the Spearman IC of
    ``x_h`` (predicted) vs ``y_h`` (actual return) exactly as ``rollup_sql`` computes it:
    Pearson correlation of average ranks over the rows with both values, left out below 3
    pairs or when a side is constant. The rank sums are exact in floating point, so the
    figure equals the SQL one."""
    keys = ["day", "symbol", "model_version"]
    found: list[dict[str, Any]] = []
    for horizon in HORIZONS:
        x, y = f"x_{horizon}", f"y_{horizon}"
        if frame.empty or x not in frame or y not in frame:
            continue
        part = frame.loc[frame[x].notna() & frame[y].notna(), [*keys, x, y]]
        if part.empty:
            continue
        part = part.astype({x: float, y: float})
        groups = part.groupby(keys, sort=False)
        rx = groups[x].rank(method="average", na_option="bottom")
        ry = groups[y].rank(method="average", na_option="bottom")
        sums = (
            pd.DataFrame(
                {
                    **{key: part[key] for key in keys},
                    "n": 1.0,
                    "rx": rx,
                    "ry": ry,
                    "rxy": rx * ry,
                    "rxx": rx * rx,
                    "ryy": ry * ry,
                }
            )
            .groupby(keys, sort=False)
            .sum()
        )
        n = sums["n"].to_numpy(dtype=float)
        sx, sy = sums["rx"].to_numpy(dtype=float), sums["ry"].to_numpy(dtype=float)
        covariance = n * sums["rxy"].to_numpy(dtype=float) - sx * sy
        variance_x = n * sums["rxx"].to_numpy(dtype=float) - sx * sx
        variance_y = n * sums["ryy"].to_numpy(dtype=float) - sy * sy
        for position, (day, symbol, version) in enumerate(sums.index):
            vx, vy = float(variance_x[position]), float(variance_y[position])
            if n[position] >= 3 and vx > 0 and vy > 0:
                ic = float(covariance[position]) / math.sqrt(vx * vy)
                found.append(
                    {"day": day, "symbol": symbol, "model_version": version,
                     "horizon": horizon, "ic": ic}
                )  # fmt: skip
    return found
