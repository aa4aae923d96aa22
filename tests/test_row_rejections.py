"""Rows the database rejects are isolated and dead-lettered with their error; failures of the
connection or the server are raised for the writer to retry (store.prediction_writes
``write_isolating`` with store.driver_errors ``is_row_specific``), on both backends."""

from __future__ import annotations

import errno
import sqlite3
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from mlpred_cli.errors import DatabaseUnavailable, RowRejected
from mlpred_cli.store.database import create_engine
from mlpred_cli.store.driver_errors import is_row_specific
from mlpred_cli.store.prediction_row import WRITE_COLUMNS, Row
from mlpred_cli.store.prediction_writes import IsolatedWrite, write_isolating, write_rows
from mlpred_cli.store.tables import predictions_table
from tests.factories import install_poison_rule, prediction_row

#: Where the rejected rows sit in a batch of 200: both ends, neighbours, the middle.
BAD_POSITIONS = (0, 13, 57, 58, 100, 198, 199)


def _row(symbol: str) -> Row:
    now = datetime.now(UTC)
    values = prediction_row(symbol, created_at=now, updated_at=now)
    return tuple(values.get(name) for name in WRITE_COLUMNS)


def _batch(size: int, bad: dict[int, str]) -> list[Row]:
    """``size`` rows of BTCUSDT except at the positions of ``bad``, which get its symbol."""
    return [_row(bad.get(position, "BTCUSDT")) for position in range(size)]


def _ids(rows: list[Row]) -> list[uuid.UUID]:
    return [row[0] for row in rows]


def _stored_ids(engine: Engine) -> list[uuid.UUID]:
    with engine.connect() as conn:
        return list(conn.scalars(sa.select(predictions_table.c.prediction_id)))


class _DeadLetters:
    """A ``dead_letter`` callback that keeps what it was handed."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.reasons: list[str] = []

    def __call__(self, row: Row, reason: str) -> None:
        self.rows.append(row)
        self.reasons.append(reason)


def _deny_bad_symbols(engine: Engine, pg_errcode: str, sqlite_raise: str) -> None:
    """A BEFORE INSERT trigger rejecting rows whose symbol starts with 'BAD': PostgreSQL
    raises ``pg_errcode`` with the message 'denied: <symbol>', SQLite RAISE(<kind>, 'denied')."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(  # text(): SQLAlchemy escapes the '%' for psycopg
                sa.text(
                    "CREATE FUNCTION mlpred_test_deny() RETURNS trigger LANGUAGE plpgsql AS $$ "
                    "BEGIN IF NEW.symbol LIKE 'BAD%' THEN "
                    f"RAISE EXCEPTION 'denied: %', NEW.symbol USING ERRCODE = '{pg_errcode}'; "
                    "END IF; RETURN NEW; END $$"
                )
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER deny_bad BEFORE INSERT ON ml_predictions "
                "FOR EACH ROW EXECUTE FUNCTION mlpred_test_deny()"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER deny_bad BEFORE INSERT ON ml_predictions "
                f"WHEN NEW.symbol LIKE 'BAD%' BEGIN SELECT RAISE({sqlite_raise}, 'denied'); END"
            )


