"""``backfill-actuals`` after killed and failed runs and late inserts: plain runs (no ``since``)
find every pending row again, whatever order the rows' times arrived in, and
``outside_window`` counts only the rows no plain run will look at again."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlpred_cli.errors import MlpredError
from mlpred_cli.outcomes.backfill import BackfillReport, backfill_actuals
from mlpred_cli.store.database import create_engine
from mlpred_cli.store.tables import backfill_progress_table, predictions_table
from tests.factories import candle_row, insert_candles, insert_predictions, prediction_row

#: The newest prediction time of these tests: two days ago on the hour, so every horizon is due.
T = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
M15, H1, H4, H12 = (timedelta(minutes=15), timedelta(hours=1), timedelta(hours=4),
                    timedelta(hours=12))  # fmt: skip
HORIZON_OFFSETS = (M15, H1, H4, H12)

#: 240 predictions two hours apart: 20 days, far more than the 2-day retry window.
ROWS = 240
STEP = timedelta(hours=2)
#: Rows whose 15m candle never arrives (old enough to lie before the retry window).
GAPS = frozenset({7, 40, 101})

CHILD = """
import sys, time
from mlpred_cli.outcomes.backfill import backfill_actuals

def progress(done, total):
    print(done, flush=True)
    time.sleep(0.2)  # the parent kills the run here, between two committed chunks

backfill_actuals(sys.argv[1], chunk_rows=int(sys.argv[2]), progress=progress)
print("finished", flush=True)
"""


def _time(index: int) -> datetime:
    return T - STEP * (ROWS - 1 - index)


def _close(moment: datetime) -> float:
    return 100.0 + (int(moment.timestamp()) // 900 % 40) * 0.25


def _history(engine: Engine, *, seed: int, middle: list[dict[str, Any]] | None = None) -> None:
    """ROWS predictions inserted in random time order (``middle`` inserted half way), and every
    candle they need but the 15m exits of GAPS."""
    order = list(range(ROWS))
    random.Random(seed).shuffle(order)
    rows = [prediction_row("BTCUSDT", _time(i), close_price=100.0) for i in order]
    insert_predictions(engine, rows[: ROWS // 2])
    insert_predictions(engine, middle or [])
    insert_predictions(engine, rows[ROWS // 2 :])
    missing = {_time(i) + M15 for i in GAPS}
    moments = {_time(i) + offset for i in range(ROWS) for offset in HORIZON_OFFSETS}
    insert_candles(
        engine,
        [candle_row("BTCUSDT", m, _close(m)) for m in sorted(moments - missing)],
    )


def _rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        query = sa.select(predictions_table).order_by(predictions_table.c.datetime)
        return [dict(row) for row in conn.execute(query).mappings()]


def _examined(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(backfill_progress_table)).mappings()
        return {row["symbol"]: row["examined_id"] for row in rows}


def _assert_every_fillable_row_filled(engine: Engine) -> None:
    rows = _rows(engine)
    assert len(rows) == ROWS
    for index, row in enumerate(rows):
        expected = {"15m": None} if index in GAPS else {}
        for horizon, offset in zip(("15m", "1h", "4h", "12h"), HORIZON_OFFSETS, strict=True):
            want = expected.get(horizon, pytest.approx(_close(row["datetime"] + offset) / 100 - 1))
            assert row[f"actual_return_{horizon}"] == want, (index, horizon)
        assert (row["actuals_filled_at"] is None) == (index in GAPS)


def _plain_run(engine: Engine, **options: Any) -> BackfillReport:
    """A plain run; waits (briefly) for the lock a killed run's connection held to go."""
    deadline = time.monotonic() + 10
    while True:
        report = backfill_actuals(engine, **options)
        if report.status != "locked" or time.monotonic() > deadline:
            return report
        time.sleep(0.1)


def _pending_count(engine: Engine) -> int:
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).where(predictions_table.c.actuals_filled_at.is_(None))
        return int(conn.execute(query).scalar_one())


def test_a_run_killed_mid_way_leaves_nothing_plain_runs_do_not_fill(
    db_url: str, engine: Engine
) -> None:
    _history(engine, seed=2)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, db_url, "20"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert child.stdout is not None
    done = [child.stdout.readline().strip() for _ in range(3)]
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert done == ["20", "40", "60"]
    assert child.returncode == -signal.SIGKILL
    assert ROWS - 60 <= _pending_count(engine) < ROWS
    # the killed run had completed rows of every age, the newest among them
    assert any(row["actuals_filled_at"] is not None and row["datetime"] >= T - H12
               for row in _rows(engine))  # fmt: skip

    report = _plain_run(engine)

    assert report.status == "ok"
    _assert_every_fillable_row_filled(engine)
    # the three gaps were looked at and lie before the window: only they are outside it
    assert report.outside_window == len(GAPS)
    second = _plain_run(engine)
    assert (second.rows_updated, second.outside_window) == (0, len(GAPS))
    assert second.candidates == 0  # the gaps are not looked at again


