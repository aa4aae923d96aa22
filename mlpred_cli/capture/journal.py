"""The write-ahead journal: every accepted prediction is in a local segment file before
``log_prediction`` returns, and stays there until the database has committed it.

Layout of a journal directory (0700; files 0600):

- ``journal-<owner>-<seq>.seg``: segments, appended with one ``write`` per record (framed and
  checksummed, see ``journal_records``). ``<owner>`` names the logger that wrote it
  (creation time, pid, random suffix), so names sort oldest first.
- ``owner-<owner>.lock``: held with ``flock`` for the life of that logger. A segment whose
  owner's lock can be taken belongs to a process that is gone: it is an *orphan*, and the
  process that takes the lock (a new logger, ``mlpred spool replay``) holds it while it
  replays that owner's segments, so two replayers never work on the same orphan.
- ``quarantine-*.bin``: bytes of a segment that held no intact record (a torn write).

Durability: by default a record is handed to the operating system (``write``) before the
call returns, which survives a crash of the process, not of the machine. ``fsync="interval"``
syncs the active segment every ``fsync_interval_s`` (power loss costs at most that long);
``fsync="always"`` syncs every record (survives power loss; costs a disk flush per call).

A segment is deleted once every record in it is resolved (committed, dead-lettered, or a
skipped duplicate) and it is no longer the active one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

log = logging.getLogger("mlpred.journal")

FsyncPolicy = Literal["none", "interval", "always"]
FSYNC_POLICIES: tuple[str, ...] = ("none", "interval", "always")
SEGMENT_GLOB = "journal-*.seg"
OWNER_PREFIX = "owner-"
QUARANTINE_GLOB = "quarantine-*"
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
#: Not a segment: a record that could not be journaled (it lives in memory only).
NOT_JOURNALED = -1


def ensure_private_directory(directory: Path) -> None:
    """Create ``directory`` and its missing parents with mode 0700; existing ones are kept."""
    if directory.is_dir():
        return
    missing = [directory, *(p for p in directory.parents if not p.exists())]
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=DIRECTORY_MODE)
            with contextlib.suppress(OSError):
                path.chmod(DIRECTORY_MODE)  # mkdir's mode is masked by the umask


def open_private(path: Path, flags: int) -> int:
    """``os.open`` with mode 0600 for a file it creates."""
    return os.open(path, flags | os.O_CLOEXEC, FILE_MODE)


def fsync_directory(directory: Path) -> None:
    """Make a create, rename or unlink in ``directory`` durable (best effort)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def segment_owner(path: Path) -> str:
    """The owner part of a segment's name (``journal-<owner>-<seq>.seg``)."""
    stem = path.name[len("journal-") : -len(".seg")]
    return stem.rpartition("-")[0]


@dataclass
class _Segment:
    """Bookkeeping of one segment this journal wrote."""

    number: int
    path: Path
    appended: int = 0
    resolved: int = 0
    sealed: bool = False
    evicted: bool = False  # its unresolved records were dropped from memory: replay from disk


@dataclass
class JournalCounters:
    """What the journal did since it opened."""

    records: int = 0
    bytes: int = 0
    failed_appends: int = 0
    deleted_segments: int = 0
    last_error: str | None = None
    errors: list[str] = field(default_factory=list)


