"""Archive to Parquet and restore: every column round-trips exactly, archived rows are gone
from the table and present in verified files, rollups stay, non-final days wait for
``force``, a failure at any step leaves table and archive consistent and a re-run finishes,
restore is idempotent, and archived rows read back as the database reads them."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlpred_cli.errors import DatabaseError, InputError, MlpredError
from mlpred_cli.history import parquet_files
from mlpred_cli.history.archive import (
    NOT_FINAL,
    NOT_IN_ROLLUPS,
    archive_predictions,
    restore_archive,
)
from mlpred_cli.history.archived_rows import read_archived_predictions
from mlpred_cli.outcomes.rollups import rebuild_rollups
from mlpred_cli.store import archive_sql
from mlpred_cli.store.prediction_queries import PredictionFilter, read_frame, select_predictions
from mlpred_cli.store.prediction_writes import write_rows
from mlpred_cli.store.rollup_columns import ROLLUP_TABLE
from mlpred_cli.store.tables import archived_days_table, predictions_table
from tests.cli_helpers import run_cli
from tests.factories import written_rows

pytestmark = pytest.mark.both_layouts  # PostgreSQL also on the table partitioned by day

P = predictions_table.c
DAYS = (date(2026, 1, 10), date(2026, 1, 11), date(2026, 1, 12))
NOW = datetime(2026, 2, 1, tzinfo=UTC)
ROWS_PER_DAY = 60
ALL_COLUMNS = [column.name for column in predictions_table.columns]


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _seed_day(engine: Engine, day: date, rows: int = ROWS_PER_DAY, *, filled: bool = True) -> None:
    """``rows`` predictions spread over ``day`` with varied values, nulls and payloads; every
    other one gets outcomes (and ``actuals_filled_at`` when ``filled``)."""
    batch = []
    for i in range(rows):
        moment = _midnight(day) + timedelta(minutes=23 * i, microseconds=i)
        batch += written_rows(
            1,
            moment,
            symbol=("BTCUSDT", "ETHUSDT", "SOLUSDT")[i % 3],
            model_version=("v1", "v2", None)[i % 4 % 3],
            timestamp=int(moment.timestamp() * 1000),
            features_count=240 if i % 5 else None,
            features_mean=i / 7 if i % 2 else None,
            close_price=100 + i * 0.123456789,
            rsi=55.5 if i % 3 else None,
            direction_15m=("LONG", "SHORT", "NEUTRAL")[i % 3],
            predicted_return_15m=(i - 30) * 1e-4,
            signal_type=("LONG", "SHORT", "NEUTRAL")[i % 3],
            signal_confidence=0.5 + i / 200,
            is_duplicate=i % 11 == 0,
            signal_timeframe="" if i % 13 == 0 else "1h",  # empty text is not null
            features_array=[0.1 * i, -1.5, 1e-300] if i % 4 == 0 else None,
            model_outputs_raw={"logits": [i, -i], "note": "é"} if i % 6 == 0 else None,
            feature_attributions=[0.01 * i, None, -2.5] if i % 5 == 1 else None,
        )
    write_rows(engine, batch)
    with engine.begin() as conn:
        conn.execute(
            sa.update(predictions_table)
            .where(P.datetime >= _midnight(day), P.datetime < _midnight(day) + timedelta(days=1))
            .where(P.id % 2 == 0)
            .values(
                actual_return_15m=0.0025,
                actual_direction_15m="LONG",
                accuracy_15m=P.direction_15m == "LONG",
                return_error_15m=P.predicted_return_15m - 0.0025,
                actuals_filled_at=_midnight(day) + timedelta(days=1) if filled else None,
            )
        )
        if filled:  # the rest are final too: their retry window is long past
            conn.execute(
                sa.update(predictions_table)
                .where(P.datetime >= _midnight(day), P.id % 2 == 1)
                .values(actuals_filled_at=_midnight(day) + timedelta(days=2))
            )


def _table(engine: Engine, selection: PredictionFilter | None = None) -> pd.DataFrame:
    return read_frame(engine, select_predictions(selection or PredictionFilter(), ALL_COLUMNS))


def _rollups(engine: Engine, days: tuple[date, ...] | None = None) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT * FROM {ROLLUP_TABLE}").all()
    return _rollups_of(sorted((tuple(row) for row in rows), key=repr), days)


def _rollups_of(
    rows: list[tuple[Any, ...]], days: tuple[date, ...] | None
) -> list[tuple[Any, ...]]:
    """The rollup rows of ``days`` (all when None); the first column is the day."""
    return [row for row in rows if days is None or row[0] in days]


def _ledger(engine: Engine) -> dict[date, Any]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(archived_days_table)).mappings().all()
    return {row["day"]: row for row in rows}


def _count(engine: Engine, day: date) -> int:
    start = _midnight(day)
    statement = sa.select(sa.func.count()).where(
        P.datetime >= start, P.datetime < start + timedelta(days=1)
    )
    with engine.connect() as conn:
        return int(conn.execute(statement).scalar_one())


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    """Three final days of predictions, rollups built."""
    for day in DAYS:
        _seed_day(engine, day)
    rebuild_rollups(engine, now=NOW)
    return engine


def test_archive_then_restore_round_trips_every_column(seeded: Engine, tmp_path: Path) -> None:
    engine = seeded
    before_table, before_rollups = _table(engine), _rollups(engine)

    report = archive_predictions(engine, before=DAYS[2], to=tmp_path, now=NOW)

    assert [day.day for day in report.days] == list(DAYS[:2])
    assert report.rows == 2 * ROWS_PER_DAY and not report.skipped
    assert report.bytes_written > 0 and report.bytes_per_row is not None
    assert [_count(engine, day) for day in DAYS] == [0, 0, ROWS_PER_DAY]
    ledger = _ledger(engine)
    assert sorted(ledger) == list(DAYS[:2])
    for day in DAYS[:2]:
        found = parquet_files.day_file(tmp_path, day)
        assert found is not None and found.verified
        assert parquet_files.read_back(found.path)[0] == ROWS_PER_DAY
        assert ledger[day]["predictions"] == ROWS_PER_DAY
        assert ledger[day]["checksum"] == hashlib.sha256(found.path.read_bytes()).hexdigest()
        assert Path(ledger[day]["location"]) == found.directory.resolve()
    assert _rollups(engine) == before_rollups
    rebuild_rollups(engine, now=NOW)  # archived days keep their rollups
    assert _rollups(engine, DAYS[:2]) == _rollups_of(before_rollups, DAYS[:2])

    restored = restore_archive(engine, from_dir=tmp_path)

    assert restored.inserted == 2 * ROWS_PER_DAY
    pd.testing.assert_frame_equal(_table(engine), before_table)
    assert _ledger(engine) == {}
    again = restore_archive(engine, from_dir=tmp_path)
    assert again.inserted == 0 and again.rows == 2 * ROWS_PER_DAY
    pd.testing.assert_frame_equal(_table(engine), before_table)
    write_rows(engine, written_rows(1, NOW))
    with engine.connect() as conn:
        newest = conn.execute(sa.select(sa.func.max(P.id))).scalar_one()
    assert newest > before_table["id"].max()


def test_non_final_days_wait_for_force(engine: Engine, tmp_path: Path) -> None:
    _seed_day(engine, DAYS[0])
    _seed_day(engine, DAYS[1], filled=False)
    rebuild_rollups(engine, now=NOW)
    soon = _midnight(DAYS[1]) + timedelta(days=2)  # day 2 is inside the retry window

    report = archive_predictions(engine, before=DAYS[2], to=tmp_path, now=soon)

    assert [day.day for day in report.days] == [DAYS[0]]
    assert [(s.day, s.rows, s.not_final, s.reason) for s in report.skipped] == [
        (DAYS[1], ROWS_PER_DAY, ROWS_PER_DAY, NOT_FINAL)
    ]
    assert _count(engine, DAYS[1]) == ROWS_PER_DAY
    assert parquet_files.day_file(tmp_path, DAYS[1]) is None

    forced = archive_predictions(engine, before=DAYS[2], to=tmp_path, now=soon, force=True)

    assert [(d.day, d.not_final) for d in forced.days] == [(DAYS[1], ROWS_PER_DAY)]
    assert _count(engine, DAYS[1]) == 0
    later = archive_predictions(engine, before=DAYS[2], to=tmp_path, now=NOW)
    assert later.days == [] and later.skipped == []


def test_days_newer_than_the_rollups_are_skipped(engine: Engine, tmp_path: Path) -> None:
    _seed_day(engine, DAYS[0])
    report = archive_predictions(engine, before=DAYS[1], to=tmp_path, now=NOW)
    assert [(s.day, s.reason) for s in report.skipped] == [(DAYS[0], NOT_IN_ROLLUPS)]
    assert _count(engine, DAYS[0]) == ROWS_PER_DAY
    rebuild_rollups(engine, now=NOW)
    assert archive_predictions(engine, before=DAYS[1], to=tmp_path, now=NOW).rows == ROWS_PER_DAY


def test_dry_run_changes_nothing(seeded: Engine, tmp_path: Path) -> None:
    before_table = _table(seeded)
    target = tmp_path / "archive"

    report = archive_predictions(seeded, before=DAYS[2], to=target, dry_run=True, now=NOW)

    assert report.dry_run and [(d.day, d.rows) for d in report.days] == [
        (DAYS[0], ROWS_PER_DAY),
        (DAYS[1], ROWS_PER_DAY),
    ]
    assert report.bytes_written == 0 and report.rows_per_s is None
    assert not target.exists()
    assert _ledger(seeded) == {}
    pd.testing.assert_frame_equal(_table(seeded), before_table)


def _keep_row_on_delete(engine: Engine, row_id: int) -> None:
    """A trigger that makes deleting the row ``row_id`` fail (a real database refusal)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION keep_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF OLD.id = {int(row_id)} THEN RAISE EXCEPTION 'row kept'; END IF; "
                "RETURN OLD; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER keep_row BEFORE DELETE ON ml_predictions "
                "FOR EACH ROW EXECUTE FUNCTION keep_row()"
            )
        else:
            conn.exec_driver_sql(
                f"CREATE TRIGGER keep_row BEFORE DELETE ON ml_predictions WHEN OLD.id = "
                f"{int(row_id)} BEGIN SELECT RAISE(ABORT, 'row kept'); END"
            )