def test_a_run_failing_in_a_chunk_keeps_what_it_committed_and_nothing_else(
    engine: Engine,
) -> None:
    # the database refuses the outcome of one row, inserted half way through the history
    stopper = prediction_row("BTCUSDT", T - timedelta(days=9, minutes=45), close_price=100.0,
                             model_version="stop")  # fmt: skip
    _history(engine, seed=2, middle=[stopper])
    insert_candles(engine, [candle_row("BTCUSDT", stopper["datetime"] + M15, 101.0)])
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "ALTER TABLE ml_predictions ADD CONSTRAINT stop_backfill "
                "CHECK (NOT (model_version = 'stop' AND actual_return_15m IS NOT NULL))"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER stop_backfill BEFORE UPDATE ON ml_predictions "
                "WHEN NEW.model_version = 'stop' AND NEW.actual_return_15m IS NOT NULL "
                "BEGIN SELECT RAISE(ABORT, 'stop'); END"
            )

    with pytest.raises(MlpredError):
        backfill_actuals(engine, chunk_rows=25)
    pending = _pending_count(engine)
    assert ROWS // 2 < pending < ROWS  # the chunks before the stopper's were committed
    assert any(row["actuals_filled_at"] is not None and row["datetime"] >= T - H12
               for row in _rows(engine))  # fmt: skip

    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE ml_predictions DROP CONSTRAINT stop_backfill")
        else:
            conn.exec_driver_sql("DROP TRIGGER stop_backfill")
        conn.execute(
            sa.delete(predictions_table).where(predictions_table.c.model_version == "stop")
        )
    report = backfill_actuals(engine)

    _assert_every_fillable_row_filled(engine)
    assert report.outside_window == len(GAPS)


def test_rows_replayed_with_old_times_days_later_are_filled_without_since(
    engine: Engine,
) -> None:
    recent = [prediction_row("BTCUSDT", T - STEP * i, close_price=100.0) for i in range(12)]
    insert_predictions(engine, recent)
    moments = {T - STEP * i + offset for i in range(60) for offset in HORIZON_OFFSETS}
    insert_candles(engine, [candle_row("BTCUSDT", m, _close(m)) for m in sorted(moments)])
    first = backfill_actuals(engine)
    assert first.rows_updated == 12
    assert backfill_actuals(engine).candidates == 0

    # days later a journal is replayed: predictions made 3 to 5 days before the newest one
    replayed = [prediction_row("BTCUSDT", T - STEP * i, close_price=100.0) for i in range(36, 60)]
    insert_predictions(engine, replayed)
    dry = backfill_actuals(engine, dry_run=True)
    assert dry.outside_window == 0  # they lie before the window, but will be looked at
    assert dry.candidates == 24

    report = backfill_actuals(engine)

    assert report.rows_updated == 24
    assert report.outside_window == 0
    assert all(row["actuals_filled_at"] is not None for row in _rows(engine))
    again = backfill_actuals(engine)
    assert (again.candidates, again.rows_updated, again.outside_window) == (0, 0, 0)


def test_outside_window_counts_only_rows_no_plain_run_will_look_at_again(engine: Engine) -> None:
    _history(engine, seed=4)
    # a run of one horizon records nothing as looked at, yet completes no row either
    backfill_actuals(engine, horizons=["15m"])
    assert _examined(engine) == {}
    limited = backfill_actuals(engine, limit=100)
    assert limited.rows_updated == 100
    # the 140 rows the limited run did not reach lie mostly before the window, but are not
    # outside it: the next plain run looks at them; the gaps it did reach are
    reached = GAPS & _reached_first(engine, 100)
    assert 0 < len(reached) < len(GAPS)
    assert backfill_actuals(engine, dry_run=True).outside_window == len(reached)

    report = backfill_actuals(engine)

    _assert_every_fillable_row_filled(engine)
    assert report.outside_window == len(GAPS)
    # a run with since reaching back fills the gap once its candle arrives
    insert_candles(engine, [candle_row("BTCUSDT", _time(7) + M15, 120.0)])
    assert backfill_actuals(engine).rows_updated == 0
    refill = backfill_actuals(engine, since=_time(7))
    assert (refill.rows_updated, refill.outside_window) == (1, 0)
    assert backfill_actuals(engine).outside_window == len(GAPS) - 1