class Journal:
    """Appends records to segments and deletes each segment once all its records resolve.

    ``append`` is the caller's path: one ``write`` (and an ``fsync`` under ``"always"``).
    Thread-safe.
    """

    def __init__(
        self,
        directory: Path,
        *,
        fsync: FsyncPolicy = "none",
        fsync_interval_s: float = 1.0,
        segment_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, got {fsync!r}")
        self.directory = directory
        self.fsync = fsync
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._segments: dict[int, _Segment] = {}
        self._next_number = 0
        self._active: _Segment | None = None
        self._fd: int | None = None
        self._size = 0
        self._dirty = False
        self._closed = False
        self.counters = JournalCounters()
        self.owner = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._owner_lock: OwnerLock | None = None
        with contextlib.suppress(OSError):  # an unusable directory fails each append instead
            self._open_directory()
        self._stop_sync = threading.Event()
        self._syncer: threading.Thread | None = None
        if fsync == "interval":
            self._syncer = threading.Thread(
                target=self._sync_loop, args=(fsync_interval_s,), name="mlpred-fsync", daemon=True
            )
            self._syncer.start()

    # ------------------------------------------------------------ writing

    def _open_directory(self) -> None:
        """Create the directory and take this owner's lock (once; raises ``OSError``)."""
        if self._owner_lock is not None:
            return
        ensure_private_directory(self.directory)
        lock = OwnerLock.acquire(self.directory, self.owner)
        if lock is None:  # cannot happen: the name is new
            raise OSError(f"cannot lock the journal owner file in {self.directory}")
        self._owner_lock = lock

    def append(self, record: bytes) -> int:
        """Write one framed record to the active segment; returns the segment's number.

        Raises ``OSError`` when it cannot be written (the segment is left as it was).
        """
        with self._lock:
            if self._closed:
                raise OSError("the journal is closed")
            segment, fd = self._writable()
            start = self._size
            try:
                _write_all(fd, record)
                if self.fsync == "always":
                    os.fsync(fd)
            except OSError as error:
                self._undo_partial_write(fd, start, error)
                raise
            self._size += len(record)
            self._dirty = True
            segment.appended += 1
            self.counters.records += 1
            self.counters.bytes += len(record)
            if self._size >= self._segment_bytes:
                self._seal_active()
            return segment.number

    def append_sealed(self, records: Iterable[bytes]) -> int:
        """Write records to a new segment of their own, synced and sealed (what memory-only
        mode does with rows it must put on disk); returns its number. Raises ``OSError``."""
        with self._lock:
            if self._closed:
                raise OSError("the journal is closed")
            self._open_directory()
            segment = self._new_segment()
            fd = open_private(segment.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND)
            count = 0
            try:
                for record in records:
                    _write_all(fd, record)
                    count += 1
                    self.counters.bytes += len(record)
                os.fsync(fd)
            except OSError:
                os.close(fd)
                segment.path.unlink(missing_ok=True)
                del self._segments[segment.number]
                raise
            os.close(fd)
            fsync_directory(self.directory)
            segment.appended = count
            segment.sealed = True
            self.counters.records += count
            return segment.number

    def _writable(self) -> tuple[_Segment, int]:
        if self._active is None or self._fd is None:
            self._open_directory()
            segment = self._new_segment()
            try:
                self._fd = open_private(
                    segment.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
                )
            except OSError:
                del self._segments[segment.number]
                raise
            self._active = segment
            self._size = 0
            if self.fsync != "none":
                fsync_directory(self.directory)
        return self._active, self._fd

    def _new_segment(self) -> _Segment:
        self._next_number += 1
        number = self._next_number
        path = self.directory / f"journal-{self.owner}-{number:08d}.seg"
        segment = _Segment(number, path)
        self._segments[number] = segment
        return segment

    def _undo_partial_write(self, fd: int, size: int, error: OSError) -> None:
        """Cut a torn record off the segment so later records follow intact ones."""
        self.counters.failed_appends += 1
        self.counters.last_error = str(error)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)

    def _seal_active(self) -> None:
        """Close the active segment; the next append starts a new one. Call with the lock."""
        segment, fd = self._active, self._fd
        self._active, self._fd = None, None
        if fd is not None:
            if self._dirty and self.fsync != "none":
                with contextlib.suppress(OSError):
                    os.fsync(fd)
            os.close(fd)
        self._dirty = False
        if segment is not None:
            segment.sealed = True
            self._delete_if_done(segment)

    def seal(self) -> None:
        """Seal the active segment now (before its records are evicted from memory)."""
        with self._lock:
            if not self._closed and self._active is not None:
                self._seal_active()

    def sync(self) -> None:
        """``fsync`` the active segment if it has unsynced records (on a duplicate of its
        descriptor, outside the lock, so appends never wait for the disk)."""
        with self._lock:
            if self._fd is None or not self._dirty:
                return
            try:
                fd = os.dup(self._fd)
            except OSError as error:
                self.counters.last_error = str(error)
                return
            self._dirty = False
        try:
            os.fsync(fd)
        except OSError as error:
            self.counters.last_error = str(error)
            with self._lock:
                self._dirty = True
        finally:
            os.close(fd)

    def _sync_loop(self, interval_s: float) -> None:
        while not self._stop_sync.wait(interval_s):
            self.sync()

    # ------------------------------------------------------------ resolving

    def resolve(self, counts: dict[int, int]) -> None:
        """Mark records resolved (``{segment number: how many}``); done segments are deleted."""
        with self._lock:
            if self._closed:  # a writer that outlived close(): the next logger replays it
                return
            for number, count in counts.items():
                segment = self._segments.get(number)
                if segment is None:
                    continue
                segment.resolved += count
                self._delete_if_done(segment)

    def evict(self, number: int) -> Path | None:
        """Mark a sealed segment as held on disk only (its records left memory); returns its
        path for the writer to replay, or None when it is not a sealed segment of ours."""
        with self._lock:
            segment = self._segments.get(number)
            if segment is None or not segment.sealed:
                return None
            segment.evicted = True
            return segment.path

    def is_sealed(self, number: int) -> bool:
        """True for a sealed segment of this journal."""
        segment = self._segments.get(number)
        return segment is not None and segment.sealed

    def discard(self, path: Path) -> None:
        """Delete a segment whose records were all replayed from disk."""
        with self._lock:
            for number, segment in list(self._segments.items()):
                if segment.path == path:
                    del self._segments[number]
        path.unlink(missing_ok=True)
        self.counters.deleted_segments += 1

    def _delete_if_done(self, segment: _Segment) -> None:
        if segment.sealed and not segment.evicted and segment.resolved >= segment.appended:
            with contextlib.suppress(FileNotFoundError):
                segment.path.unlink()
            self._segments.pop(segment.number, None)
            self.counters.deleted_segments += 1

    def unresolved(self) -> int:
        """Records written by this journal and not yet resolved."""
        with self._lock:
            return sum(max(s.appended - s.resolved, 0) for s in self._segments.values())

    # ------------------------------------------------------------ closing

    def close(self) -> int:
        """Sync and close the active segment, delete it if nothing in it is unresolved, and
        release the owner lock (what is left is an orphan the next logger replays). Returns
        how many records stay on disk."""
        self._stop_sync.set()
        with self._lock:
            if self._closed:
                return 0
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)  # a clean close leaves synced segments, whatever the policy
            self._dirty = False
            self._seal_active()
            remaining = sum(max(s.appended - s.resolved, 0) for s in self._segments.values())
            self._closed = True
        if self._owner_lock is not None:
            fsync_directory(self.directory)
            self._owner_lock.release(delete=not any(self._own_segment_files()))
        return remaining

    def _own_segment_files(self) -> Iterator[Path]:
        return self.directory.glob(f"journal-{self.owner}-*.seg")


