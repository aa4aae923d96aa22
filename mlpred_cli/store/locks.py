"""Locks that keep runs of one job apart: one backfill of actual outcomes per database."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import Connection, Engine

from mlpred_cli.store.database import is_sqlite

#: PostgreSQL advisory-lock key: the first 8 bytes of sha256("mlpred.backfill-actuals").
ADVISORY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"mlpred.backfill-actuals").digest()[:8], "big", signed=True
)


#: Mode of a backfill lock file when it is created (filelock applies it despite the umask).
LOCK_FILE_MODE = 0o600


def backfill_lock_path(engine: Engine) -> Path:
    """The lock file of a SQLite database's backfill: ``<db>.backfill.lock`` beside it,
    created mode 0600."""
    database = Path(engine.url.database or "").expanduser().resolve()
    return database.with_name(database.name + ".backfill.lock")


@contextlib.contextmanager
def backfill_lock(engine: Engine, conn: Connection) -> Iterator[bool]:
    """Try to become the only backfill on this database; yields False when another one runs.

    PostgreSQL: a session-level advisory lock on ``conn`` (taken and released in their own
    committed transactions). SQLite: an OS lock on a file next to the database
    (``filelock``; the file is created mode 0600 and left in place), tried once, so the
    loser never waits on a busy timeout.
    """
    if not is_sqlite(engine):
        got = bool(
            conn.exec_driver_sql("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).scalar()
        )
        conn.commit()
        try:
            yield got
        finally:
            if got:
                if conn.in_transaction():  # an error inside aborted it: unlock in a new one
                    conn.rollback()
                conn.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
                conn.commit()
        return
    # Imported here: without fcntl, filelock warns at import that it falls back to soft locks.
    from filelock import FileLock, Timeout

    # A soft lock (a file that merely exists) would outlive a killed run and block every later
    # backfill: where the filesystem has no OS locks, fail instead of falling back to one.
    # A new lock file is private like the database beside it; an existing one keeps its mode.
    lock = FileLock(backfill_lock_path(engine), mode=LOCK_FILE_MODE, fallback_to_soft=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
