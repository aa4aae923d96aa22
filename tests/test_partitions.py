"""Partitioned storage: ml_predictions as one PostgreSQL partition per UTC day.

Conversion keeps every row and id, rows for days with and without a partition land, upkeep
moves rows out of the default partition, writes stay idempotent, the seed queries run
verbatim, and the CLI (init-db --partitioned, partitions ensure/list) behaves on both
backends.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from mlpred_cli.capture.logger import MLPredictionLogger
from mlpred_cli.cli.partition_commands import DAYS_AHEAD_DEFAULT
from mlpred_cli.config import PARTITION_DAYS_AHEAD
from mlpred_cli.errors import InputError
from mlpred_cli.history.partitioning import (
    ensure_partitions_for,
    partition_database,
    partitions_of,
    set_up_database,
)
from mlpred_cli.outcomes.backfill import backfill_actuals
from mlpred_cli.store.database import create_engine
from mlpred_cli.store.partitions import (
    DEFAULT_PARTITION,
    day_partitions,
    ensure_partitions,
    is_partitioned,
    keep_partitions,
    partition_name,
)
from mlpred_cli.store.prediction_writes import write_isolating, write_rows
from mlpred_cli.store.tables import predictions_table
from tests.cli_helpers import run_cli
from tests.factories import insert_predictions, prediction_row, written_rows

NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date()
OUTCOME_WORDS = ("actual", "accuracy", "return_error", "actuals_filled_at")


def _midday(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def _where(engine: Engine) -> dict[int, str]:
    """Each row's id -> the partition (table) holding it."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, tableoid::regclass::text FROM ml_predictions")
        return {int(row[0]): str(row[1]) for row in rows}


def _count(engine: Engine, table: str = "ml_predictions") -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


# ------------------------------------------------------------ conversion


@pytest.mark.postgres_only
def test_conversion_keeps_rows_ids_and_indexes_and_ids_continue(engine: Engine) -> None:
    days = [TODAY - timedelta(days=40), TODAY - timedelta(days=3), TODAY]
    insert_predictions(engine, [prediction_row(moment=_midday(day)) for day in days for _ in "ab"])
    before = _where(engine)

    report = partition_database(engine, days_ahead=2, now=NOW)

    assert report.converted and report.partitioned
    assert report.rows_converted == len(before) == 6
    after = _where(engine)
    assert set(after) == set(before)  # every id kept
    by_day = {day: partition_name(day) for day in days}
    with engine.connect() as conn:
        assert is_partitioned(conn)
        placed = conn.exec_driver_sql(
            "SELECT id, (datetime AT TIME ZONE 'UTC')::date FROM ml_predictions"
        ).all()
        listed = [partition.day for partition in day_partitions(conn)]
        indexes: dict[str, str] = dict(
            conn.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'ml_predictions'"
            ).all()
        )
        fillfactors = {
            str(name): options
            for name, options in conn.exec_driver_sql(
                "SELECT relname, reloptions FROM pg_class WHERE relname LIKE 'ml_predictions_%%' "
                "AND relkind = 'r'"
            ).all()
        }
    assert all(after[row_id] == by_day[day] for row_id, day in placed)
    # Days of the rows, and yesterday to two days ahead.
    wanted = {TODAY + timedelta(days=offset) for offset in range(-1, 3)}
    assert listed == sorted(set(days) | wanted)
    assert set(indexes) == {index.name for index in predictions_table.indexes} | {
        "pk_ml_predictions",
        "uq_ml_predictions_prediction_id",
    }
    assert "(id, datetime)" in indexes["pk_ml_predictions"]
    assert "(prediction_id, datetime)" in indexes["uq_ml_predictions_prediction_id"]
    assert not [d for d in indexes.values() if any(word in d for word in OUTCOME_WORDS)]
    assert DEFAULT_PARTITION in fillfactors
    assert all(options == ["fillfactor=80"] for options in fillfactors.values()), fillfactors

    # The id sequence survived the conversion and continues after the highest id.
    insert_predictions(engine, [prediction_row(moment=NOW)])
    newest = max(_where(engine))
    assert newest > max(before)

    again = partition_database(engine, days_ahead=2, now=NOW)  # idempotent
    assert not again.converted and again.created == ()
    assert _count(engine) == 7


