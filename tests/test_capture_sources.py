"""The capture layer takes any DatabaseSource: a URL string or URL, a Path, an Engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from mlpred_cli.capture.logger import MLPredictionLogger
from mlpred_cli.capture.self_check import run_log_test
from mlpred_cli.capture.spool import Spool
from mlpred_cli.capture.spool_replay import replay_spool, spool_for, spool_status
from mlpred_cli.errors import LoggerClosed, MlpredError
from mlpred_cli.store.database import mask_url
from mlpred_cli.store.prediction_row import Row
from mlpred_cli.store.tables import predictions_table
from tests.factories import written_rows

RAW = np.linspace(-1, 1, 20)


def _stored_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {str(pid) for pid in conn.scalars(sa.select(predictions_table.c.prediction_id))}


def _rows(count: int) -> list[Row]:
    return written_rows(count)


def _watch_dispose(engine: Engine) -> list[Engine]:
    disposed: list[Engine] = []
    event.listen(engine, "engine_disposed", disposed.append)
    return disposed


def _log_some(logger: MLPredictionLogger, count: int) -> list[str]:
    ids = [
        logger.log_prediction_sync(symbol="BTCUSDT", features=np.full(240, i), model_outputs=RAW)
        for i in range(count)
    ]
    assert logger.flush_sync(timeout=60)
    return ids


def test_logger_on_an_engine_never_disposes_it(engine: Engine, tmp_path: Path) -> None:
    disposed = _watch_dispose(engine)
    with MLPredictionLogger(engine, flush_interval_s=0.02, spool_dir=tmp_path / "spool") as logger:
        ids = _log_some(logger, 25)
        assert logger.database_url == mask_url(engine.url)
    assert disposed == []
    assert _stored_ids(engine) == set(ids)  # still usable by its owner


def test_logger_on_an_engine_made_elsewhere(db_url: str, tmp_path: Path) -> None:
    """A plain SQLAlchemy engine (no mlpred hooks): the writer builds its own on the URL."""
    url = make_url(db_url)
    plain = "postgresql+psycopg" if url.get_backend_name() == "postgresql" else "sqlite"
    foreign = sa.create_engine(url.set(drivername=plain))
    disposed = _watch_dispose(foreign)
    try:
        with MLPredictionLogger(foreign, flush_interval_s=0.02, spool_dir=tmp_path / "s") as lg:
            ids = _log_some(lg, 10)
        assert disposed == []
        assert _stored_ids(foreign) == set(ids)
        assert spool_for(foreign).directory == spool_for(db_url).directory
    finally:
        foreign.dispose()


@pytest.mark.sqlite_only
def test_logger_on_a_path_and_a_url_object(db_url: str, engine: Engine, tmp_path: Path) -> None:
    path = Path(make_url(db_url).database or "")
    ids: list[str] = []
    for source in (path, make_url(db_url)):
        with MLPredictionLogger(source, flush_interval_s=0.02, spool_dir=tmp_path / "s") as lg:
            ids += _log_some(lg, 5)
    assert _stored_ids(engine) == set(ids)
    assert spool_for(path).directory == spool_for(db_url).directory


def test_spool_status_and_replay_on_an_engine(engine: Engine, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    rows = _rows(7)
    Spool(spool_dir).append(rows)
    disposed = _watch_dispose(engine)
    assert spool_status(engine, spool_dir).rows == 7
    result = replay_spool(engine, spool_dir)
    assert (result.replayed, result.dead_lettered, result.remaining.rows) == (7, 0, 0)
    assert disposed == []
    assert _stored_ids(engine) == {str(row[0]) for row in rows}
    # the default spool directory is the one a logger on the same database uses
    assert spool_for(engine).directory == spool_for(engine.url).directory


@pytest.mark.sqlite_only
def test_spool_status_and_replay_on_a_path(db_url: str, engine: Engine, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    path = Path(make_url(db_url).database or "")
    rows = _rows(4)
    Spool(spool_dir).append(rows)
    assert spool_status(path, spool_dir).rows == 4
    assert replay_spool(path, spool_dir).replayed == 4
    assert _stored_ids(engine) == {str(row[0]) for row in rows}


def test_run_log_test_on_an_engine(engine: Engine) -> None:
    disposed = _watch_dispose(engine)
    result = run_log_test(engine, symbols=["BTCUSDT"], count=3, candles=60, seed=1)
    assert result.complete
    assert result.logged == 3
    assert result.database == mask_url(engine.url)
    assert disposed == []


@pytest.mark.sqlite_only
def test_run_log_test_on_a_path_migrates_an_empty_database(tmp_path: Path) -> None:
    result = run_log_test(tmp_path / "fresh.db", symbols=["ETHUSDT"], count=2, candles=60, seed=2)
    assert result.complete
    assert result.logged == 2


def test_a_closed_logger_raises_logger_closed(db_url: str, tmp_path: Path) -> None:
    logger = MLPredictionLogger(db_url, spool_dir=tmp_path / "spool")
    logger.close_sync()
    with pytest.raises(LoggerClosed, match="closed") as raised:
        logger.log_prediction_sync(symbol="BTCUSDT", features=np.ones(3), model_outputs=RAW)
    assert isinstance(raised.value, MlpredError)
    with pytest.raises(LoggerClosed):
        logger.log_feature_importance(["a"], [1.0])