def _drop_keep_row(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "DROP TRIGGER keep_row"
            + (" ON ml_predictions" if engine.dialect.name == "postgresql" else "")
        )


@pytest.mark.parametrize("manifest_lost", [False, True])
def test_failure_mid_delete_then_rerun_completes(
    seeded: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, manifest_lost: bool
) -> None:
    engine = seeded
    day = DAYS[0]
    original = _table(engine, PredictionFilter(since=_midnight(day), until=_midnight(DAYS[1])))
    ids = sorted(original["id"])
    monkeypatch.setattr(archive_sql, "DELETE_BATCH_ROWS", 10)
    _keep_row_on_delete(engine, ids[35])  # the fourth batch fails, three are committed

    with pytest.raises(DatabaseError):
        archive_predictions(engine, before=DAYS[1], to=tmp_path, now=NOW)

    remaining = _table(engine, PredictionFilter(since=_midnight(day), until=_midnight(DAYS[1])))
    assert len(remaining) == ROWS_PER_DAY - 30
    written = parquet_files.day_file(tmp_path, day)
    assert written is not None and written.verified
    in_file = set(read_archived_predictions(tmp_path, PredictionFilter())["prediction_id"])
    assert set(original["prediction_id"]) <= in_file  # every deleted row is in the file
    assert day in _ledger(engine)  # rollup rebuilds leave the day alone meanwhile

    _drop_keep_row(engine)
    if manifest_lost:  # as if the crash came between the file's and the manifest's rename
        (written.directory / parquet_files.MANIFEST_NAME).unlink()
    late = _midnight(day) + timedelta(hours=23, minutes=59)
    write_rows(engine, written_rows(2, late, symbol="LATEUSDT"))
    skipped = archive_predictions(engine, before=DAYS[1], to=tmp_path, now=NOW).skipped
    assert [(s.day, s.reason) for s in skipped] == [(day, NOT_IN_ROLLUPS)]  # the late rows
    rebuild_rollups(engine, now=NOW)
    report = archive_predictions(engine, before=DAYS[1], to=tmp_path, now=NOW)

    assert [(d.day, d.rows, d.merged_from_file) for d in report.days] == [
        (day, ROWS_PER_DAY + 2, 30)
    ]
    assert _count(engine, day) == 0
    again = parquet_files.day_file(tmp_path, day)
    assert again is not None and again.verified and again.rows == ROWS_PER_DAY + 2
    assert _ledger(engine)[day]["predictions"] == ROWS_PER_DAY + 2
    archived = read_archived_predictions(
        tmp_path, PredictionFilter(until=_midnight(DAYS[1])), ALL_COLUMNS
    )
    pd.testing.assert_frame_equal(
        archived[archived["symbol"] != "LATEUSDT"].reset_index(drop=True), original
    )