def _reached_first(engine: Engine, count: int) -> set[int]:
    """Indexes (in time order) of the ``count`` rows with the lowest ids."""
    rows = _rows(engine)
    by_id = sorted(range(len(rows)), key=lambda index: rows[index]["id"])
    return set(by_id[:count])


def test_a_row_not_yet_due_when_looked_at_is_found_again_once_due(engine: Engine) -> None:
    day = datetime(2026, 3, 2, tzinfo=UTC)
    # logged without market data at 10:29: reference time 10:00; with it at 10:15: 10:15
    early_reference = prediction_row("BTCUSDT", day + timedelta(hours=10, minutes=29),
                                     close_price=None)  # fmt: skip
    later_reference = prediction_row("BTCUSDT", day + timedelta(hours=10, minutes=15),
                                     close_price=100.0)  # fmt: skip
    insert_predictions(engine, [early_reference, later_reference])
    moments = [day + timedelta(hours=10) + offset for offset in (timedelta(0), *HORIZON_OFFSETS)]
    moments += [day + timedelta(hours=10, minutes=15) + offset for offset in HORIZON_OFFSETS]
    insert_candles(engine, [candle_row("BTCUSDT", m, 101.0) for m in moments])

    # 22:20: the 10:00 row is complete; the 10:15 row's 12h candle (22:15) has not closed
    first = backfill_actuals(
        engine, retry_window=timedelta(0), now=day + timedelta(hours=22, minutes=20)
    )
    assert [c.pending for c in first.horizons] == [0, 0, 0, 1]
    # its symbol's window now starts at 10:29, after the row that is still pending
    second = backfill_actuals(engine, retry_window=timedelta(0), now=day + timedelta(days=1))

    assert second.scanned_since == day + timedelta(hours=10, minutes=29)
    assert [c.filled for c in second.horizons] == [0, 0, 0, 1]
    assert second.outside_window == 0
    assert all(row["actuals_filled_at"] is not None for row in _rows(engine))


def test_the_first_plain_run_looks_at_every_row_once(engine: Engine) -> None:
    # rows only runs with since have touched (or rows an earlier version left outside its
    # windows): nothing is recorded as looked at, so the next plain run looks at every row
    old = T - timedelta(days=9)
    insert_predictions(engine, [prediction_row("BTCUSDT", old, close_price=100.0),
                                prediction_row("BTCUSDT", T, close_price=100.0)])  # fmt: skip
    insert_candles(engine, [candle_row("BTCUSDT", m + o, 101.0) for m in (old, T)
                            for o in HORIZON_OFFSETS])  # fmt: skip
    backfill_actuals(engine, since=T)
    assert _examined(engine) == {}

    report = backfill_actuals(engine)

    assert report.rows_updated == 1
    assert all(row["actuals_filled_at"] is not None for row in _rows(engine))
    assert _examined(engine) == {"BTCUSDT": max(row["id"] for row in _rows(engine))}


@pytest.mark.postgres_only
def test_a_row_still_being_inserted_when_a_run_starts_is_filled_by_the_next(
    engine: Engine, db_url: str
) -> None:
    insert_predictions(engine, [prediction_row("BTCUSDT", T, close_price=100.0)])
    old = T - timedelta(days=10)
    insert_candles(engine, [candle_row("BTCUSDT", m + o, 101.0) for m in (old, T - H1, T)
                            for o in HORIZON_OFFSETS])  # fmt: skip
    backfill_actuals(engine)
    writer = create_engine(db_url)
    try:
        with writer.connect() as slow:
            # one writer takes an id and has not committed when a faster one commits a higher id
            slow.execute(
                predictions_table.insert(), [prediction_row("BTCUSDT", old, close_price=100.0)]
            )
            insert_predictions(engine, [prediction_row("BTCUSDT", T - H1, close_price=100.0)])
            during = backfill_actuals(engine)
            slow.commit()
    finally:
        writer.dispose()
    assert during.rows_updated == 1  # the committed row

    after = backfill_actuals(engine)

    assert after.rows_updated == 1  # the row committed late, 10 days before the window
    assert all(row["actuals_filled_at"] is not None for row in _rows(engine))