class OwnerLock:
    """The ``flock`` on ``owner-<owner>.lock``: held by a live logger, or by whoever replays
    a dead logger's segments."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, directory: Path, owner: str) -> OwnerLock | None:
        """Take the owner's lock without waiting; None when a live process holds it."""
        try:  # imported here: the rest of mlpred imports where fcntl does not exist
            import fcntl
        except ImportError:
            raise OSError("the journal needs POSIX file locks (fcntl)") from None
        path = directory / f"{OWNER_PREFIX}{owner}.lock"
        while True:
            fd = open_private(path, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return None
            # Someone may have deleted the file between our open and flock (a cleaner that
            # had the lock): a lock on an unlinked file protects nothing, so start over.
            try:
                same = os.fstat(fd).st_ino == path.stat().st_ino
            except FileNotFoundError:
                same = False
            if same:
                return cls(path, fd)
            os.close(fd)

    def release(self, *, delete: bool) -> None:
        """Release the lock, deleting its file first when ``delete``."""
        if delete:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)


def segment_files(directory: Path) -> list[Path]:
    """Every segment in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(directory.glob(SEGMENT_GLOB))


@contextlib.contextmanager
def claimed_orphans(directory: Path, exclude: str | None = None) -> Iterator[list[Path]]:
    """The segments of loggers that are gone, oldest first, with their owners' locks held
    while the block runs (live loggers' segments are never included). ``exclude`` names an
    owner to leave alone (the caller's own journal). Owner lock files left without segments
    are removed on the way out."""
    claims: dict[str, OwnerLock] = {}
    orphans: list[Path] = []
    for path in segment_files(directory):
        owner = segment_owner(path)
        if owner == exclude:
            continue
        if owner not in claims:
            try:
                claim = OwnerLock.acquire(directory, owner)
            except OSError as error:
                log.error("cannot lock journal owner %s in %s: %s", owner, directory, error)
                continue
            if claim is None:
                continue  # a live logger's segment
            claims[owner] = claim
        orphans.append(path)
    try:
        yield orphans
    finally:
        for owner, claim in claims.items():
            left = any(directory.glob(f"journal-{owner}-*.seg"))
            claim.release(delete=not left)
        _remove_stale_owner_locks(directory, exclude, set(claims))


def _remove_stale_owner_locks(directory: Path, exclude: str | None, done: set[str]) -> None:
    """Delete lock files of loggers that are gone and left no segment (a killed process)."""
    for path in directory.glob(f"{OWNER_PREFIX}*.lock"):
        owner = path.name[len(OWNER_PREFIX) : -len(".lock")]
        if owner == exclude or owner in done or any(directory.glob(f"journal-{owner}-*.seg")):
            continue
        try:
            claim = OwnerLock.acquire(directory, owner)
        except OSError:
            continue
        if claim is not None:
            claim.release(delete=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
