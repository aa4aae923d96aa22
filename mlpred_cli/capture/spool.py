"""The spool directory's files besides the journal: dead letters, and spool files of
earlier versions.

``dead-letter.jsonl`` keeps rows the database rejected, each with its error, for a human to
look at (``mlpred spool replay --dead-letters`` tries them again once the cause is fixed).
Files named ``spool-*.jsonl`` (built rows as JSON lines, written by mlpred before the
journal) are still replayed; a line that cannot be read goes to a ``quarantine-*`` file of
its own and the rest of the file is replayed. Files are created 0600 in a 0700 directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpred_cli.capture.journal import ensure_private_directory, fsync_directory, open_private
from mlpred_cli.capture.journal_records import snapshot_from_json, snapshot_to_json
from mlpred_cli.capture.prediction_rows import row_from_json, row_to_json
from mlpred_cli.capture.spool_keys import default_spool_dir as default_spool_dir
from mlpred_cli.capture.spool_keys import legacy_spool_dirs as legacy_spool_dirs
from mlpred_cli.capture.spool_keys import spool_identity as spool_identity
from mlpred_cli.store.driver_errors import describe_error
from mlpred_cli.store.prediction_row import Row

log = logging.getLogger("mlpred.spool")

SPOOL_GLOB = "spool-*.jsonl"
SNAPSHOT_GLOB = "importance-*.json"
DEAD_LETTER_NAME = "dead-letter.jsonl"
REPLAY_CHUNK_ROWS = 5_000


@dataclass(frozen=True)
class SpoolStatus:
    """What waits in a spool directory."""

    directory: Path
    files: int
    rows: int
    bytes: int
    dead_lettered: int


class Spool:
    """Appends rows to spool files and replays them; safe to use from several threads."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()

    def _ensure_directory(self) -> None:
        ensure_private_directory(self.directory)

    def _write_durably(self, prefix: str, suffix: str, text_lines: Iterator[str]) -> Path:
        """Write a new file atomically: a uniquely named partial file, fsync, rename, fsync
        the directory. Only complete files ever carry the final name."""
        self._ensure_directory()
        name = f"{prefix}-{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:12]}{suffix}"
        final = self.directory / name
        partial = self.directory / f".{name}.partial"
        try:
            fd = open_private(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                for line in text_lines:
                    handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            partial.rename(final)
        except BaseException:
            partial.unlink(missing_ok=True)  # e.g. a full disk: leave no half file behind
            raise
        fsync_directory(self.directory)
        return final

    def append(self, rows: Sequence[Row]) -> Path | None:
        """Write rows durably to a new spool file; returns its path."""
        if not rows:
            return None
        with self._lock:
            lines = (json.dumps(row_to_json(row)) + "\n" for row in rows)
            return self._write_durably("spool", ".jsonl", lines)

    def append_snapshot(self, rows: Sequence[dict[str, Any]]) -> Path:
        """Keep one feature-importance snapshot the database could not take (one file)."""
        with self._lock:
            return self._write_durably("importance", ".json", iter([snapshot_to_json(rows)]))

    def dead_letter_snapshot(self, rows: Sequence[dict[str, Any]], error: str) -> Path:
        """Keep a snapshot the database rejected, with the reason, for a human to look at."""
        with self._lock:
            payload = json.dumps({"error": error, "rows": json.loads(snapshot_to_json(rows))})
            return self._write_durably("dead-importance", ".json", iter([payload]))

    def snapshot_files(self) -> list[Path]:
        """Spooled feature-importance snapshots, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(SNAPSHOT_GLOB))

    def replay_snapshots(
        self,
        write: Callable[[Sequence[dict[str, Any]]], object],
        rejected: Callable[[BaseException], bool],
    ) -> int:
        """Hand every spooled snapshot to ``write``, deleting each file once written.

        A snapshot the database rejects (``rejected(error)`` is true) moves to a
        ``dead-importance-*`` file; an unreadable file is quarantined. Returns how many
        snapshots were written.
        """
        replayed = 0
        for path in self.snapshot_files():
            try:
                records = snapshot_from_json(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue  # another process replayed it
            except (ValueError, KeyError, TypeError) as error:
                self._quarantine(path, error)
                continue
            try:
                write(records)
            except Exception as error:
                if not rejected(error):
                    raise
                self.dead_letter_snapshot(records, describe_error(error))
            else:
                replayed += 1
            path.unlink(missing_ok=True)
        return replayed

    def dead_letter(self, row: Row, error: str) -> None:
        """Keep a row the database rejected, with the reason, in the dead-letter file."""
        with self._lock:
            self._ensure_directory()
            record = {"error": error, "logged_at": time.time(), "row": row_to_json(row)}
            fd = open_private(
                self.directory / DEAD_LETTER_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND
            )
            with os.fdopen(fd, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
                handle.flush()
                os.fsync(handle.fileno())

    def dead_lettered_ids(self) -> set[uuid.UUID]:
        """``prediction_id``s in the dead-letter files (the current one and any being
        replayed): a journal replayed after a crash skips them instead of dead-lettering them
        twice."""
        ids: set[uuid.UUID] = set()
        if not self.directory.is_dir():
            return ids
        paths = [self.directory / DEAD_LETTER_NAME]
        paths += sorted(self.directory.glob("dead-letter.replaying-*.jsonl"))
        for path in paths:
            try:
                with path.open(encoding="utf-8", errors="replace") as handle:
                    for line in handle:
                        try:
                            ids.add(uuid.UUID(json.loads(line)["row"]["prediction_id"]))
                        except (ValueError, KeyError, TypeError):
                            continue
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                continue
        return ids

    def files(self) -> list[Path]:
        """Spool files, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(SPOOL_GLOB))

    def has_files(self) -> bool:
        """True when something waits to be replayed."""
        return bool(self.files()) or bool(self.snapshot_files())

    def status(self) -> SpoolStatus:
        """Counts of files, rows and bytes waiting, and rows dead-lettered."""
        files = self.files()
        rows = sum(count_lines(path) for path in files)
        size = sum(path.stat().st_size for path in files)
        dead = self.directory / DEAD_LETTER_NAME
        dead_count = count_lines(dead) if dead.exists() else 0
        return SpoolStatus(self.directory, len(files), rows, size, dead_count)

    def replay(
        self,
        write: Callable[[Sequence[Row]], object],
        on_rows: Callable[[int], None] | None = None,
    ) -> int:
        """Hand every row of the spool files of earlier versions to ``write`` in order,
        deleting each file once written.

        ``write`` must be idempotent (the database skips ``prediction_id``s it has), so a
        crash between writing and deleting never duplicates rows. A line that cannot be read
        goes to ``quarantine-<file>`` and the file's other rows are replayed. ``on_rows``
        hears each chunk's row count as it is written. Returns rows replayed.
        """
        replayed = 0
        for path in self.files():
            bad: list[str] = []
            try:
                for chunk in _read_chunks(path, REPLAY_CHUNK_ROWS, bad):
                    write(chunk)
                    replayed += len(chunk)
                    if on_rows is not None:
                        on_rows(len(chunk))
            except FileNotFoundError:
                continue  # another process replayed it
            if bad:
                self._quarantine_lines(path, bad)
            path.unlink(missing_ok=True)
        return replayed

    def _quarantine_lines(self, path: Path, lines: list[str]) -> None:
        target = path.with_name(f"quarantine-{path.name}")
        log.error("%d unreadable lines of %s moved to %s", len(lines), path.name, target.name)
        fd = open_private(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.writelines(line if line.endswith("\n") else line + "\n" for line in lines)
            handle.flush()
            os.fsync(handle.fileno())

    def _quarantine(self, path: Path, error: BaseException) -> None:
        target = path.with_name(f"quarantine-{path.name}")
        log.error("unreadable spool file %s moved to %s: %s", path.name, target.name, error)
        with contextlib.suppress(FileNotFoundError):  # another replayer moved it first
            path.rename(target)


def count_lines(path: Path) -> int:
    """Non-blank lines of a JSON-lines file."""
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def _read_chunks(path: Path, size: int, bad: list[str]) -> Iterator[list[Row]]:
    """Rows of a spool file in chunks; lines that cannot be read are appended to ``bad``."""
    chunk: list[Row] = []
    with path.open(encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                chunk.append(row_from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                bad.append(line)
                continue
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk
