"""Upserting candles into ``market_candles``: stage the rows, then one set-based upsert.

PostgreSQL stages with ``COPY`` into a temporary table dropped on commit, SQLite with
``executemany``; the whole import is one transaction. Keyed on (symbol, interval_minutes,
datetime); a candle identical to the stored one is left untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

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

#: (symbol, interval_minutes, aware UTC open time, open, high, low, close, volume or None).
CandleRecord = tuple[str, int, datetime, float, float, float, float, float | None]
Progress = Callable[[int], None]

_staging_metadata = sa.MetaData()
_staging = sa.Table(
    "candle_staging",
    _staging_metadata,
    sa.Column("symbol", sa.String(20)),
    sa.Column("interval_minutes", sa.Integer),
    sa.Column("datetime", UTCDateTime),
    *(sa.Column(name, sa.Double()) for name in VALUE_COLUMNS),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)

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


def _stage_postgres(conn: Connection, records: Sequence[CandleRecord], progress: Progress) -> None:
    raw = conn.connection.driver_connection
    if raw is None:
        raise DatabaseUnavailable(f"lost connection to {mask_url(conn.engine.url)}")
    with raw.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE candle_staging "
            "(LIKE market_candles INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        with cursor.copy(f"COPY candle_staging ({_ALL}) FROM STDIN") as copy:
            for start in range(0, len(records), CANDLE_IMPORT_BATCH_ROWS):
                batch = records[start : start + CANDLE_IMPORT_BATCH_ROWS]
                for record in batch:
                    copy.write_row(record)
                progress(len(batch))


def _stage_sqlite(conn: Connection, records: Sequence[CandleRecord], progress: Progress) -> None:
    _staging.drop(conn, checkfirst=True)
    _staging.create(conn)
    insert = _staging.insert()
    for start in range(0, len(records), CANDLE_IMPORT_BATCH_ROWS):
        batch = records[start : start + CANDLE_IMPORT_BATCH_ROWS]
        conn.execute(insert, [dict(zip(CANDLE_COLUMNS, record, strict=True)) for record in batch])
        progress(len(batch))


def write_candles(
    engine: Engine, records: Sequence[CandleRecord], *, progress: Progress | None = None
) -> tuple[int, int]:
    """Insert new candles and update changed ones in one transaction; returns (inserted,
    updated). ``progress`` is called with the number of rows of each staged batch."""
    report = progress or (lambda _rows: None)
    if not records:
        return 0, 0
    with database_errors(engine.url), engine.connect() as conn:
        if is_sqlite(conn):
            conn = conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        with conn.begin():
            if is_sqlite(conn):
                _stage_sqlite(conn, records, report)
                inserted = int(conn.exec_driver_sql(_SQLITE_COUNT_NEW).scalar_one())
                updated = int(conn.exec_driver_sql(_SQLITE_COUNT_CHANGED).scalar_one())
                conn.exec_driver_sql(_SQLITE_UPSERT)
                _staging.drop(conn)
            else:
                _stage_postgres(conn, records, report)
                row = conn.exec_driver_sql(_PG_UPSERT).one()
                inserted, updated = int(row[0]), int(row[1])
    return inserted, updated
