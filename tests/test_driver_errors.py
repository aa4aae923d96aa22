"""Driver errors become mlpred errors in one place (store.driver_errors), on both backends."""

from __future__ import annotations

import re
import sqlite3
import uuid
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
from mlpred_cli.store import driver_errors
from mlpred_cli.store.database import create_engine, mask_url
from mlpred_cli.store.driver_errors import (
    BATCH_LEVEL_SQLSTATES,
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
from tests.factories import install_poison_rule, written_rows

PG_URL = make_url("postgresql+psycopg://trader:s3cret-pw@db.example:5432/mlpred")


def _row() -> Row:
    return written_rows(1)[0]


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
        (_wrapped(sa.exc.ProgrammingError, psycopg.errors.InsufficientPrivilege("denied")),
         RowRejected, "database error:"),
        # psycopg files a trigger's 2F / 39 SQLSTATE under OperationalError: still a row
        (_wrapped(sa.exc.OperationalError, psycopg.errors.lookup("2F005")("no RETURN")),
         RowRejected, "database error:"),
        (psycopg.errors.QueryCanceled("statement timeout"), DatabaseUnavailable,
         "cannot connect to"),
        (sqlite3.OperationalError("malformed JSON"), RowRejected, "database error:"),
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
    locked = sqlite3.OperationalError("database is locked")
    assert not is_row_specific(_wrapped(sa.exc.OperationalError, locked))
    assert is_row_specific(
        _wrapped(sa.exc.OperationalError, sqlite3.OperationalError("malformed JSON"))
    )
    for error in (TypeError("bad"), ValueError("bad"), OverflowError("big")):
        assert is_row_specific(error)
    assert not is_row_specific(RuntimeError("boom"))
    assert is_row_specific(RowRejected("database error: x", "x"))
    assert not is_row_specific(DatabaseError("database error: x", "x"))
    assert not is_row_specific(DatabaseUnavailable("cannot connect", "x"))


# ------------------------------------------------------------------ row-specific or batch-level

#: SQLSTATE -> row-specific? Batch-level: connection, server availability, transient
#: conflicts, the schema. Everything else (whatever psycopg's class for it) is about a row.
PG_SQLSTATES = {
    "08000": False, "08001": False, "08003": False, "08006": False, "08P01": False,
    "28000": False, "28P01": False,
    "40001": False, "40P01": False,
    "53100": False, "53200": False, "53300": False,
    "57014": False, "57P01": False, "57P02": False, "57P03": False,
    "58030": False, "XX000": False, "XX001": False,
    "55P03": False, "25006": False,
    "42P01": False, "42703": False, "3F000": False, "3D000": False, "42883": False,
    "22023": True, "22001": True, "22003": True, "22P02": True, "22021": True,
    "23505": True, "23514": True, "23502": True, "23503": True,
    "P0001": True, "P0002": True, "P0004": True,
    "42501": True, "42601": True, "42804": True, "42P10": True,
    "2F005": True, "39P01": True, "38001": True,
    "54000": True, "55000": True, "25P02": True, "0A000": True,
}  # fmt: skip


_SA_WRAPPERS: list[tuple[type[Exception], type[sa.exc.DBAPIError]]] = [
    (psycopg.OperationalError, sa.exc.OperationalError),
    (psycopg.IntegrityError, sa.exc.IntegrityError),
    (psycopg.DataError, sa.exc.DataError),
    (psycopg.ProgrammingError, sa.exc.ProgrammingError),
    (psycopg.InternalError, sa.exc.InternalError),
    (psycopg.NotSupportedError, sa.exc.NotSupportedError),
    (psycopg.DatabaseError, sa.exc.DatabaseError),
]


@pytest.mark.parametrize(("sqlstate", "row_specific"), sorted(PG_SQLSTATES.items()))
def test_postgresql_sqlstates_are_classified_by_the_table(
    sqlstate: str, row_specific: bool
) -> None:
    kind = psycopg.errors.lookup(sqlstate)
    raw = kind(f"server says {sqlstate}")
    assert raw.sqlstate == sqlstate
    wrapper = next(w for base, w in _SA_WRAPPERS if isinstance(raw, base))  # as SQLAlchemy does
    for error in (raw, _wrapped(wrapper, raw)):
        assert is_row_specific(error) is row_specific, (sqlstate, type(error))
        translated = translate(error, PG_URL)
        assert translated is not None
        assert isinstance(translated, RowRejected) is row_specific
        assert is_row_specific(translated) is row_specific
    # a connection SQLAlchemy invalidated is never about a row, whatever the SQLSTATE
    assert not is_row_specific(_wrapped(wrapper, raw, connection_invalidated=True))


@pytest.mark.parametrize(
    ("error", "row_specific"),
    [
        (psycopg.OperationalError("consuming input failed: server closed the connection"),
         False),
        (psycopg.InterfaceError("the connection is closed"), False),
        (psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"), True),
        (psycopg.IntegrityError("client-side"), True),
        (psycopg.ProgrammingError("the query has 2 placeholders but 1 parameters"), False),
    ],
)  # fmt: skip
def test_psycopg_errors_without_a_sqlstate(error: psycopg.Error, row_specific: bool) -> None:
    assert error.sqlstate is None
    assert is_row_specific(error) is row_specific
    assert isinstance(translate(error), RowRejected) is row_specific


def test_every_batch_level_sqlstate_is_in_the_module_table() -> None:
    doc = driver_errors.__doc__ or ""
    table = doc[doc.index("SQLSTATE  what it means") :]
    for prefix in BATCH_LEVEL_SQLSTATES:
        assert f"\n{prefix:<8}  " in table, prefix
    listed = re.findall(r"^([0-9A-Z]{2}|[0-9A-Z]{5}) +\w", table.split("\n\n")[0], re.M)
    assert sorted(listed) == sorted(BATCH_LEVEL_SQLSTATES)


_SQLITE_WRAPPERS: dict[type[Exception], type[sa.exc.DBAPIError]] = {
    sqlite3.IntegrityError: sa.exc.IntegrityError,
    sqlite3.OperationalError: sa.exc.OperationalError,
}


def _sqlite_error(tmp_path: Path, statement: str) -> sqlite3.Error:
    """The error SQLite itself raises running ``statement`` on a small schema with a CHECK,
    a STRICT table, RAISE triggers of every kind and a trigger that parses JSON."""
    conn = sqlite3.connect(tmp_path / "errors.db", isolation_level=None)
    try:
        conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, s TEXT CHECK (s <> 'CHK'),
                                          n INTEGER NOT NULL DEFAULT 0, j TEXT);
            CREATE TABLE IF NOT EXISTS strict_t (n INTEGER) STRICT;
            CREATE TRIGGER IF NOT EXISTS t_abort BEFORE INSERT ON t WHEN NEW.s = 'ABORT'
                BEGIN SELECT RAISE(ABORT, 'denied'); END;
            CREATE TRIGGER IF NOT EXISTS t_fail BEFORE INSERT ON t WHEN NEW.s = 'FAIL'
                BEGIN SELECT RAISE(FAIL, 'denied'); END;
            CREATE TRIGGER IF NOT EXISTS t_rollback BEFORE INSERT ON t WHEN NEW.s = 'ROLLBACK'
                BEGIN SELECT RAISE(ROLLBACK, 'denied'); END;
            CREATE TRIGGER IF NOT EXISTS t_json BEFORE INSERT ON t WHEN NEW.s = 'JSON'
                BEGIN SELECT json_extract(NEW.j, '$.a'); END;
            """
        )
        with pytest.raises(sqlite3.Error) as raised:
            conn.execute(statement)
        return raised.value
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("statement", "row_specific", "message"),
    [
        ("INSERT INTO t (s) VALUES ('ABORT')", True, "denied"),
        ("INSERT INTO t (s) VALUES ('FAIL')", True, "denied"),
        ("INSERT INTO t (s) VALUES ('ROLLBACK')", True, "denied"),
        ("INSERT INTO t (s) VALUES ('CHK')", True, "CHECK constraint failed"),
        ("INSERT INTO t (s, n) VALUES ('x', NULL)", True, "NOT NULL constraint failed"),
        ("INSERT INTO t (id, s) VALUES ('abc', 'x')", True, "datatype mismatch"),
        ("INSERT INTO strict_t (n) VALUES ('abc')", True, "cannot store TEXT value"),
        ("INSERT INTO t (s, j) VALUES ('JSON', 'not json')", True, "malformed JSON"),
        ("INSERT INTO missing VALUES (1)", False, "no such table"),
        ("INSERT INTO t (zz) VALUES (1)", False, "has no column named"),
        ("SELECT zz FROM t", False, "no such column"),
        ("INSERT INTO t (s) VALUES (no_such_function(1))", False, "no such function"),
        ("COMMIT", False, "no transaction is active"),
    ],
)  # fmt: skip
def test_sqlite_errors_are_classified_by_what_they_are_about(
    tmp_path: Path, statement: str, row_specific: bool, message: str
) -> None:
    error = _sqlite_error(tmp_path, statement)
    assert message in str(error)
    for candidate in (error, _wrapped(_SQLITE_WRAPPERS[type(error)], error)):
        assert is_row_specific(candidate) is row_specific, (statement, type(candidate))
        assert isinstance(translate(candidate), RowRejected) is row_specific


def test_sqlite_database_level_errors_are_retried(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    waiter = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    errors: list[sqlite3.Error] = []
    try:
        with pytest.raises(sqlite3.OperationalError) as locked:
            waiter.execute("INSERT INTO t VALUES (1)")
        errors.append(locked.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        waiter.close()
    with pytest.raises(sqlite3.OperationalError) as cannot_open:
        sqlite3.connect(tmp_path / "no-such-dir" / "x.db")
    errors.append(cannot_open.value)
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as read_only:
        reader.execute("INSERT INTO t VALUES (1)")
    reader.close()
    errors.append(read_only.value)
    assert [str(e) for e in errors] == [
        "database is locked",
        "unable to open database file",
        "attempt to write a readonly database",
    ]
    for error in errors:
        assert not is_row_specific(error), error
        assert not is_row_specific(_wrapped(sa.exc.OperationalError, error))
        assert type(translate(error)) is DatabaseUnavailable
    # the same messages without a result code (raised by hand, or by an older sqlite3)
    for text in ("database is locked", "disk I/O error", "unable to open database file",
                 "no such table: ml_predictions", "database or disk is full"):  # fmt: skip
        assert not is_row_specific(sqlite3.OperationalError(text)), text


def test_sqlite_errors_binding_a_value_are_about_the_row(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "bind.db")
    conn.execute("CREATE TABLE t (x)")
    with pytest.raises(sqlite3.ProgrammingError) as raised:
        conn.execute("INSERT INTO t VALUES (?)", (object(),))
    conn.close()
    assert is_row_specific(raised.value)
    assert not is_row_specific(sqlite3.ProgrammingError("Cannot operate on a closed database."))


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


def test_a_connection_error_masks_secret_query_parameters() -> None:
    """The URL in "cannot connect" is masked like every printed URL: a secret in the query
    (sslpassword) never reaches the message."""
    from tests.cli_helpers import run_cli

    url = "postgresql://postgres@127.0.0.1:1/x?sslpassword=topsecret&connect_timeout=2"
    code, out, err = run_cli("--db", url, "recent")
    assert code == 1
    assert "cannot connect to" in err
    assert "sslpassword=***" in err
    assert "topsecret" not in out + err
