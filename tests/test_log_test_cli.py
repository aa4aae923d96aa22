"""`mlpred log-test` end to end, and the module-level logger flushed by its atexit hook."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlpred_cli.capture.spool_replay import replay_spool, spool_status
from mlpred_cli.outcomes.rollups import rebuild_rollups
from mlpred_cli.store.database import create_engine
from mlpred_cli.store.prediction_deletes import delete_predictions_by_id
from mlpred_cli.store.rollup_columns import ROLLUP_TABLE
from mlpred_cli.store.tables import predictions_table
from tests.cli_helpers import run_cli
from tests.factories import insert_predictions, prediction_row


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's spool directories under its own data directory."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def _rows(url: str) -> list[dict[str, object]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(sa.select(predictions_table)).mappings()]
    engine.dispose()
    return rows


def _table(url: str) -> list[tuple[object, ...]]:
    """Every row of ml_predictions, every column, in id order."""
    engine = create_engine(url)
    with engine.connect() as conn:
        query = sa.select(predictions_table).order_by(predictions_table.c.id)
        rows = [tuple(row) for row in conn.execute(query)]
    engine.dispose()
    return rows


def _rollups(url: str) -> list[tuple[object, ...]]:
    """Every row of ml_prediction_daily, in key order."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = [
            tuple(row)
            for row in conn.execute(
                sa.text(
                    f"SELECT * FROM {ROLLUP_TABLE} ORDER BY day, symbol, model_version, horizon"
                )
            )
        ]
    engine.dispose()
    return rows


def _plant_user_predictions(url: str) -> None:
    """Real-looking predictions of the user, some with outcomes, on the symbols log-test uses."""
    engine = create_engine(url)
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [
        prediction_row(
            symbol,
            now - timedelta(minutes=15 * step),
            model_version="prod-v3",
            actual_return_15m=0.002,
            actual_direction_15m="LONG",
            accuracy_15m=True,
        )
        for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT")
        for step in range(4)
    ]
    insert_predictions(engine, rows)
    engine.dispose()


def test_log_test_leaves_the_users_data_as_it_was(db_url: str) -> None:
    _plant_user_predictions(db_url)
    before = _table(db_url)
    code, out, err = run_cli("--db", db_url, "log-test", "--count", "2", "--seed", "3")
    assert code == 0, err
    assert "Logged 6, read back 6" in out
    assert "Removed the 6 test predictions it wrote; --keep keeps them." in out
    assert _table(db_url) == before


def test_log_test_leaves_the_rollups_as_they_were(db_url: str) -> None:
    _plant_user_predictions(db_url)
    rebuild_rollups(db_url)
    before = _rollups(db_url)
    assert before  # the user's rows are counted
    code, _, err = run_cli("--db", db_url, "log-test", "--count", "2", "--seed", "5")
    assert code == 0, err
    assert _rollups(db_url) == before


def test_deleting_rows_the_rollups_count_refreshes_their_keys(db_url: str) -> None:
    """Synthetic rows counted by a rebuild (or a backfill) before they are deleted leave no
    trace: the rollups afterwards are what a rebuild of the remaining rows writes."""
    _plant_user_predictions(db_url)
    now = datetime.now(UTC).replace(microsecond=0)
    synthetic = [
        prediction_row(
            symbol,
            now - timedelta(minutes=15 * step),
            model_version=version,
            actual_return_15m=-0.004,
            actual_direction_15m="SHORT",
            accuracy_15m=False,
        )
        for symbol in ("BTCUSDT", "XRPUSDT")
        for step in range(3)
        for version in ("prod-v3", "log-test")  # one of the user's keys, and a key of its own
    ]
    engine = create_engine(db_url)
    insert_predictions(engine, synthetic)
    rebuild_rollups(engine)
    counted = _rollups(db_url)
    deleted = delete_predictions_by_id(engine, [str(row["prediction_id"]) for row in synthetic])
    assert deleted == len(synthetic)
    after_delete = _rollups(db_url)
    rebuild_rollups(engine)
    engine.dispose()
    assert after_delete == _rollups(db_url)
    assert after_delete != counted
    assert {row[2] for row in after_delete} == {"prod-v3"}


