"""Deleting predictions by ``prediction_id``: how ``log-test`` removes exactly the synthetic
rows it wrote, and nothing else, the daily rollups included.

Rows at or below the rollup watermark are counted in ``ml_prediction_daily`` (a rebuild or a
backfill may have taken them in after they were logged). The delete keeps the rollups'
invariant: the keys (day, symbol, model_version) of those rows are recomputed from the
remaining raw rows in the same transaction, as an outcome update does. It runs as the only
backfill when it can (waiting a little for one that runs), so no concurrent watermark advance
counts rows this transaction is deleting.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlpred_cli.store.driver_errors import database_errors
from mlpred_cli.store.locks import backfill_lock
from mlpred_cli.store.rollups import complete_through, refresh_keys
from mlpred_cli.store.tables import predictions_table

#: Ids bound per statement (SQLite's default limit on bound parameters is 32766).
DELETE_CHUNK = 1_000

#: How long the delete waits for a running backfill before it goes ahead without the lock.
LOCK_WAIT_S = 30.0

_REMOVED_TABLE = "removed_prediction_keys"
P = predictions_table.c


def delete_predictions_by_id(engine: Engine, ids: Sequence[str]) -> int:
    """Delete the rows with these ``prediction_id``s (UUID text) in one transaction, keeping
    the daily rollups exact; ids not stored are ignored. Returns how many rows were deleted."""
    wanted = [uuid.UUID(pid) for pid in ids]
    if not wanted:
        return 0
    with (
        database_errors(engine.url),
        engine.connect() as conn,
        _sole_backfill(engine, conn),
        conn.begin(),
    ):
        through = complete_through(conn)
        removed = _removed_keys_table(conn) if through is not None else None
        deleted = 0
        for start in range(0, len(wanted), DELETE_CHUNK):
            chunk = wanted[start : start + DELETE_CHUNK]
            if removed is not None:
                rows = sa.select(P.symbol, P.datetime, P.model_version).where(
                    P.prediction_id.in_(chunk), P.id <= through
                )
                conn.execute(
                    sa.insert(removed).from_select(["symbol", "datetime", "model_version"], rows)
                )
            statement = sa.delete(predictions_table).where(P.prediction_id.in_(chunk))
            deleted += conn.execute(statement).rowcount
        if removed is not None and through is not None:
            refresh_keys(conn, [(f"{_REMOVED_TABLE} p", "1 = 1")], {}, through)
            removed.drop(conn)
    return deleted


def _removed_keys_table(conn: Connection) -> sa.Table:
    """A temporary table for the (symbol, datetime, model_version) of the deleted rows that
    the rollups count: ``refresh_keys`` reads their keys after the rows are gone."""
    table = sa.Table(
        _REMOVED_TABLE,
        sa.MetaData(),
        sa.Column("symbol", P.symbol.type),
        sa.Column("datetime", P.datetime.type),
        sa.Column("model_version", P.model_version.type),
        prefixes=["TEMPORARY"],
    )
    table.create(conn)
    return table


@contextlib.contextmanager
def _sole_backfill(engine: Engine, conn: Connection) -> Iterator[None]:
    """Hold the backfill lock while the body runs, waiting up to ``LOCK_WAIT_S`` for a running
    backfill; after that the body runs anyway (its own refresh still keeps the rollups exact
    unless a backfill advances the watermark at the same moment)."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        with backfill_lock(engine, conn) as got:
            if got or time.monotonic() >= deadline:
                yield
                return
        time.sleep(0.2)
