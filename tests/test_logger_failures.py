"""The writer under failure: killed connections, an unreachable or blocked database, the
journal and its replay, in journal mode and memory-only mode."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from mlpred_cli import MLPredictionLogger
from mlpred_cli.capture.spool_replay import replay_spool, spool_status
from mlpred_cli.store.database import SQLITE_BEGIN_OPTION, create_engine
from mlpred_cli.store.migrations import upgrade_to_head
from mlpred_cli.store.prediction_writes import write_rows
from mlpred_cli.store.tables import predictions_table
from tests.cli_helpers import run_cli
from tests.factories import written_rows

RAW = np.linspace(-1, 1, 20)


def _stored_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [str(pid) for pid in conn.scalars(sa.select(predictions_table.c.prediction_id))]


@pytest.mark.postgres_only
def test_connection_killed_mid_stream_every_row_lands_once(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    database = make_url(db_url).database
    stop = threading.Event()
    kills = 0

    def killer() -> None:
        nonlocal kills
        admin = create_engine(db_url)
        while not stop.is_set():
            with admin.connect() as conn:
                killed = conn.exec_driver_sql(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %(db)s AND application_name = 'mlpred' "
                    "AND pid <> pg_backend_pid()",
                    {"db": database},
                ).scalar_one()
                conn.commit()
            kills += int(killed)
            time.sleep(0.05)
        admin.dispose()

    ids: list[str] = []
    with MLPredictionLogger(
        db_url, batch_size=50, flush_interval_s=0.02, spool_dir=tmp_path / "spool"
    ) as logger:
        thread = threading.Thread(target=killer)
        thread.start()
        for i in range(3000):
            ids.append(
                logger.log_prediction_sync(
                    symbol="BTCUSDT", features=np.full(240, i), model_outputs=RAW
                )
            )
            if i % 100 == 0:
                time.sleep(0.01)
        time.sleep(0.3)
        stop.set()
        thread.join()
        assert logger.flush_sync(timeout=120)
        stats = logger.stats()
    stored = _stored_ids(engine)
    assert kills > 0
    assert len(stored) == len(set(stored)) == 3000
    assert set(stored) == set(ids)
    assert stats["saved"] >= 3000
    assert stats["lost"] == 0


def _unavailable_url(backend: str, db_url: str, tmp_path: Path) -> tuple[str, Callable[[], None]]:
    """A URL that cannot be opened now, and a function that makes it a migrated database."""
    if backend == "sqlite":
        path = tmp_path / "later.db"
        path.mkdir()  # a directory where the file should be: SQLite cannot open it

        def make_available() -> None:
            shutil.rmtree(path)
            upgrade_to_head(create_engine(f"sqlite:///{path}"))

        return f"sqlite:///{path}", make_available
    url = make_url(db_url)
    later = f"{url.database}_later"
    admin = url.set(database="postgres")

    def make_available_pg() -> None:
        engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{later}" TEMPLATE "{url.database}"')
        engine.dispose()

    return url.set(database=later).render_as_string(hide_password=False), make_available_pg


def _drop_later(backend: str, db_url: str) -> None:
    if backend == "postgresql":
        url = make_url(db_url)
        engine = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}_later" WITH (FORCE)')
        engine.dispose()


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "memory"])
@pytest.mark.parametrize("replay_by", ["logger", "cli"])
def test_unreachable_database_keeps_rows_on_disk_then_replays_every_row_once(
    backend: str, db_url: str, tmp_path: Path, replay_by: str, journal: bool
) -> None:
    url, make_available = _unavailable_url(backend, db_url, tmp_path)
    spool_dir = tmp_path / "spool"
    try:
        logger = MLPredictionLogger(
            url, batch_size=10, flush_interval_s=0.02, max_pending=20, spool_dir=spool_dir,
            journal=journal,
        )  # fmt: skip
        ids = [
            logger.log_prediction_sync(
                symbol="BTCUSDT", features=np.full(240, i), model_outputs=RAW
            )
            for i in range(120)
        ]
        report = logger.close_sync(timeout=2)
        stats = logger.stats()
        assert stats["saved"] == 0
        assert stats["journaled"] == (120 if journal else 0)
        assert (report.saved, report.on_disk, report.lost) == (0, 120, 0)
        status = spool_status(url, spool_dir)
        assert status.rows == 120
        assert status.live_rows == 0

        make_available()
        if replay_by == "logger":
            with MLPredictionLogger(url, flush_interval_s=0.02, spool_dir=spool_dir) as second:
                deadline = time.monotonic() + 30
                while second.stats()["replayed"] < 120 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert second.stats()["replayed"] == 120
        else:
            code, out, err = run_cli(
                "--db", url, "spool", "replay", "--spool-dir", str(spool_dir), "--format", "json"
            )
            assert code == 0, err
            assert '"replayed": 120' in out
            # replaying again writes nothing new
            assert replay_spool(url, spool_dir).replayed == 0
        assert spool_status(url, spool_dir).rows == 0
        assert not list(spool_dir.glob("journal-*.seg"))
        engine = create_engine(url)
        stored = _stored_ids(engine)
        engine.dispose()
        assert len(stored) == 120
        assert set(stored) == set(ids)
    finally:
        _drop_later(backend, db_url)


def test_replayed_batch_never_duplicates(db_url: str, engine: Engine, tmp_path: Path) -> None:
    """The same rows written twice (a batch whose commit was not acknowledged) stay once."""
    rows = written_rows(5)
    write_rows(engine, rows[:3])
    write_rows(engine, rows)
    stored = _stored_ids(engine)
    assert len(stored) == 5
    assert set(stored) == {str(row[0]) for row in rows}


def _hold_write_lock(backend: str, db_url: str) -> tuple[Engine, sa.Connection]:
    """Block every writer of ml_predictions until the returned connection is closed."""
    engine = create_engine(db_url)
    conn = engine.connect()
    if backend == "sqlite":
        conn = conn.execution_options(**{SQLITE_BEGIN_OPTION: "EXCLUSIVE"})
        conn.begin()
    else:
        conn.begin()
        conn.exec_driver_sql("LOCK TABLE ml_predictions IN ACCESS EXCLUSIVE MODE")
    return engine, conn


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "memory"])
def test_blocked_database_keeps_memory_bounded_and_every_row_on_disk(
    backend: str, db_url: str, tmp_path: Path, journal: bool
) -> None:
    spool_dir = tmp_path / "spool"
    lock_engine, lock = _hold_write_lock(backend, db_url)
    try:
        logger = MLPredictionLogger(
            db_url, batch_size=10, flush_interval_s=0.02, max_pending=50, spool_dir=spool_dir,
            journal=journal,
        )  # fmt: skip

        def log(start: int, stop: int) -> list[str]:
            return [
                logger.log_prediction_sync(
                    symbol="BTCUSDT", features=np.full(240, i), model_outputs=RAW
                )
                for i in range(start, stop)
            ]

        ids = log(0, 10)
        time.sleep(0.5)  # the writer takes these 10 and blocks on the lock
        ids += log(10, 400)
        if journal:  # on disk the moment each call returned
            assert spool_status(db_url, spool_dir).live_rows == 400
        deadline = time.monotonic() + 10
        while logger.stats()["evicted"] < 340 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Memory bounded while still blocked: the stuck batch and <= max_pending queued.
        stats = logger.stats()
        assert isinstance(stats["evicted"], int) and stats["evicted"] >= 340
        assert isinstance(stats["pending"], int) and stats["pending"] <= 10 + 50
        assert spool_status(db_url, spool_dir).live_rows >= 340
        report = logger.close_sync(timeout=0.5)  # the writer is still blocked
        assert report.lost == 0
        assert spool_status(db_url, spool_dir).rows >= 390
    finally:
        lock.rollback()
        lock.close()
        lock_engine.dispose()
    time.sleep(0.5)  # the blocked write may commit now that the lock is gone
    replay_spool(db_url, spool_dir)
    engine = create_engine(db_url)
    stored = _stored_ids(engine)
    engine.dispose()
    assert len(stored) == 400
    assert set(stored) == set(ids)


def test_unreadable_spool_file_is_quarantined_and_the_rest_replayed(
    db_url: str, tmp_path: Path
) -> None:
    from mlpred_cli.capture.spool import Spool

    spool_dir = tmp_path / "spool"
    rows = written_rows(3)
    spool = Spool(spool_dir)
    spool.append(rows[:1])
    (spool_dir / "spool-0-corrupt.jsonl").write_text('{"prediction_id": "not json\n')
    spool.append(rows[1:])
    result = replay_spool(db_url, spool_dir)
    assert result.replayed == 3
    assert (spool_dir / "quarantine-spool-0-corrupt.jsonl").exists()
    assert spool_status(db_url, spool_dir).rows == 0
    engine = create_engine(db_url)
    assert set(_stored_ids(engine)) == {str(row[0]) for row in rows}
    engine.dispose()


def test_ancient_datetimes_round_trip(engine: Engine) -> None:
    ancient = datetime(512, 4, 26, 8, 15, tzinfo=UTC)
    write_rows(engine, written_rows(1, ancient, symbol="OLD"))
    with engine.connect() as conn:
        stored = conn.scalar(sa.select(predictions_table.c.datetime))
    assert stored == ancient


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "memory"])
def test_flush_is_not_fooled_by_newer_rows_evicted_while_older_ones_wait(
    backend: str, db_url: str, tmp_path: Path, journal: bool
) -> None:
    """flush() waits for the oldest rows, not for a count that newer evicted rows can fill."""
    url, make_available = _unavailable_url(backend, db_url, tmp_path)
    spool_dir = tmp_path / "spool"
    try:
        logger = MLPredictionLogger(
            url, batch_size=10, flush_interval_s=0.02, max_pending=20, spool_after_s=60,
            spool_dir=spool_dir, journal=journal,
        )  # fmt: skip
        first = [
            logger.log_prediction_sync(
                symbol="BTCUSDT", features=np.full(240, i), model_outputs=RAW
            )
            for i in range(10)
        ]
        time.sleep(0.3)  # the writer holds these 10 in memory, retrying
        for i in range(10, 210):
            logger.log_prediction_sync(
                symbol="BTCUSDT", features=np.full(240, i), model_outputs=RAW
            )
        deadline = time.monotonic() + 10
        while logger.stats()["evicted"] < 150 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert logger.stats()["evicted"] >= 150  # newer rows left memory meanwhile
        assert logger.flush_sync(timeout=1.0) is False  # ... but the first 10 are not written
        report = logger.close_sync(timeout=0.5)
        assert (report.on_disk, report.lost) == (210, 0)
        assert spool_status(url, spool_dir).rows == 210
        make_available()
        replay_spool(url, spool_dir)
        engine = create_engine(url)
        stored = set(_stored_ids(engine))
        engine.dispose()
        assert set(first) <= stored
        assert len(stored) == 210
    finally:
        _drop_later(backend, db_url)


def test_rows_the_journal_refuses_are_written_later_without_false_duplicates(
    backend: str, db_url: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.write_text("not a directory")  # the journal cannot be written
    lock_engine, lock = _hold_write_lock(backend, db_url)
    try:
        logger = MLPredictionLogger(
            db_url, batch_size=10, flush_interval_s=0.02, max_pending=20, spool_dir=spool_dir,
            on_duplicate="skip",
        )  # fmt: skip
        ids = [
            logger.log_prediction_sync(
                symbol="BTCUSDT", features=np.full(240, i), model_outputs=RAW
            )
            for i in range(100)
        ]
        time.sleep(1.5)  # nothing can be evicted: every row is in memory only
        assert logger.stats()["pending"] == 100
    finally:
        lock.rollback()
        lock.close()
        lock_engine.dispose()
    spool_dir.unlink()
    assert logger.flush_sync(timeout=60)
    stats = logger.stats()
    logger.close_sync()
    engine = create_engine(db_url)
    with engine.connect() as conn:
        flagged = conn.scalar(
            sa.select(sa.func.count()).where(predictions_table.c.is_duplicate.is_(True))
        )
    stored = _stored_ids(engine)
    engine.dispose()
    assert sorted(stored) == sorted(ids)
    assert flagged == 0
    assert stats["journal_errors"] == 100
    assert stats["duplicates"] == 0
    assert stats["lost"] == 0
