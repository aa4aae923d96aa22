"""Archive old predictions to Parquet and restore them (``mlpred archive``).

Per UTC day, in this order, so that no row is ever both gone from ``ml_predictions`` and
absent from a verified file:

1. the day's rows are streamed from the database (id order) into a new file, merged with
   the rows of an earlier file of that day when there is one (a re-run after a crash, or
   rows that arrived late; the database's copy of a row wins);
2. the file is fsynced, read back and checked (row count, content digest) and renamed into
   place, then its manifest (SHA-256 of the file, row count, digest);
3. the day is recorded in ``ml_archived_days`` (so ``rollup rebuild`` leaves its rollups);
4. its rows are removed: the day's partition is detached and dropped when every row in it
   is in the file, otherwise (and for rows in the default partition, and on an
   unpartitioned table) they are deleted in batches by id, each batch its own transaction.

The rollups in ``ml_prediction_daily`` are never touched. A crash anywhere leaves rows in
the table (copied or not) and verified files; the next run picks up where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlpred_cli.config import BACKFILL_RETRY_WINDOW, HORIZON_DELTAS
from mlpred_cli.errors import InputError, MlpredError
from mlpred_cli.history.parquet_files import (
    ROW_GROUP_ROWS,
    ContentDigest,
    archive_days,
    day_file,
    file_columns,
    iter_file_batches,
    read_back,
    write_day,
)
from mlpred_cli.store.archive_sql import (
    ARROW_SCHEMA,
    ArchivedDayRecord,
    ArchiveStore,
    DayCount,
    archive_store,
    day_start,
)
from mlpred_cli.store.prediction_queries import parse_time
from mlpred_cli.store.source import DatabaseSource

#: ``progress(done, total)``: called after each day.
Progress = Callable[[int, int], None]

TimeValue = date | datetime | str


def final_before(now: datetime) -> datetime:
    """Rows with ``datetime`` before this are final even without ``actuals_filled_at``: the
    backfill never looks at them again (their last horizon plus the retry window is past)."""
    return now - max(HORIZON_DELTAS.values()) - BACKFILL_RETRY_WINDOW


def _day_of(value: TimeValue, name: str) -> date:
    """The UTC date of ``value`` (a date as is; a time is floored to its UTC day)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    return parse_time(value, name).date()


def _moment(value: TimeValue, name: str) -> datetime:
    if isinstance(value, date) and not isinstance(value, datetime):
        return day_start(value)
    return parse_time(value, name)


# ---------------------------------------------------------------- reports


@dataclass(frozen=True)
class ArchivedDay:
    """One day written (or, on a dry run, that would be written) and removed."""

    day: date
    rows: int
    not_final: int = 0
    bytes: int = 0
    merged_from_file: int = 0
    """Rows that were already in an earlier file of the day (a re-run, or late rows)."""
    partition_dropped: bool = False
    deleted: int = 0
    """Rows removed by DELETE (the rest went with the dropped partition)."""


#: Why a day was left alone (``force`` archives it anyway).
NOT_FINAL = "not_final"
NOT_IN_ROLLUPS = "not_in_rollups"


@dataclass(frozen=True)
class SkippedDay:
    """A day left alone: ``reason`` is ``not_final`` (some of its rows may still get
    outcomes) or ``not_in_rollups`` (some rows are newer than what ``ml_prediction_daily``
    holds, so their statistics would be lost with them: rebuild the rollups first)."""

    day: date
    rows: int
    not_final: int
    reason: str