def test_unwritable_archive_leaves_rows_in_place(seeded: Engine, tmp_path: Path) -> None:
    blocked = parquet_files.day_directory(tmp_path, DAYS[1])
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a directory")
    before_table = _table(seeded)

    with pytest.raises(MlpredError, match="cannot write the archive"):
        archive_predictions(seeded, before=DAYS[2], to=tmp_path, now=NOW)

    assert _count(seeded, DAYS[0]) == 0  # the first day completed before the failure
    assert _count(seeded, DAYS[1]) == ROWS_PER_DAY
    assert sorted(_ledger(seeded)) == [DAYS[0]]
    blocked.unlink()
    archive_predictions(seeded, before=DAYS[2], to=tmp_path, now=NOW)
    restore_archive(seeded, from_dir=tmp_path)
    pd.testing.assert_frame_equal(_table(seeded), before_table)


def test_restore_refuses_a_damaged_file_and_a_missing_archive(
    seeded: Engine, tmp_path: Path
) -> None:
    archive_predictions(seeded, before=DAYS[2], to=tmp_path, now=NOW)
    found = parquet_files.day_file(tmp_path, DAYS[1])
    assert found is not None
    data = bytearray(found.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    found.path.write_bytes(bytes(data))

    with pytest.raises(MlpredError, match="does not match its manifest"):
        restore_archive(seeded, from_dir=tmp_path)
    assert _count(seeded, DAYS[0]) == 0  # nothing restored, not even the intact day

    with pytest.raises(InputError, match="no archive in"):
        restore_archive(seeded, from_dir=tmp_path / "nowhere")
    restored = restore_archive(seeded, from_dir=tmp_path, since=DAYS[0], until=DAYS[1])
    assert [day.day for day in restored.days] == [DAYS[0]]
    assert _count(seeded, DAYS[0]) == ROWS_PER_DAY and sorted(_ledger(seeded)) == [DAYS[1]]


def test_read_archived_predictions_filters_like_the_database(
    seeded: Engine, tmp_path: Path
) -> None:
    selections = [
        PredictionFilter(),
        PredictionFilter(symbol="ETHUSDT"),
        PredictionFilter(model_version="v2", since=_midnight(DAYS[0]) + timedelta(hours=5)),
        PredictionFilter(
            symbol="BTCUSDT",
            since=_midnight(DAYS[0]) + timedelta(hours=20),
            until=_midnight(DAYS[1]) + timedelta(hours=3),
        ),
        PredictionFilter(symbol="NOSUCH"),
    ]
    column_sets: list[list[str] | None] = [None, ALL_COLUMNS, ["datetime", "features_array"]]
    expected = {
        (i, j): read_frame(seeded, select_predictions(selection, columns))
        for i, selection in enumerate(selections)
        for j, columns in enumerate(column_sets)
    }
    archive_predictions(seeded, before=DAYS[2], to=tmp_path, now=NOW)
    with seeded.begin() as conn:  # the third day is still in the table: keep it out
        conn.execute(sa.delete(predictions_table))

    for (i, j), frame in expected.items():
        got = read_archived_predictions(tmp_path, selections[i], column_sets[j])
        pd.testing.assert_frame_equal(
            got, frame.loc[frame_in_archive(frame)].reset_index(drop=True)
        )
    with pytest.raises(InputError, match="unknown column"):
        read_archived_predictions(tmp_path, PredictionFilter(), ["no_such_column"])


def frame_in_archive(frame: pd.DataFrame) -> pd.Series[bool]:
    """Rows of the first two days (the archived ones)."""
    return frame["datetime"] < pd.Timestamp(_midnight(DAYS[2]))


@pytest.mark.postgres_only
def test_partitioned_table_drops_the_day_partition(engine: Engine, tmp_path: Path) -> None:
    from mlpred_cli.store.partitions import day_partitions, partition_predictions

    for day in DAYS:
        _seed_day(engine, day)
    partition_predictions(engine, days_ahead=1, now=NOW)
    rebuild_rollups(engine, now=NOW)
    before_table = _table(engine)
    with engine.connect() as conn:
        assert {DAYS[0], DAYS[1]} <= {p.day for p in day_partitions(conn)}

    report = archive_predictions(engine, before=DAYS[2], to=tmp_path, now=NOW)

    assert [(d.day, d.partition_dropped, d.deleted) for d in report.days] == [
        (DAYS[0], True, 0),
        (DAYS[1], True, 0),
    ]
    with engine.connect() as conn:
        days = {p.day for p in day_partitions(conn)}
    assert DAYS[0] not in days and DAYS[1] not in days and DAYS[2] in days
    assert [_count(engine, day) for day in DAYS] == [0, 0, ROWS_PER_DAY]

    assert restore_archive(engine, from_dir=tmp_path).inserted == 2 * ROWS_PER_DAY
    assert restore_archive(engine, from_dir=tmp_path).inserted == 0
    pd.testing.assert_frame_equal(_table(engine), before_table)


def test_cli_archive_and_restore(seeded: Engine, db_url: str, tmp_path: Path) -> None:
    target = str(tmp_path / "archive")
    code, out, err = run_cli("--db", db_url, "archive", "--before", "2026-01-12", "--to", target,
                             "--dry-run")  # fmt: skip
    assert code == 0 and "would archive 120 rows of 2 days" in out
    code, out, _ = run_cli("--db", db_url, "archive", "--before", "2026-01-12T06:00",
                           "--to", target, "--format", "json")  # fmt: skip
    assert code == 0 and json.loads(out)["rows"] == 2 * ROWS_PER_DAY
    code, out, _ = run_cli("--db", db_url, "archive", "restore", "--from", target)
    assert code == 0 and "120 rows inserted" in out

    for args in (
        ("archive",),
        ("archive", "--before", "yesterday", "--to", target),
        ("archive", "--before", "2999-01-01", "--to", target),
        ("archive", "restore", "--from", str(tmp_path / "nowhere")),
        ("archive", "restore", "--from", target, "--since", "2026-01-12", "--until", "2026-01-11"),
    ):
        code, out, err = run_cli("--db", db_url, *args)
        assert code == 2, args
        assert err.startswith("Error:") and len(err.strip().splitlines()) == 1, err


def test_notebook_and_accuracy_see_one_history_after_archiving(
    seeded: Engine, tmp_path: Path
) -> None:
    from mlpred_cli.analysis.prediction_views import accuracy_table, load_predictions

    engine = seeded
    window = {"since": _midnight(DAYS[0]), "until": _midnight(DAYS[2] + timedelta(days=1))}
    before_rows = load_predictions(engine, **window)
    before_accuracy = accuracy_table(engine, by="day", **window)
    archive_predictions(engine, before=DAYS[2], to=tmp_path, now=NOW)

    assert len(load_predictions(engine, **window)) == ROWS_PER_DAY
    pd.testing.assert_frame_equal(load_predictions(engine, archive=tmp_path, **window), before_rows)
    picked = load_predictions(engine, archive=tmp_path, columns=["symbol", "datetime"], **window)
    assert list(picked.columns) == ["symbol", "datetime"] and len(picked) == len(before_rows)
    after_accuracy = accuracy_table(engine, by="day", **window)
    corrected = [c for c in before_accuracy.columns if "effective" in c or "overlap" in c]
    pd.testing.assert_frame_equal(
        after_accuracy.drop(columns=corrected), before_accuracy.drop(columns=corrected)
    )
    # the overlap-corrected intervals need the rows: gone with the archived days only
    archived = after_accuracy["day"] < DAYS[2].isoformat()
    assert archived.sum() == 2
    assert after_accuracy.loc[archived, corrected].isna().all().all()
    pd.testing.assert_frame_equal(
        after_accuracy.loc[~archived, corrected], before_accuracy.loc[~archived, corrected]
    )
    restore_archive(engine, from_dir=tmp_path, since=DAYS[0], until=DAYS[1])  # one day back
    again = load_predictions(engine, archive=tmp_path, **window)  # in both: counted once
    assert sorted(again["prediction_id"]) == sorted(before_rows["prediction_id"])
