"""A database that refuses writes says so ("database is read-only: ..."), not "cannot
connect", and nothing in it changes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from mlpred_cli.errors import DatabaseUnavailable
from mlpred_cli.outcomes.candle_files import import_candles
from mlpred_cli.store.database import create_engine, run_autocommit
from mlpred_cli.store.tables import candles_table
from tests.cli_helpers import run_cli

CANDLES = "symbol,datetime,open,high,low,close,volume\nBTCUSDT,2026-01-01T00:00:00Z,1,2,1,2,5\n"


def _candle_file(tmp_path: Path) -> Path:
    path = tmp_path / "candles.csv"
    path.write_text(CANDLES)
    return path


def _candle_count(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(candles_table)).scalar()
    engine.dispose()
    return int(count or 0)


def test_a_query_only_sqlite_database_is_named_read_only(db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("PRAGMA query_only is SQLite's")
    engine = create_engine(db_url)

    @event.listens_for(engine, "connect")
    def _query_only(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only=ON")

    with pytest.raises(DatabaseUnavailable) as raised:
        import_candles(engine, _candle_file(tmp_path))
    engine.dispose()
    assert str(raised.value).startswith("database is read-only: sqlite")
    assert "cannot connect" not in str(raised.value)
    assert _candle_count(db_url) == 0


def _make_read_only(db_url: str, backend: str) -> None:
    if backend == "sqlite":
        if os.geteuid() == 0:
            pytest.skip("root writes to a read-only file: permissions cannot show it")
        path = Path(make_url(db_url).database or "")
        path.chmod(0o444)
        return
    url = make_url(db_url)
    name = url.database
    run_autocommit(
        url.set(database="postgres"),
        f'ALTER DATABASE "{name}" SET default_transaction_read_only = on',
    )


def test_the_cli_names_a_read_only_database(db_url: str, backend: str, tmp_path: Path) -> None:
    _make_read_only(db_url, backend)
    code, _, err = run_cli("--db", db_url, "import-candles", str(_candle_file(tmp_path)))
    assert code == 1
    assert err.startswith("Error: database is read-only: ")
    assert len(err.strip().splitlines()) == 1
    assert "cannot connect" not in err
    assert _candle_count(db_url) == 0