def test_log_test_rows_do_not_come_back_from_a_spool_replay(db_url: str) -> None:
    before = _table(db_url)
    code, _, err = run_cli("--db", db_url, "log-test", "--count", "2", "--seed", "4")
    assert code == 0, err
    status = spool_status(db_url)
    assert (status.rows, status.live_rows, status.dead_lettered) == (0, 0, 0)
    assert replay_spool(db_url).replayed == 0
    assert _table(db_url) == before


def test_log_test_keep_keeps_the_synthetic_rows(db_url: str) -> None:
    _plant_user_predictions(db_url)
    before = _table(db_url)
    code, out, err = run_cli("--db", db_url, "log-test", "--count", "2", "--keep")
    assert code == 0, err
    assert "Kept the 6 test predictions" in out
    after = _table(db_url)
    assert after[: len(before)] == before
    assert len(after) == len(before) + 6
    assert {row["model_version"] for row in _rows(db_url)} == {"prod-v3", "log-test"}


@pytest.mark.parametrize(
    ("option", "value"),
    [("--count", "99999999999999999999"), ("--count", "100001"), ("--candles", "100001")],
)
def test_log_test_rejects_out_of_range_sizes(empty_db_url: str, option: str, value: str) -> None:
    code, out, err = run_cli("--db", empty_db_url, "log-test", option, value)
    assert code == 2
    assert err.strip() == f"Error: {option} must be at most 100,000, got {value}"
    assert "Traceback" not in out + err


def test_log_test_on_an_empty_database_exits_0(empty_db_url: str) -> None:
    code, out, err = run_cli(
        "--db", empty_db_url, "log-test", "--symbols", "BTCUSDT,ETHUSDT", "--count", "4",
        "--seed", "5", "--keep",
    )  # fmt: skip
    assert code == 0, err
    assert "Logged 8, read back 8" in out
    rows = _rows(empty_db_url)
    assert len(rows) == 8
    assert {row["symbol"] for row in rows} == {"BTCUSDT", "ETHUSDT"}
    assert {row["model_version"] for row in rows} == {"log-test"}
    assert all(row["close_price"] is not None and row["rsi"] is not None for row in rows)
    assert all(row["features_count"] == 240 and row["lookback_periods"] == 60 for row in rows)


def test_log_test_rejects_bad_options(empty_db_url: str) -> None:
    code, _, err = run_cli("--db", empty_db_url, "log-test", "--symbols", " , ")
    assert code == 2
    assert "symbol" in err
    code, _, err = run_cli("--db", empty_db_url, "log-test", "--count", "0")
    assert code == 2


def test_module_level_logger_is_flushed_at_exit(db_url: str) -> None:
    """The original call site, unchanged, in a process that exits without closing."""
    script = textwrap.dedent(
        """
        import asyncio
        import numpy as np
        from mlpred_cli import ml_prediction_logger

        async def main():
            for i in range(25):
                await ml_prediction_logger.log_prediction(
                    symbol="BTCUSDT", features=np.full(240, float(i)),
                    model_outputs=np.linspace(-1, 1, 20), predictions=None, market_data=None,
                )

        asyncio.run(main())
        """
    )
    env = {
        **os.environ,
        "MLPRED_DATABASE_URL": db_url,
        "MLPRED_MODEL_VERSION": "atexit-v1",
        "LOG_LEVEL": "WARNING",
    }
    # batch_size is 10: the last 5 rows never fill a batch, and the process exits well within
    # the 1 s flush interval, so only the atexit hook can save them.
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    rows = _rows(db_url)
    assert len(rows) == 25
    assert {row["model_version"] for row in rows} == {"atexit-v1"}