@dataclass
class ArchiveReport:
    """What ``archive_predictions`` did (or, on a dry run, would do)."""

    before: date
    directory: str
    dry_run: bool
    force: bool
    days: list[ArchivedDay] = field(default_factory=list)
    skipped: list[SkippedDay] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def days_archived(self) -> int:
        """Days written and removed (on a dry run: that would be)."""
        return len(self.days)

    @property
    def rows(self) -> int:
        """Rows archived (on a dry run: that would be)."""
        return sum(day.rows for day in self.days)

    @property
    def not_final(self) -> int:
        """Non-final rows archived because of ``force`` (or, skipped, see ``skipped``)."""
        return sum(day.not_final for day in self.days)

    @property
    def bytes_written(self) -> int:
        """Bytes of the Parquet files written."""
        return sum(day.bytes for day in self.days)

    @property
    def bytes_per_row(self) -> float | None:
        """Parquet bytes per archived row (None when nothing was written)."""
        return self.bytes_written / self.rows if self.rows and self.bytes_written else None

    @property
    def rows_per_s(self) -> float | None:
        """Archive throughput (None on a dry run or when nothing was archived)."""
        if self.dry_run or not self.rows or self.seconds <= 0:
            return None
        return self.rows / self.seconds

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: dates as ISO text, the totals included."""
        return {
            "before": self.before.isoformat(),
            "directory": self.directory,
            "dry_run": self.dry_run,
            "force": self.force,
            "days_archived": self.days_archived,
            "rows": self.rows,
            "not_final": self.not_final,
            "bytes_written": self.bytes_written,
            "bytes_per_row": self.bytes_per_row,
            "seconds": self.seconds,
            "rows_per_s": self.rows_per_s,
            "days": [{**asdict(day), "day": day.day.isoformat()} for day in self.days],
            "skipped": [{**asdict(day), "day": day.day.isoformat()} for day in self.skipped],
        }


@dataclass(frozen=True)
class RestoredDay:
    """One day loaded back: ``rows`` in its file, ``inserted`` of them were missing."""

    day: date
    rows: int
    inserted: int


@dataclass
class RestoreReport:
    """What ``restore_archive`` loaded back."""

    directory: str
    days: list[RestoredDay] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        """Rows in the files of the restored days."""
        return sum(day.rows for day in self.days)

    @property
    def inserted(self) -> int:
        """Rows inserted (the rest were already in the table)."""
        return sum(day.inserted for day in self.days)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "directory": self.directory,
            "days_restored": len(self.days),
            "rows": self.rows,
            "inserted": self.inserted,
            "already_present": self.rows - self.inserted,
            "seconds": self.seconds,
            "days": [{**asdict(day), "day": day.day.isoformat()} for day in self.days],
        }


# ---------------------------------------------------------------- archive


def _archive_root(to: Path | str) -> Path:
    root = Path(to).expanduser()
    if root.exists() and not root.is_dir():
        raise InputError(f"archive directory {root} is a file, not a directory")
    return root


def _database_batches(store: ArchiveStore, day: date) -> Iterator[pa.RecordBatch]:
    yield from store.stream_day(day, ROW_GROUP_ROWS)


def _merged_batches(
    store: ArchiveStore, day: date, earlier: Path
) -> tuple[list[pa.RecordBatch], int]:
    """The day's rows in the database together with those of ``earlier`` that the database
    no longer has (by ``prediction_id``), in id order; and how many came from the file."""
    from_database = pa.Table.from_batches(list(_database_batches(store, day)), schema=ARROW_SCHEMA)
    from_file = pq.read_table(earlier, schema=ARROW_SCHEMA)
    stored_ids = from_database.column("prediction_id").combine_chunks()
    only_in_file = from_file.filter(
        pc.invert(pc.is_in(from_file.column("prediction_id"), value_set=stored_ids))
    )
    merged = pa.concat_tables([only_in_file, from_database]).sort_by("id")
    return merged.combine_chunks().to_batches(max_chunksize=ROW_GROUP_ROWS), only_in_file.num_rows


def _archive_day(
    store: ArchiveStore, root: Path, count: DayCount, partitioned: bool, now: datetime
) -> ArchivedDay:
    earlier = day_file(root, count.day)
    merged = 0
    if earlier is None:
        written = write_day(root, count.day, _database_batches(store, count.day))
    else:
        if not earlier.verified:
            # Renamed into place only after it was read back and checked, so it holds every
            # row of the file it replaced: the manifest is what a crash left behind.
            read_back(earlier.path)
        batches, merged = _merged_batches(store, count.day, earlier.path)
        written = write_day(root, count.day, batches)
    store.record_day(
        ArchivedDayRecord(
            day=count.day,
            predictions=written.rows,
            location=str(written.directory.resolve()),
            checksum=written.file_sha256,
            archived_at=now,
        )
    )
    ids = written.ids.tolist()
    dropped = partitioned and store.drop_day_partition(count.day, ids)
    deleted = 0
    if not dropped or store.rows_in_default_partition(count.day):
        deleted = store.delete_rows(count.day, ids)
    return ArchivedDay(
        day=count.day,
        rows=written.rows,
        not_final=count.not_final,
        bytes=written.bytes,
        merged_from_file=merged,
        partition_dropped=dropped,
        deleted=deleted,
    )


def _skip_reason(count: DayCount, rollups_through: int | None) -> str | None:
    if count.not_final:
        return NOT_FINAL
    if rollups_through is None or count.max_id > rollups_through:
        return NOT_IN_ROLLUPS
    return None


def archive_predictions(
    source: DatabaseSource,
    *,
    before: TimeValue,
    to: Path | str,
    dry_run: bool = False,
    force: bool = False,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> ArchiveReport:
    """Archive every UTC day strictly before ``before`` to Parquet under ``to`` and remove
    its rows from ``ml_predictions``; rollups (``ml_prediction_daily``) stay.

    ``before`` is a date, or a time floored to its UTC day (naive = UTC); it may not be
    later than today (UTC). A day is skipped whole and reported, unless ``force``, when
    some of its rows are not final (no ``actuals_filled_at`` and ``datetime`` + 12 h +
    ``BACKFILL_RETRY_WINDOW`` after ``now``) or not in the rollups yet (id above their
    watermark: ``rebuild_rollups`` first), since their statistics would be lost.
    ``dry_run`` counts what would be archived and writes nothing. Raises ``InputError``
    for a bad ``before`` or ``to``, ``MlpredError`` when a file cannot be written or does
    not read back as written (the day's rows then stay).
    """
    started = time.perf_counter()
    moment = now.astimezone(UTC) if now is not None else datetime.now(UTC)
    cutoff = _day_of(before, "before")
    if cutoff > moment.date():
        raise InputError(
            f"before must not be later than today ({moment.date().isoformat()} UTC): "
            "only whole past days are archived"
        )
    root = _archive_root(to)
    report = ArchiveReport(before=cutoff, directory=str(root), dry_run=dry_run, force=force)
    with archive_store(source) as store:
        counts = store.day_counts(day_start(cutoff), final_before(moment))
        through = store.rollups_complete_through()
        partitioned = not dry_run and store.partitioned()
        for done, count in enumerate(counts, start=1):
            reason = _skip_reason(count, through)
            if reason is not None and not force:
                report.skipped.append(SkippedDay(count.day, count.rows, count.not_final, reason))
            elif dry_run:
                report.days.append(ArchivedDay(count.day, count.rows, count.not_final))
            else:
                report.days.append(_archive_day(store, root, count, partitioned, moment))
            if progress is not None:
                progress(done, len(counts))
    report.seconds = time.perf_counter() - started
    return report


# ---------------------------------------------------------------- restore


def _restored_rows(path: Path, expected: str) -> Iterator[pa.RecordBatch]:
    """The file's record batches; raises ``MlpredError`` at the end when its
    content digest is not ``expected`` (the caller's transaction then rolls back)."""
    digest = ContentDigest(file_columns(path))
    for batch in iter_file_batches(path):
        digest.update(batch)
        yield batch
    if digest.hexdigest() != expected:
        raise MlpredError(f"archive file {path} does not match its manifest; nothing restored")


def restore_archive(
    source: DatabaseSource,
    *,
    from_dir: Path | str,
    since: TimeValue | None = None,
    until: TimeValue | None = None,
    progress: Progress | None = None,
) -> RestoreReport:
    """Load archived days back into ``ml_predictions`` with their original ids and remove
    them from ``ml_archived_days``. Whole days only: those starting in ``[since, until)``
    (naive = UTC; default all). Idempotent: rows already stored (by ``prediction_id``) are
    skipped, so a second run inserts nothing.

    Every file is checked against its manifest (SHA-256 before loading, content digest
    while loading, each day in one transaction). Raises ``InputError`` when ``from_dir``
    holds no archive, ``MlpredError`` when a file does not match its manifest.
    """
    started = time.perf_counter()
    root = Path(from_dir).expanduser()
    if not (root / "ml_predictions").is_dir():
        raise InputError(
            f"no archive in {root}: expected {root}/ml_predictions/date=YYYY-MM-DD/part-0.parquet"
        )
    start = _moment(since, "since") if since is not None else None
    end = _moment(until, "until") if until is not None else None
    if start is not None and end is not None and start >= end:
        raise InputError("since must be before until")
    days = [
        day
        for day in archive_days(root)
        if (start is None or day_start(day) >= start) and (end is None or day_start(day) < end)
    ]
    files = []
    for day in days:
        found = day_file(root, day)
        if found is None:
            continue
        if not found.verified:
            raise MlpredError(
                f"archive file {found.path} does not match its manifest; nothing restored"
            )
        files.append(found)
    report = RestoreReport(directory=str(root))
    with archive_store(source) as store:
        for done, found in enumerate(files, start=1):
            inserted = store.restore_day(
                found.day, _restored_rows(found.path, found.content_sha256)
            )
            report.days.append(RestoredDay(found.day, found.rows, inserted))
            if progress is not None:
                progress(done, len(files))
    report.seconds = time.perf_counter() - started
    return report
