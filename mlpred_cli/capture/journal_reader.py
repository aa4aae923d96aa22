"""Reading journal segments back: every intact record, with bad bytes set aside.

A torn tail (the process died inside a ``write``) or a corrupted region costs only the bytes
that hold no intact frame: they are copied to a ``quarantine-<segment>-<offset>.bin`` file
(0600) and the records after them are still read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlpred_cli.capture.journal import open_private
from mlpred_cli.capture.journal_records import BadRegion, SnapshotRecord, decode, scan
from mlpred_cli.capture.pending_prediction import PendingPrediction

log = logging.getLogger("mlpred.journal")

QUARANTINE_PREFIX = "quarantine-"


@dataclass
class SegmentContents:
    """The records of one segment, and how many bad regions were quarantined."""

    predictions: list[PendingPrediction]
    snapshots: list[SnapshotRecord]
    quarantined_regions: int
    quarantined_bytes: int


def read_segment(path: Path, quarantine_dir: Path | None = None) -> SegmentContents:
    """Every intact record of a segment, in order; bad regions are written to quarantine
    files in ``quarantine_dir`` (default: the segment's directory).

    Raises ``FileNotFoundError`` when the segment is gone (another replayer took it).
    """
    data = path.read_bytes()
    contents = SegmentContents([], [], 0, 0)
    target = path.parent if quarantine_dir is None else quarantine_dir
    for found in scan(data):
        if isinstance(found, BadRegion):
            _quarantine(target, path, found.offset, found.data)
            contents.quarantined_regions += 1
            contents.quarantined_bytes += len(found.data)
            continue
        try:
            record = decode(found.payload)
        except (ValueError, UnicodeDecodeError) as error:
            log.error("journal record at %s:%d cannot be read: %s", path.name, found.offset, error)
            _quarantine(target, path, found.offset, found.payload)
            contents.quarantined_regions += 1
            contents.quarantined_bytes += len(found.payload)
            continue
        if isinstance(record, SnapshotRecord):
            contents.snapshots.append(record)
        else:
            contents.predictions.append(record)
    return contents


def _quarantine(directory: Path, segment: Path, offset: int, data: bytes) -> None:
    """Keep bytes that hold no readable record, for a human (or ``spool export``)."""
    name = f"{QUARANTINE_PREFIX}{segment.stem}-{offset:012d}.bin"
    log.error(
        "%d unreadable bytes at %s:%d quarantined as %s", len(data), segment.name, offset, name
    )
    fd = open_private(directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def quarantine_files(directory: Path) -> list[Path]:
    """Quarantined journal bytes and spool files in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(directory.glob(f"{QUARANTINE_PREFIX}*"))


def recoverable(path: Path) -> Iterator[PendingPrediction | SnapshotRecord]:
    """Records that can still be read from a quarantined ``.bin`` file (an intact frame
    inside bytes that were set aside), for export."""
    for found in scan(path.read_bytes()):
        if isinstance(found, BadRegion):
            continue
        try:
            yield decode(found.payload)
        except (ValueError, UnicodeDecodeError):
            continue