@pytest.mark.postgres_only
def test_rows_land_with_or_without_their_day_and_ensure_moves_them(engine: Engine) -> None:
    partition_database(engine, days_ahead=1, now=NOW)
    stranded_day = TODAY - timedelta(days=400)
    future_day = TODAY + timedelta(days=30)
    rows = [
        *written_rows(2, _midday(TODAY)),
        *written_rows(3, _midday(stranded_day)),
        *written_rows(1, _midday(future_day)),
    ]
    assert write_rows(engine, rows) == 6
    placed = _where(engine)
    assert sorted(placed.values()).count(DEFAULT_PARTITION) == 4
    assert sorted(placed.values()).count(partition_name(TODAY)) == 2

    report = ensure_partitions(engine, days_ahead=1, now=NOW)

    assert report.moved_rows == 4
    assert report.created == (stranded_day, future_day)
    assert _count(engine, DEFAULT_PARTITION) == 0
    moved = _where(engine)
    assert set(moved) == set(placed)  # same ids, nothing lost or doubled
    assert sorted(moved.values()).count(partition_name(stranded_day)) == 3
    assert sorted(moved.values()).count(partition_name(future_day)) == 1
    listing = {info.name: info for info in partitions_of(engine)}
    assert listing[partition_name(stranded_day)].estimated_rows == 3
    assert listing[DEFAULT_PARTITION].is_default

    quiet = ensure_partitions(engine, days_ahead=1, now=NOW)
    assert (quiet.created, quiet.moved_rows) == ((), 0)
    # A new partition still receives rows once attached.
    write_rows(engine, written_rows(1, _midday(stranded_day) + timedelta(hours=3)))
    assert sorted(_where(engine).values()).count(partition_name(stranded_day)) == 4


@pytest.mark.postgres_only
def test_replayed_batches_never_duplicate_on_the_partitioned_layout(engine: Engine) -> None:
    # Cache the single-table layout in the writer first, then convert under it.
    first = written_rows(3, _midday(TODAY))
    write_rows(engine, first)
    write_rows(engine, first)
    partition_database(engine, days_ahead=1, now=NOW)
    batch = [*first, *written_rows(2, _midday(TODAY)), *written_rows(2, _midday(date(2020, 1, 1)))]
    for _ in range(3):
        write_rows(engine, batch)
        result = write_isolating(engine, batch, lambda row, reason: None)
        assert result.rejected == 0
    assert _count(engine) == 7
    with engine.connect() as conn:
        distinct = conn.exec_driver_sql(
            "SELECT count(DISTINCT prediction_id) FROM ml_predictions"
        ).scalar_one()
    assert distinct == 7


@pytest.mark.postgres_only
def test_seed_queries_run_verbatim_on_the_partitioned_layout(engine: Engine) -> None:
    partition_database(engine, days_ahead=1, now=NOW)
    insert_predictions(
        engine,
        [
            prediction_row(moment=NOW - timedelta(minutes=10), signal_confidence=0.9),
            prediction_row(moment=NOW - timedelta(days=9), signal_confidence=0.95),
        ],
    )
    scored = prediction_row(
        "ETHUSDT", moment=NOW - timedelta(hours=3), actual_direction_15m="LONG", accuracy_15m=True
    )
    insert_predictions(engine, [scored])
    queries = [
        "SELECT * FROM ml_predictions WHERE datetime >= NOW() - INTERVAL '1 hour' "
        "ORDER BY datetime DESC;",
        "SELECT symbol, COUNT(*) as total, AVG(CASE WHEN accuracy_15m THEN 1 ELSE 0 END) as "
        "accuracy_15m,\n       AVG(signal_confidence) as avg_confidence\nFROM ml_predictions "
        "WHERE actual_direction_15m IS NOT NULL GROUP BY symbol ORDER BY total DESC;",
        "SELECT * FROM ml_predictions WHERE signal_confidence > 0.8 AND signal_type != 'NEUTRAL'"
        "\nORDER BY datetime DESC LIMIT 100;",
    ]
    with engine.connect() as conn:
        recent, accuracy, confident = (conn.exec_driver_sql(q).mappings().all() for q in queries)
    assert len(recent) == 1 and recent[0]["signal_confidence"] == 0.9
    assert [(row["symbol"], row["total"], float(row["accuracy_15m"])) for row in accuracy] == [
        ("ETHUSDT", 1, 1.0)
    ]
    assert [row["signal_confidence"] for row in confident] == [0.9, 0.95]


