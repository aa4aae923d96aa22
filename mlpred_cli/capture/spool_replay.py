"""The spool directory outside the logger (the CLI's ``mlpred spool``): what waits there,
replaying it into the database, and exporting what a human must look at.

"Spool directory" is the logger's ``spool_dir``: its journal segments, dead letters,
quarantined bytes and spool files of earlier versions. Replay only ever touches segments of
loggers that are gone (a live logger's segments are its own).
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from mlpred_cli.capture.journal import (
    OwnerLock,
    claimed_orphans,
    open_private,
    segment_files,
    segment_owner,
)
from mlpred_cli.capture.journal_reader import quarantine_files, read_segment
from mlpred_cli.capture.journal_records import BadRegion, scan
from mlpred_cli.capture.prediction_rows import DuplicateTracker, build_rows, row_from_json
from mlpred_cli.capture.spool import DEAD_LETTER_NAME, Spool, count_lines
from mlpred_cli.capture.spool_keys import default_spool_dir, legacy_spool_dirs
from mlpred_cli.config import WriterSettings
from mlpred_cli.errors import InputError
from mlpred_cli.store.driver_errors import database_errors, is_row_specific
from mlpred_cli.store.importance_snapshots import write_snapshot
from mlpred_cli.store.prediction_row import Row
from mlpred_cli.store.prediction_writes import write_isolating
from mlpred_cli.store.source import DatabaseSource, database_url, opened

_REPLAYING_PREFIX = "dead-letter.replaying-"

#: Drivers the write paths speak to directly (binary COPY needs psycopg 3).
_WRITER_DRIVERS = frozenset({"psycopg", "pysqlite"})


@dataclass(frozen=True)
class SpoolStatus:
    """What waits in a spool directory.

    ``files``/``rows``/``bytes``: journal segments of loggers that are gone, plus spool files
    of earlier versions (what ``replay_spool`` would write); ``live_files``/``live_rows``:
    segments of loggers still running (not replayable from outside); ``dead_lettered``: rows
    the database rejected; ``quarantined_files``/``quarantined_bytes``/``quarantined_lines``:
    what could not be read (``export_spool`` writes it out). ``directory``: the database's
    spool directory; ``directories``: every directory counted (it first, then those older
    spellings of the URL keyed).
    """

    directory: Path
    files: int
    rows: int
    bytes: int
    live_files: int
    live_rows: int
    dead_lettered: int
    quarantined_files: int
    quarantined_bytes: int
    quarantined_lines: int
    directories: tuple[Path, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """The status as a JSON-ready mapping."""
        return {
            "directory": str(self.directory),
            "files": self.files,
            "rows": self.rows,
            "bytes": self.bytes,
            "live_files": self.live_files,
            "live_rows": self.live_rows,
            "dead_lettered": self.dead_lettered,
            "quarantined_files": self.quarantined_files,
            "quarantined_bytes": self.quarantined_bytes,
            "quarantined_lines": self.quarantined_lines,
            "directories": [str(path) for path in self.directories or (self.directory,)],
        }


@dataclass(frozen=True)
class ReplayResult:
    """What a replay wrote, rejected, and left behind."""

    replayed: int
    dead_lettered: int
    quarantined_regions: int
    remaining: SpoolStatus


@dataclass(frozen=True)
class ExportResult:
    """What ``export_spool`` wrote."""

    path: Path
    dead_letters: int
    quarantined_items: int


def writable_source(database: DatabaseSource) -> DatabaseSource:
    """``database`` as capture writes through it: an ``Engine`` on a driver the write paths
    cannot use (psycopg 2, say) is replaced by the normalized URL of its database, for which
    a new engine is made (and disposed); everything else is returned as is."""
    if isinstance(database, Engine) and database.dialect.driver not in _WRITER_DRIVERS:
        return database_url(database)
    return database


def spool_for(database: DatabaseSource = None, spool_dir: str | Path | None = None) -> Spool:
    """The spool a logger on this database uses (or the directory given)."""
    if spool_dir is not None:
        return Spool(Path(spool_dir))
    return Spool(default_spool_dir(database_url(database)))


def spools_for(database: DatabaseSource = None, spool_dir: str | Path | None = None) -> list[Spool]:
    """``spool_for``'s spool, then those other spellings of the database's URL keyed before
    (``capture.spool.legacy_spool_dirs``): what ``mlpred spool`` reads and replays."""
    spool = spool_for(database, spool_dir)
    if spool_dir is not None:
        return [spool]
    return [spool, *(Spool(path) for path in legacy_spool_dirs(database_url(database)))]


def spool_status(
    database: DatabaseSource = None, spool_dir: str | Path | None = None
) -> SpoolStatus:
    """Segments, rows and bytes waiting, rows dead-lettered, and what was quarantined (in the
    database's spool directory and any an older spelling of its URL keyed)."""
    return _combined([_status(spool) for spool in spools_for(database, spool_dir)])


def _combined(statuses: list[SpoolStatus]) -> SpoolStatus:
    """One status adding up several directories' (named by the first)."""
    first = statuses[0]
    return SpoolStatus(
        directory=first.directory,
        files=sum(status.files for status in statuses),
        rows=sum(status.rows for status in statuses),
        bytes=sum(status.bytes for status in statuses),
        live_files=sum(status.live_files for status in statuses),
        live_rows=sum(status.live_rows for status in statuses),
        dead_lettered=sum(status.dead_lettered for status in statuses),
        quarantined_files=sum(status.quarantined_files for status in statuses),
        quarantined_bytes=sum(status.quarantined_bytes for status in statuses),
        quarantined_lines=sum(status.quarantined_lines for status in statuses),
        directories=tuple(status.directory for status in statuses),
    )


def _status(spool: Spool) -> SpoolStatus:
    directory = spool.directory
    files = rows = size = live_files = live_rows = 0
    live_owners: dict[str, bool] = {}
    for path in segment_files(directory):
        owner = segment_owner(path)
        if owner not in live_owners:
            claim = OwnerLock.acquire(directory, owner)
            live_owners[owner] = claim is None
            if claim is not None:
                claim.release(delete=False)
        try:
            records = _count_records(path)
            length = path.stat().st_size
        except FileNotFoundError:
            continue
        if live_owners[owner]:
            live_files += 1
            live_rows += records
        else:
            files += 1
            rows += records
            size += length
    legacy = spool.status()
    replaying = sum(count_lines(path) for path in directory.glob(f"{_REPLAYING_PREFIX}*.jsonl"))
    quarantined = quarantine_files(directory)
    lines = sum(count_lines(path) for path in quarantined if path.suffix == ".jsonl")
    return SpoolStatus(
        directory=directory,
        files=files + legacy.files,
        rows=rows + legacy.rows,
        bytes=size + legacy.bytes,
        live_files=live_files,
        live_rows=live_rows,
        dead_lettered=legacy.dead_lettered + replaying,
        quarantined_files=len(quarantined),
        quarantined_bytes=sum(path.stat().st_size for path in quarantined),
        quarantined_lines=lines,
        directories=(directory,),
    )


def replay_spool(
    database: DatabaseSource = None,
    spool_dir: str | Path | None = None,
    *,
    dead_letters: bool = False,
) -> ReplayResult:
    """Write what loggers that are gone left in the spool directory into the database
    (idempotent on ``prediction_id``), deleting each segment once written.

    Rows the database rejects go to the dead-letter file; unreadable bytes to quarantine
    files. ``dead_letters=True`` also tries the dead-lettered rows again (those rejected again
    stay dead-lettered). Raises ``DatabaseUnavailable`` when the database cannot be reached
    (the segment being written is kept) and ``SchemaNotReady`` when it is not migrated. An
    ``Engine`` passed in is used, not disposed.
    """
    spools = spools_for(database, spool_dir)
    rejected: list[Row] = []
    replayed = quarantined = 0
    with opened(writable_source(database)) as engine, database_errors(engine.url):
        tracker = DuplicateTracker(WriterSettings.duplicate_window)
        # rows dead-lettered in any of the database's directories are not retried from a
        # segment (a logger may have dead-lettered a legacy segment's row in its own one)
        known_rejected = {pid for spool in spools for pid in spool.dead_lettered_ids()}
        for spool in spools:
            written, regions = _replay_directory(
                engine, spool, tracker, rejected, dead_letters, known_rejected
            )
            replayed += written
            quarantined += regions
    return ReplayResult(
        replayed=replayed,
        dead_lettered=len(rejected),
        quarantined_regions=quarantined,
        remaining=_combined([_status(spool) for spool in spools]),
    )


def _replay_directory(
    engine: Engine,
    spool: Spool,
    tracker: DuplicateTracker,
    rejected: list[Row],
    dead_letters: bool,
    rejected_before: set[uuid.UUID],
) -> tuple[int, int]:
    """``replay_spool`` on one spool directory; rows rejected are appended to ``rejected``,
    rows in ``rejected_before`` (dead-lettered already) are not written from segments.
    Returns the rows written and the regions quarantined."""
    replayed = quarantined = 0

    def dead_letter(row: Row, reason: str) -> None:
        spool.dead_letter(row, reason)
        rejected.append(row)

    with claimed_orphans(spool.directory) as orphans:
        for path in orphans:
            try:
                contents = read_segment(path)
            except FileNotFoundError:
                continue
            quarantined += contents.quarantined_regions
            chunk = WriterSettings.max_batch_rows
            undelivered = 0
            for store in (False, True):
                group = [
                    p
                    for p in contents.predictions
                    if p.store_payload is store and p.prediction_id not in rejected_before
                ]
                for start in range(0, len(group), chunk):
                    part = group[start : start + chunk]
                    built = build_rows(part, tracker, on_duplicate="mark", store_features=store)
                    result = write_isolating(engine, built.rows, dead_letter)
                    replayed += result.written
                    undelivered += len(result.undelivered)
            for snapshot in contents.snapshots:
                _write_or_dead_letter(engine, spool, snapshot.rows)
            if undelivered:  # a rejected row the dead-letter file refused: keep the segment
                raise InputError(
                    f"cannot write the dead-letter file in {spool.directory}; "
                    f"{path.name} is kept (free disk space and replay again)"
                )
            path.unlink(missing_ok=True)
    replayed += spool.replay(lambda rows: write_isolating(engine, rows, dead_letter).written)
    spool.replay_snapshots(lambda rows: write_snapshot(engine, rows), is_row_specific)
    if dead_letters:
        replayed += _replay_dead_letters(engine, spool)
    return replayed, quarantined


def _write_or_dead_letter(engine: Engine, spool: Spool, rows: list[dict[str, Any]]) -> None:
    try:
        write_snapshot(engine, rows)
    except Exception as error:
        if not is_row_specific(error):
            raise
        spool.dead_letter_snapshot(rows, str(error))


def _replay_dead_letters(engine: Engine, spool: Spool) -> int:
    """Try dead-lettered rows again; those rejected again are dead-lettered anew. Returns
    how many were written. A file being replayed is renamed first (a live logger's new
    rejections go to a fresh file meanwhile) and deleted only when every row in it is
    written or dead-lettered again; an interrupted replay's file is picked up next time."""
    current = spool.directory / DEAD_LETTER_NAME
    if current.exists():
        current.rename(spool.directory / f"{_REPLAYING_PREFIX}{time.time_ns()}.jsonl")
    written = 0
    for taken in sorted(spool.directory.glob(f"{_REPLAYING_PREFIX}*.jsonl")):
        offset = 0
        while True:  # a logger that had the old file open may still append: read until quiet
            records, offset = _dead_letter_records(taken, offset)
            if not records:
                break
            rows = [row_from_json(record["row"]) for record in records]
            result = write_isolating(engine, rows, spool.dead_letter)
            written += result.written
            if result.undelivered:
                raise InputError(
                    f"cannot write the dead-letter file in {spool.directory}; "
                    f"{taken.name} is kept (free disk space and replay again)"
                )
        taken.unlink(missing_ok=True)
    return written


def _dead_letter_records(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    complete = data[: data.rfind(b"\n") + 1]
    records = []
    for line in complete.splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # an unreadable dead letter stays readable for a human in the export
    return records, offset + len(complete)


def export_spool(
    out: str | Path, database: DatabaseSource = None, spool_dir: str | Path | None = None
) -> ExportResult:
    """Write the dead letters and everything quarantined to ``out`` as JSON lines (0600),
    one object per item with a ``kind``: ``dead_letter`` (the row and its error),
    ``quarantined_line`` (a spool line that could not be read, as text) or
    ``quarantined_bytes`` (unreadable journal bytes, base64). Raises ``InputError`` when
    ``out`` exists."""
    spools = spools_for(database, spool_dir)
    target = Path(out)
    try:
        fd = open_private(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        raise InputError(f"{target} exists already; choose a new file") from None
    except OSError as error:
        raise InputError(f"cannot create {target}: {error.strerror}") from None
    dead = quarantined = 0
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for spool in spools:
            for item in _dead_letter_items(spool.directory):
                handle.write(json.dumps(item) + "\n")
                dead += 1
            for item in _quarantined_items(spool.directory):
                handle.write(json.dumps(item) + "\n")
                quarantined += 1
    return ExportResult(target, dead, quarantined)


def _dead_letter_items(directory: Path) -> Iterator[dict[str, Any]]:
    path = directory / DEAD_LETTER_NAME
    if not path.exists():
        return
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                yield {"kind": "dead_letter_unreadable", "text": line.rstrip("\n")}
                continue
            yield {"kind": "dead_letter", **record}


def _quarantined_items(directory: Path) -> Iterator[dict[str, Any]]:
    for path in quarantine_files(directory):
        if path.suffix == ".jsonl":
            with path.open(encoding="utf-8", errors="replace") as handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        yield {
                            "kind": "quarantined_line",
                            "file": path.name,
                            "line": number,
                            "text": line.rstrip("\n"),
                        }
            continue
        data = path.read_bytes()
        yield {
            "kind": "quarantined_bytes",
            "file": path.name,
            "bytes": len(data),
            "base64": base64.b64encode(data).decode("ascii"),
        }


def _count_records(path: Path) -> int:
    return sum(1 for found in scan(path.read_bytes()) if not isinstance(found, BadRegion))
