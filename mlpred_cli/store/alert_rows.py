"""Rows of ``ml_alerts``: read them, and apply one ``mlpred check`` run's verdicts to them in
one transaction that concurrent runs take in turn.

The rules (what counts as opened, ongoing, resolved) live in ``monitor.alert_state``; this
module only moves values in and out of the table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpred_cli.store.database import is_sqlite
from mlpred_cli.store.prediction_reads import reading
from mlpred_cli.store.source import DatabaseSource
from mlpred_cli.store.tables import alerts_table

A = alerts_table.c

#: PostgreSQL transaction-level advisory-lock key of alert updates.
ALERTS_LOCK_KEY = int.from_bytes(hashlib.sha256(b"mlpred.alerts").digest()[:8], "big", signed=True)

#: The columns of an alert row, in table order.
ALERT_COLUMNS: tuple[str, ...] = tuple(column.name for column in alerts_table.columns)


@contextmanager
def alerts_transaction(source: DatabaseSource) -> Iterator[Connection]:
    """A transaction on ``ml_alerts`` that no other run's alert transaction interleaves with
    (PostgreSQL: an advisory lock; SQLite: the write lock taken before the first read)."""
    with reading(source) as engine, engine.begin() as conn:
        if is_sqlite(conn):
            conn.execute(sa.update(alerts_table).where(sa.false()).values(severity="OK"))
        else:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": ALERTS_LOCK_KEY})
        yield conn


def alert_rows(
    conn: Connection,
    fingerprints: Sequence[str] | None = None,
    *,
    open_only: bool = False,
) -> list[dict[str, Any]]:
    """Alert rows (all, or those of ``fingerprints``), open ones first, newest first."""
    query = sa.select(alerts_table)
    if fingerprints is not None:
        if not fingerprints:
            return []
        query = query.where(A.fingerprint.in_(list(fingerprints)))
    if open_only:
        query = query.where(A.resolved_at.is_(None))
    query = query.order_by(A.resolved_at.is_not(None), A.last_seen.desc(), A.fingerprint)
    return [dict(row) for row in conn.execute(query).mappings()]


def read_alerts(source: DatabaseSource, *, open_only: bool = False) -> list[dict[str, Any]]:
    """``alert_rows`` on a connection of its own."""
    with reading(source) as engine, engine.connect() as conn:
        return alert_rows(conn, open_only=open_only)


def insert_alert(conn: Connection, values: Mapping[str, Any]) -> None:
    """Add a new alert row (every column of ``ALERT_COLUMNS`` but ``resolved_at``)."""
    conn.execute(sa.insert(alerts_table).values(**values))


def update_alert(conn: Connection, fingerprint: str, values: Mapping[str, Any]) -> None:
    """Overwrite the given columns of one alert row."""
    conn.execute(sa.update(alerts_table).where(A.fingerprint == fingerprint).values(**values))


def resolve_alerts(conn: Connection, fingerprints: Sequence[str], at: datetime) -> None:
    """Mark the open alerts of ``fingerprints`` resolved at ``at`` (not yet notified)."""
    if fingerprints:
        conn.execute(
            sa.update(alerts_table)
            .where(A.fingerprint.in_(list(fingerprints)), A.resolved_at.is_(None))
            .values(resolved_at=at, notified_at=None)
        )


def open_fingerprints(conn: Connection, checks: Sequence[str]) -> list[str]:
    """Fingerprints of the open alerts raised by ``checks``."""
    query = sa.select(A.fingerprint).where(A.resolved_at.is_(None), A.check_name.in_(list(checks)))
    return list(conn.execute(query).scalars())


def unnotified_resolved(conn: Connection, since: datetime) -> list[dict[str, Any]]:
    """Alerts resolved at or after ``since`` whose resolution no webhook has received."""
    query = sa.select(alerts_table).where(
        A.resolved_at.is_not(None), A.resolved_at >= since, A.notified_at.is_(None)
    )
    return [dict(row) for row in conn.execute(query.order_by(A.resolved_at)).mappings()]


def mark_notified(source: DatabaseSource, fingerprints: Sequence[str], at: datetime) -> None:
    """Record that the current state of ``fingerprints`` reached the webhook at ``at``."""
    if not fingerprints:
        return
    with alerts_transaction(source) as conn:
        conn.execute(
            sa.update(alerts_table)
            .where(A.fingerprint.in_(list(fingerprints)))
            .values(notified_at=at)
        )