# ------------------------------------------------------------ hooks


def _candles(start: datetime, count: int = 30) -> pd.DataFrame:
    index = pd.date_range(start, periods=count, freq="15min", tz="UTC")
    close = 100 + np.arange(count, dtype=float)
    return pd.DataFrame(
        {"open": close, "high": close, "low": close, "close": close, "volume": 1.0},
        index=index,
    )


@pytest.mark.postgres_only
def test_a_starting_logger_creates_the_coming_days(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    long_ago = NOW - timedelta(days=60)
    partition_database(engine, days_ahead=0, now=long_ago)  # nothing around today
    with MLPredictionLogger(db_url, flush_interval_s=0.05, spool_dir=tmp_path / "spool") as log:
        log.log_prediction_sync(
            symbol="BTCUSDT",
            features=np.ones(8),
            model_outputs=np.zeros(20),
            market_data=_candles(long_ago - timedelta(days=30)),  # a day with no partition
        )
        deadline = time.monotonic() + 15
        wanted = {TODAY + timedelta(days=offset) for offset in range(-1, PARTITION_DAYS_AHEAD + 1)}
        while True:
            with engine.connect() as conn:
                days = {partition.day for partition in day_partitions(conn)}
            if wanted <= days or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert wanted <= days
    assert _count(engine) == 1


@pytest.mark.postgres_only
def test_each_backfill_run_empties_the_default_partition(engine: Engine) -> None:
    partition_database(engine, days_ahead=1, now=NOW)
    old_day = TODAY - timedelta(days=100)
    insert_predictions(engine, [prediction_row(moment=_midday(old_day))])
    assert _count(engine, DEFAULT_PARTITION) == 1
    backfill_actuals(engine, dry_run=True)
    assert _count(engine, DEFAULT_PARTITION) == 1  # a dry run changes nothing
    backfill_actuals(engine)
    assert _count(engine, DEFAULT_PARTITION) == 0
    assert set(_where(engine).values()) == {partition_name(old_day)}


def test_upkeep_is_best_effort_and_a_no_op_without_partitions(engine: Engine) -> None:
    # A single table (either backend): nothing to do, nothing raised.
    assert not ensure_partitions_for(engine, now=NOW).partitioned
    assert partitions_of(engine) == []
    unreachable = create_engine("postgresql://postgres@127.0.0.1:1/mlpred")
    try:
        assert keep_partitions(unreachable) is False  # refused connection: logged, not raised
    finally:
        unreachable.dispose()
    with pytest.raises(InputError, match="days_ahead"):
        ensure_partitions_for(engine, days_ahead=-1)


# ------------------------------------------------------------ CLI and library entry points


@pytest.mark.postgres_only
def test_init_db_partitioned_twice_is_safe(empty_db_url: str) -> None:
    first = run_cli("--db", empty_db_url, "init-db", "--partitioned")
    assert first[0] == 0, first
    assert "Layout: partitioned by day" in first[1]
    engine = create_engine(empty_db_url)
    try:
        insert_predictions(engine, [prediction_row(moment=NOW), prediction_row(moment=NOW)])
        second = run_cli("--db", empty_db_url, "init-db", "--partitioned")
        plain = run_cli("--db", empty_db_url, "init-db")
        assert second[0] == 0 and plain[0] == 0, (second, plain)
        assert "(already at head)" in second[1]
        assert "Layout: partitioned by day" in plain[1]  # stays partitioned without the flag
        assert "Converted" not in second[1] + plain[1]
        assert _count(engine) == 2
        with engine.connect() as conn:
            assert is_partitioned(conn)
    finally:
        engine.dispose()


@pytest.mark.sqlite_only
def test_sqlite_keeps_one_table_with_a_one_line_error(db_url: str, empty_db_url: str) -> None:
    code, out, err = run_cli("--db", empty_db_url, "init-db", "--partitioned")
    assert code == 2
    assert err.strip().splitlines() == [
        "Error: partitioned storage needs PostgreSQL; SQLite keeps one table"
    ]
    assert "Revision" not in out
    untouched = create_engine(empty_db_url)
    with untouched.connect() as conn:  # refused before migrating anything
        tables = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").all()
    untouched.dispose()
    assert tables == []
    with pytest.raises(InputError, match="needs PostgreSQL"):
        partition_database(db_url)
    with pytest.raises(InputError, match="needs PostgreSQL"):
        set_up_database(db_url, partitioned=True)
    code, out, _ = run_cli("--db", db_url, "init-db")
    assert code == 0 and "Layout: single table" in out
    code, out, _ = run_cli("--db", db_url, "partitions", "list")
    assert code == 0 and out.strip() == (
        "No partitions: ml_predictions is a single table (not partitioned)."
    )
    code, out, _ = run_cli("--db", db_url, "partitions", "ensure", "--days-ahead", "3")
    assert code == 0 and "nothing to do" in out


@pytest.mark.postgres_only
def test_partitions_ensure_and_list_commands(engine: Engine, db_url: str) -> None:
    partition_database(engine, days_ahead=0, now=NOW)
    insert_predictions(engine, [prediction_row(moment=_midday(date(2021, 6, 1)))])
    code, out, err = run_cli(
        "--db", db_url, "partitions", "ensure", "--days-ahead", "3", "-f", "json"
    )
    assert code == 0, err
    report = json.loads(out)
    ahead = [(TODAY + timedelta(days=offset)).isoformat() for offset in (1, 2, 3)]
    assert report["created"] == ["2021-06-01", *ahead]
    assert report["moved_from_default"] == 1
    assert report["last_day"] == ahead[-1]

    code, out, _ = run_cli("--db", db_url, "partitions", "list", "--format", "json")
    assert code == 0
    listed = json.loads(out)
    assert listed[-1] == {
        "partition": DEFAULT_PARTITION,
        "day": None,
        "kind": "default",
        "rows_estimate": 0,
    }
    days = [row["day"] for row in listed[:-1]]
    assert days == sorted(days) and days[0] == "2021-06-01" and days[-1] == ahead[-1]
    assert {row["partition"]: row["rows_estimate"] for row in listed}[
        "ml_predictions_p20210601"
    ] == 1

    code, out, _ = run_cli("--db", db_url, "partitions", "list")
    assert code == 0 and "ml_predictions_p20210601" in out
    code, out, err = run_cli("--db", db_url, "partitions", "ensure", "--days-ahead", "-2")
    assert code == 2 and err.strip().splitlines() == [
        "Error: --days-ahead must be zero or positive, got -2"
    ]
    for command in (["partitions", "ensure"], ["partitions", "list"], ["init-db"]):
        code, out, _ = run_cli(*command, "--help")
        assert code == 0 and f"mlpred {' '.join(command)}" in out


def test_cli_default_days_ahead_matches_the_library() -> None:
    assert DAYS_AHEAD_DEFAULT == PARTITION_DAYS_AHEAD
