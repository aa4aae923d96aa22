"""`mlpred log-test` end to end, and the module-level logger flushed by its atexit hook."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import sqlalchemy as sa

from mlpred_cli.store.database import create_engine
from mlpred_cli.store.tables import predictions_table
from tests.cli_helpers import run_cli


def _rows(url: str) -> list[dict[str, object]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(sa.select(predictions_table)).mappings()]
    engine.dispose()
    return rows


def test_log_test_on_an_empty_database_exits_0(empty_db_url: str) -> None:
    code, out, err = run_cli(
        "--db", empty_db_url, "log-test", "--symbols", "BTCUSDT,ETHUSDT", "--count", "4",
        "--seed", "5",
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
