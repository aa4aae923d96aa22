"""Upserting candles into ``market_candles``: stage the rows, then one set-based upsert.

An import is one transaction (``staged_candles``): the rows are staged chunk by chunk into a
temporary table (PostgreSQL binary ``COPY``, SQLite ``executemany``), rows whose key repeats at a
later line of the file are dropped (the last one wins), then one upsert keyed on (symbol,
interval_minutes, datetime) writes them; a candle identical to the stored one is left
untouched. Nothing is written when the caller raises before the upsert.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlpred_cli.config import CANDLE_IMPORT_BATCH_ROWS
from mlpred_cli.errors import DatabaseUnavailable
from mlpred_cli.store.column_types import UTCDateTime
from mlpred_cli.store.database import (
    SQLITE_BEGIN_OPTION,
    is_sqlite,
    mask_url,
)
from mlpred_cli.store.driver_errors import database_errors

#: Columns of ``market_candles`` an import writes, in the order of a ``CandleRecord``.
CANDLE_COLUMNS: tuple[str, ...] = (
    "symbol", "interval_minutes", "datetime", "open", "high", "low", "close", "volume",
)  # fmt: skip
#: The columns a re-import may change.
VALUE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")

Progress = Callable[[int], None]
#: Per symbol: number of staged candles, first and last open time (aware UTC).
StagedRange = tuple[str, int, datetime, datetime]

_staging_metadata = sa.MetaData()
_staging = sa.Table(
    "candle_staging",
    _staging_metadata,
    sa.Column("symbol", sa.String(20)),
    sa.Column("interval_minutes", sa.Integer),
    sa.Column("datetime", UTCDateTime),
    *(sa.Column(name, sa.Double()) for name in VALUE_COLUMNS),
    sa.Column("line", sa.BigInteger),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
_STAGED_COLUMNS = (*CANDLE_COLUMNS, "line")

#: PostgreSQL types of the staged columns, for binary COPY (~8x faster than text).
_PG_COPY_TYPES = ["text", "int4", "timestamptz", *(["float8"] * len(VALUE_COLUMNS)), "int8"]

_KEY = "symbol, interval_minutes, datetime"
_ALL = ", ".join(CANDLE_COLUMNS)
_SET = ", ".join(f"{name} = excluded.{name}" for name in VALUE_COLUMNS)

_PG_UPSERT = f"""
WITH upserted AS (
    INSERT INTO market_candles AS t ({_ALL})
    SELECT {_ALL} FROM candle_staging
    ON CONFLICT ({_KEY}) DO UPDATE SET {_SET}
    WHERE (t.open, t.high, t.low, t.close, t.volume)
          IS DISTINCT FROM (excluded.open, excluded.high, excluded.low, excluded.close,
                            excluded.volume)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
"""
_PG_DROP_SUPERSEDED = """
DELETE FROM candle_staging a USING candle_staging b
WHERE a.symbol = b.symbol AND a.interval_minutes = b.interval_minutes
  AND a.datetime = b.datetime AND a.line < b.line
"""

_SQLITE_MATCH = (
    "t.symbol = s.symbol AND t.interval_minutes = s.interval_minutes AND t.datetime = s.datetime"
)
_SQLITE_CHANGED = " OR ".join(f"t.{name} IS NOT s.{name}" for name in VALUE_COLUMNS)
_SQLITE_COUNT_NEW = f"""
SELECT count(*) FROM candle_staging s
WHERE NOT EXISTS (SELECT 1 FROM market_candles t WHERE {_SQLITE_MATCH})
"""
_SQLITE_COUNT_CHANGED = f"""
SELECT count(*) FROM candle_staging s JOIN market_candles t ON {_SQLITE_MATCH}
WHERE {_SQLITE_CHANGED}
"""
_SQLITE_UPSERT = f"""
INSERT INTO market_candles AS t ({_ALL})
SELECT {_ALL} FROM candle_staging AS s WHERE true
ON CONFLICT ({_KEY}) DO UPDATE SET {_SET}
WHERE {" OR ".join(f"t.{name} IS NOT excluded.{name}" for name in VALUE_COLUMNS)}
"""
_SQLITE_DROP_SUPERSEDED = f"""
DELETE FROM candle_staging WHERE line NOT IN (
    SELECT max(line) FROM candle_staging GROUP BY {_KEY}
)
"""


_SQLITE_STAGE = f"INSERT INTO candle_staging ({_ALL}, line) VALUES ({', '.join('?' * 9)})"
#: How ``UTCDateTime`` stores a time on SQLite (naive UTC text, as SQLAlchemy writes it).
_SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def _rows(frame: pd.DataFrame, times: Iterable[object]) -> list[tuple[object, ...]]:
    """Staging rows: plain Python values, ``times`` as given, None for a missing volume."""
    values = [frame[name].to_numpy(dtype="float64") for name in VALUE_COLUMNS]
    volume = values[-1].astype(object)
    volume[np.isnan(values[-1])] = None
    return list(
        zip(
            frame["symbol"].tolist(),
            frame["interval_minutes"].astype(int).tolist(),
            times,
            *(column.tolist() for column in values[:-1]),
            volume.tolist(),
            frame["line"].astype(int).tolist(),
            strict=True,
        )
    )


def _sqlite_rows(frame: pd.DataFrame) -> list[tuple[object, ...]]:
    """Staging rows for SQLite: the time as the text ``UTCDateTime`` stores (vectorized)."""
    text = frame["datetime"].dt.tz_convert(None).dt.strftime(_SQLITE_TIME_FORMAT)
    return _rows(frame, text.tolist())


class CandleStaging:
    """The staging table of one import, inside its transaction (see ``staged_candles``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._sqlite = is_sqlite(conn)
        self.rows = 0
        if self._sqlite:
            _staging.drop(conn, checkfirst=True)
            _staging.create(conn)
        else:
            with self._cursor() as cursor:
                cursor.execute(
                    "CREATE TEMP TABLE candle_staging "
                    "(LIKE market_candles INCLUDING DEFAULTS, line bigint) ON COMMIT DROP"
                )

    def _cursor(self) -> Any:  # a psycopg cursor
        raw = self._conn.connection.driver_connection
        if raw is None:
            raise DatabaseUnavailable(f"lost connection to {mask_url(self._conn.engine.url)}")
        return raw.cursor()

    def stage(self, frame: pd.DataFrame, progress: Progress | None = None) -> None:
        """Add candles (columns ``CANDLE_COLUMNS`` and ``line``, each row's line in the file;
        datetime aware UTC; volume NaN for none) in batches of ``CANDLE_IMPORT_BATCH_ROWS``;
        ``progress`` gets the size of each batch."""
        report = progress or (lambda _rows: None)
        for start in range(0, len(frame), CANDLE_IMPORT_BATCH_ROWS):
            batch = frame.iloc[start : start + CANDLE_IMPORT_BATCH_ROWS]
            if self._sqlite:
                self._conn.exec_driver_sql(_SQLITE_STAGE, _sqlite_rows(batch))
            else:
                with (
                    self._cursor() as cursor,
                    cursor.copy(
                        f"COPY candle_staging ({_ALL}, line) FROM STDIN (FORMAT BINARY)"
                    ) as copy,
                ):
                    copy.set_types(_PG_COPY_TYPES)
                    for row in _rows(batch, pd.DatetimeIndex(batch["datetime"]).to_pydatetime()):
                        copy.write_row(row)
            self.rows += len(batch)
            report(len(batch))

    def drop_superseded(self) -> int:
        """Delete staged rows whose key is staged again at a later line; returns how many."""
        sql = _SQLITE_DROP_SUPERSEDED if self._sqlite else _PG_DROP_SUPERSEDED
        dropped = int(self._conn.exec_driver_sql(sql).rowcount)
        self.rows -= dropped
        return dropped

    def ranges(self) -> list[StagedRange]:
        """Per symbol (sorted): staged candles, first and last open time."""
        query = (
            sa.select(
                _staging.c.symbol,
                sa.func.count(),
                sa.func.min(_staging.c.datetime, type_=UTCDateTime),
                sa.func.max(_staging.c.datetime, type_=UTCDateTime),
            )
            .group_by(_staging.c.symbol)
            .order_by(_staging.c.symbol)
        )
        return [
            (str(name), int(rows), first, last)
            for name, rows, first, last in self._conn.execute(query)
        ]

    def upsert(self) -> tuple[int, int]:
        """Write the staged candles; returns (inserted, updated)."""
        if self.rows == 0:
            return 0, 0
        if self._sqlite:
            inserted = int(self._conn.exec_driver_sql(_SQLITE_COUNT_NEW).scalar_one())
            updated = int(self._conn.exec_driver_sql(_SQLITE_COUNT_CHANGED).scalar_one())
            self._conn.exec_driver_sql(_SQLITE_UPSERT)
            return inserted, updated
        row = self._conn.exec_driver_sql(_PG_UPSERT).one()
        return int(row[0]), int(row[1])


@contextmanager
def staged_candles(engine: Engine) -> Iterator[CandleStaging]:
    """One import's transaction and its staging table; committed when the block ends,
    rolled back (nothing written) when it raises. SQLite takes the write lock up front."""
    with database_errors(engine.url), engine.connect() as conn:
        if is_sqlite(conn):
            conn = conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        with conn.begin():
            staging = CandleStaging(conn)
            yield staging
            if is_sqlite(conn):
                _staging.drop(conn)
