"""The id frontier: how far ids of ``ml_predictions`` can be trusted to be complete."""

from __future__ import annotations

import time

from sqlalchemy.engine import Connection

from mlpred_cli.store.database import is_sqlite

#: Lock modes on ml_predictions held by a transaction that may be inserting rows.
_WRITE_LOCK_MODES = ("RowExclusiveLock", "ShareRowExclusiveLock", "ExclusiveLock",
                     "AccessExclusiveLock")  # fmt: skip
#: How long ``visible_frontier`` waits for a moment when no other transaction may be inserting.
FRONTIER_WAIT_S = 2.0
_FRONTIER_POLL_S = 0.02


def visible_frontier(conn: Connection, wait_s: float = FRONTIER_WAIT_S) -> int | None:
    """The highest id such that every row at or below it that will ever be committed is
    visible to the statements that follow (0 for an empty table); None when that could
    not be established within ``wait_s`` seconds.

    Ids come from a sequence in the order rows are inserted, not committed, so on
    PostgreSQL a transaction still inserting may hold lower ids than committed rows. The
    highest visible id counts only once no other transaction holds a write lock on
    ml_predictions: an inserting transaction holds it from before it takes its ids until
    after its rows become visible. SQLite has one writer, whose ids are always higher
    (but it reuses the ids of deleted rows above every other: deleting the newest
    predictions lets later ones take ids that are already examined).
    """
    highest = "SELECT COALESCE(MAX(id), 0) FROM ml_predictions"
    if is_sqlite(conn):
        return int(conn.exec_driver_sql(highest).scalar_one())
    modes = ", ".join(f"'{mode}'" for mode in _WRITE_LOCK_MODES)
    writing = (
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'relation' "
        "AND relation = 'ml_predictions'::regclass "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        f"AND mode IN ({modes}) AND pid IS DISTINCT FROM pg_backend_pid())"
    )
    deadline = time.monotonic() + wait_s
    while True:
        visible = int(conn.exec_driver_sql(highest).scalar_one())
        if not conn.exec_driver_sql(writing).scalar_one():
            return visible
        if time.monotonic() >= deadline:
            return None
        time.sleep(_FRONTIER_POLL_S)