def _pg_row_trigger(engine: Engine, symbol: str, action: str) -> None:
    """A PostgreSQL BEFORE INSERT trigger running ``action`` (PL/pgSQL) for rows of
    ``symbol``."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION mlpred_test_action() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN IF NEW.symbol = '{symbol}' THEN {action}; END IF; RETURN NEW; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER row_action BEFORE INSERT ON ml_predictions "
            "FOR EACH ROW EXECUTE FUNCTION mlpred_test_action()"
        )


# ------------------------------------------------------------------ rows at fault


@pytest.mark.parametrize(
    ("pg_errcode", "sqlite_raise"),
    [("42501", "ABORT"), ("P0001", "FAIL"), ("22023", "ROLLBACK")],
    ids=["42501-ABORT", "P0001-FAIL", "22023-ROLLBACK"],
)
def test_a_trigger_rejecting_some_rows_dead_letters_exactly_those(
    engine: Engine, pg_errcode: str, sqlite_raise: str
) -> None:
    _deny_bad_symbols(engine, pg_errcode, sqlite_raise)
    rows = _batch(200, {p: f"BAD{p}" for p in BAD_POSITIONS})
    bad = [rows[p] for p in BAD_POSITIONS]
    good = [row for row in rows if row not in bad]

    with pytest.raises(RowRejected) as raised:  # the batch as one transaction: nothing stored
        write_rows(engine, rows)
    assert raised.value.reason.startswith("denied")
    assert _stored_ids(engine) == []

    dead_letters = _DeadLetters()
    result = write_isolating(engine, rows, dead_letters)

    assert result == IsolatedWrite(written=193, dead_lettered=7)
    assert result.rejected == 7
    assert sorted(_stored_ids(engine)) == sorted(_ids(good))
    assert _ids(dead_letters.rows) == _ids(bad)  # each once, in batch order
    if engine.dialect.name == "postgresql":
        assert dead_letters.reasons == [f"denied: BAD{p}" for p in BAD_POSITIONS]
    else:
        assert dead_letters.reasons == ["denied"] * 7


@pytest.mark.postgres_only
def test_a_trigger_sqlstate_psycopg_has_no_class_for_is_dead_lettered(engine: Engine) -> None:
    _deny_bad_symbols(engine, "U0001", "ABORT")
    rows = _batch(6, {4: "BAD4"})
    dead_letters = _DeadLetters()
    assert write_isolating(engine, rows, dead_letters) == IsolatedWrite(5, 1)
    assert dead_letters.reasons == ["denied: BAD4"]
    assert len(_stored_ids(engine)) == 5


def test_a_replayed_batch_with_rejected_rows_is_written_once(engine: Engine) -> None:
    # some rows already stored (PostgreSQL's COPY meets a unique violation and goes through
    # the staging table), some rejected: both must still come out right
    _deny_bad_symbols(engine, "42501", "ABORT")
    rows = _batch(20, {12: "BAD12", 17: "BAD17"})
    write_rows(engine, rows[:10])
    dead_letters = _DeadLetters()

    result = write_isolating(engine, rows, dead_letters)

    assert result == IsolatedWrite(written=18, dead_lettered=2)
    assert _ids(dead_letters.rows) == [rows[12][0], rows[17][0]]
    stored = _stored_ids(engine)
    assert len(stored) == len(set(stored)) == 18


# ------------------------------------------------------------------ the dead-letter callback fails


def test_a_failing_dead_letter_never_costs_the_good_rows(engine: Engine) -> None:
    install_poison_rule(engine)
    rows = _batch(50, dict.fromkeys((3, 20, 21, 49), "POISON"))
    poison = [rows[p] for p in (3, 20, 21, 49)]
    taken = _DeadLetters()
    disk_full = OSError(errno.ENOSPC, "No space left on device")

    def dead_letter(row: Row, reason: str) -> None:
        if row in (poison[0], poison[2]):
            raise disk_full
        taken(row, reason)

    result = write_isolating(engine, rows, dead_letter)  # does not raise

    assert result.written == 46
    assert result.dead_lettered == 2
    assert result.rejected == 4
    assert sorted(_stored_ids(engine)) == sorted(_ids([r for r in rows if r not in poison]))
    assert _ids(taken.rows) == [poison[1][0], poison[3][0]]
    assert [u.row for u in result.undelivered] == [poison[0], poison[2]]
    for undelivered in result.undelivered:
        assert undelivered.error is disk_full
        assert undelivered.reason == taken.reasons[0]  # the database's own message
    assert ("no_poison" if engine.dialect.name == "postgresql" else "poison row") in (
        taken.reasons[0]
    )


def test_a_dead_letter_that_always_fails_still_writes_every_good_row(engine: Engine) -> None:
    install_poison_rule(engine)
    rows = _batch(16, dict.fromkeys((0, 7, 15), "POISON"))

    def dead_letter(row: Row, reason: str) -> None:
        raise PermissionError(errno.EACCES, "read-only spool directory")

    result = write_isolating(engine, rows, dead_letter)

    assert (result.written, result.dead_lettered, len(result.undelivered)) == (13, 0, 3)
    assert len(_stored_ids(engine)) == 13


# ------------------------------------------------------------------ the database is at fault


@pytest.mark.postgres_only
def test_a_statement_timeout_on_some_rows_is_raised_not_dead_lettered(
    engine: Engine, db_url: str
) -> None:
    _pg_row_trigger(engine, "SLOW", "PERFORM pg_sleep(2)")
    database = engine.url.database
    with engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER DATABASE \"{database}\" SET statement_timeout = '150ms'")
    timed = create_engine(db_url)
    dead_letters = _DeadLetters()
    try:
        rows = _batch(10, {6: "SLOW"})
        with pytest.raises(DatabaseUnavailable) as raised:
            write_isolating(timed, rows, dead_letters)
        assert "statement timeout" in raised.value.reason
        assert not is_row_specific(raised.value)
    finally:
        timed.dispose()
    assert dead_letters.rows == []
    assert _stored_ids(engine) == []


@pytest.mark.postgres_only
def test_a_terminated_connection_is_raised_then_the_retry_writes_everything(
    engine: Engine,
) -> None:
    _pg_row_trigger(engine, "KILL", "PERFORM pg_terminate_backend(pg_backend_pid())")
    rows = _batch(10, {3: "KILL"})
    dead_letters = _DeadLetters()

    with pytest.raises(DatabaseUnavailable):
        write_isolating(engine, rows, dead_letters)
    assert dead_letters.rows == []
    assert _stored_ids(engine) == []

    with engine.begin() as conn:  # the server is back to normal: the retry succeeds
        conn.exec_driver_sql("DROP TRIGGER row_action ON ml_predictions")
    assert write_isolating(engine, rows, dead_letters) == IsolatedWrite(10, 0)
    assert dead_letters.rows == []


@pytest.mark.sqlite_only
def test_a_locked_database_is_raised_not_dead_lettered(engine: Engine, db_url: str) -> None:
    impatient = create_engine(db_url)

    @event.listens_for(impatient, "connect")
    def _short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=50")

    dead_letters = _DeadLetters()
    holder = sqlite3.connect(str(engine.url.database), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        with pytest.raises(DatabaseUnavailable) as raised:
            write_isolating(impatient, _batch(10, {}), dead_letters)
        holder.execute("ROLLBACK")
        assert raised.value.reason == "database is locked"
        assert write_isolating(impatient, _batch(10, {}), dead_letters).written == 10
    finally:
        holder.close()
        impatient.dispose()
    assert dead_letters.rows == []
