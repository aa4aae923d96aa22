"""Driver errors become mlpred errors in one place (store.driver_errors), on both backends."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from mlpred_cli.derive.importance_snapshot import build_snapshot
from mlpred_cli.errors import (
    DatabaseError,
    DatabaseUnavailable,
    MlpredError,
    RowRejected,
)
from mlpred_cli.store.database import create_engine, mask_url
from mlpred_cli.store.driver_errors import (
    database_errors,
    describe_error,
    is_row_specific,
    mask_passwords,
    translate,
)
from mlpred_cli.store.importance_snapshots import write_snapshot
from mlpred_cli.store.prediction_row import WRITE_COLUMNS, Row
from mlpred_cli.store.prediction_writes import write_rows
from mlpred_cli.store.tables import feature_importance_table
from tests.factories import install_poison_rule

PG_URL = make_url("postgresql+psycopg://trader:s3cret-pw@db.example:5432/mlpred")


def _row() -> Row:
    now = datetime.now(UTC)
    values = dict.fromkeys(WRITE_COLUMNS)
    values.update(prediction_id=uuid.uuid4(), symbol="BTCUSDT", timestamp=0, datetime=now,
                  is_duplicate=False, created_at=now, updated_at=now)  # fmt: skip
    return tuple(values[name] for name in WRITE_COLUMNS)


def _wrapped(
    kind: type[sa.exc.DBAPIError], orig: Exception, *, connection_invalidated: bool = False
) -> sa.exc.DBAPIError:
    return kind("INSERT INTO t VALUES (?)", {}, orig, connection_invalidated=connection_invalidated)


# ------------------------------------------------------------------ the table, unit by unit


@pytest.mark.parametrize(
    ("error", "expected", "prefix"),
    [
        (_wrapped(sa.exc.OperationalError, psycopg.OperationalError("refused")),
         DatabaseUnavailable, "cannot connect to"),
        (psycopg.OperationalError("refused"), DatabaseUnavailable, "cannot connect to"),
        (sqlite3.OperationalError("database is locked"), DatabaseUnavailable, "cannot connect to"),
        (_wrapped(sa.exc.DBAPIError, psycopg.InterfaceError("gone"), connection_invalidated=True),
         DatabaseUnavailable, "lost connection to"),
        (_wrapped(sa.exc.IntegrityError, psycopg.errors.CheckViolation("check failed")),
         RowRejected, "database error:"),
        (_wrapped(sa.exc.IntegrityError, sqlite3.IntegrityError("poison row")),
         RowRejected, "database error:"),
        (psycopg.errors.NumericValueOutOfRange("out of range"), RowRejected, "database error:"),
        (psycopg.errors.RaiseException("trigger said no"), RowRejected, "database error:"),
        (_wrapped(sa.exc.ProgrammingError, psycopg.errors.UndefinedTable("no table")),
         DatabaseError, "database error:"),
        (sqlite3.ProgrammingError("closed cursor"), DatabaseError, "database error:"),
    ],
)  # fmt: skip
def test_translation_table(error: Exception, expected: type[MlpredError], prefix: str) -> None:
    translated = translate(error, PG_URL)
    assert type(translated) is expected
    assert str(translated).startswith(prefix)
    if prefix != "database error:":
        assert "trader:***@db.example" in str(translated)
    assert "s3cret-pw" not in str(translated)
    assert is_row_specific(translated) is (expected is RowRejected)
    # the raw error and its translation say the same thing about the row
    assert is_row_specific(error) is is_row_specific(translated)


def test_other_errors_pass_through_unchanged() -> None:
    for error in (KeyError("x"), TypeError("bug"), MlpredError("mine"), sa.exc.ArgumentError()):
        assert translate(error) is None
        with pytest.raises(type(error)), database_errors(PG_URL):
            raise error


def test_is_row_specific_keeps_its_rules() -> None:
    integrity = psycopg.errors.UniqueViolation("dup")
    assert is_row_specific(_wrapped(sa.exc.IntegrityError, integrity))
    assert not is_row_specific(
        _wrapped(sa.exc.IntegrityError, integrity, connection_invalidated=True)
    )
    assert not is_row_specific(_wrapped(sa.exc.OperationalError, sqlite3.OperationalError("x")))
    for error in (TypeError("bad"), ValueError("bad"), OverflowError("big")):
        assert is_row_specific(error)
    assert not is_row_specific(RuntimeError("boom"))
    assert is_row_specific(RowRejected("database error: x", "x"))
    assert not is_row_specific(DatabaseError("database error: x", "x"))
    assert not is_row_specific(DatabaseUnavailable("cannot connect", "x"))


def test_messages_keep_the_first_line_and_mask_passwords() -> None:
    orig = psycopg.ProgrammingError("bad dsn postgresql://u:hunter2@h/db\nDETAIL: more")
    error = translate(_wrapped(sa.exc.ProgrammingError, orig), PG_URL)
    assert isinstance(error, DatabaseError)
    assert str(error) == "database error: bad dsn postgresql://u:***@h/db"
    assert error.reason == "bad dsn postgresql://u:***@h/db"
    assert describe_error(error) == error.reason
    assert mask_passwords("bad conninfo host=h password=hunter2 user=u") == (
        "bad conninfo host=h password=*** user=u"
    )
    assert mask_passwords("to sqlite:///a/b.db failed") == "to sqlite:///a/b.db failed"


def test_database_errors_is_the_same_translation() -> None:
    with pytest.raises(RowRejected), database_errors(PG_URL):
        raise sqlite3.IntegrityError("CHECK constraint failed")
    with pytest.raises(DatabaseError, match="syntax"), database_errors(PG_URL):
        raise psycopg.errors.SyntaxError("syntax error at or near")


# ------------------------------------------------------------------ against real databases


def _missing_database_url(backend: str, db_url: str, tmp_path: Path) -> URL:
    if backend == "sqlite":
        path = tmp_path / "missing.db"
        path.mkdir()  # a directory where the file should be: SQLite cannot open it
        return make_url(f"sqlite+pysqlite:///{path}")
    url = make_url(db_url)
    return url.set(database=f"mlpred_missing_{uuid.uuid4().hex[:8]}", password="not-shown")


def test_writing_into_a_missing_database_is_database_unavailable(
    backend: str, db_url: str, tmp_path: Path
) -> None:
    url = _missing_database_url(backend, db_url, tmp_path)
    engine = create_engine(url)
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            write_rows(engine, [_row()])
        assert str(raised.value).startswith(f"cannot connect to {mask_url(url)}: ")
        assert "not-shown" not in str(raised.value)
        snapshot = build_snapshot(["rsi"], [1.0], model_version="v1")
        with pytest.raises(DatabaseUnavailable, match="cannot connect to"):
            write_snapshot(engine, snapshot)
    finally:
        engine.dispose()


def _reject_poison_features(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "ALTER TABLE ml_feature_importance "
                "ADD CONSTRAINT no_poison CHECK (feature_name <> 'POISON')"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER no_poison BEFORE INSERT ON ml_feature_importance "
                "WHEN NEW.feature_name = 'POISON' BEGIN SELECT RAISE(ABORT, 'poison row'); END"
            )


def test_write_snapshot_raises_row_rejected_not_a_driver_error(engine: Engine) -> None:
    _reject_poison_features(engine)
    snapshot = build_snapshot(["rsi", "POISON"], [0.5, 0.2], model_version="v1")
    with pytest.raises(RowRejected) as raised:
        write_snapshot(engine, snapshot)
    assert not isinstance(raised.value, sa.exc.SQLAlchemyError)
    assert raised.value.__cause__ is None
    assert is_row_specific(raised.value)
    assert raised.value.reason  # the driver's first line, for the dead-letter file
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(feature_importance_table)) == 0


def test_write_rows_raises_row_rejected_for_a_bad_row(engine: Engine) -> None:
    install_poison_rule(engine)
    poison = list(_row())
    poison[WRITE_COLUMNS.index("symbol")] = "POISON"
    with pytest.raises(RowRejected):
        write_rows(engine, [_row(), tuple(poison)])


@pytest.mark.postgres_only
def test_a_statement_the_database_refuses_is_database_error(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE ml_feature_importance")
    snapshot = build_snapshot(["rsi"], [1.0], model_version="v1")
    with pytest.raises(DatabaseError) as raised:
        write_snapshot(engine, snapshot)
    assert not isinstance(raised.value, RowRejected)
    assert str(raised.value).startswith("database error: ")
    assert "ml_feature_importance" in str(raised.value)
