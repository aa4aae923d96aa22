"""The archive on disk: one Parquet file per UTC day in a hive layout, with its manifest.

``DIR/ml_predictions/date=YYYY-MM-DD/part-0.parquet`` holds the day's rows in id order, one
column per ``ml_predictions`` column (``ARROW_SCHEMA``: int64/int32/float64/bool, text,
``prediction_id`` as UUID text, times as ``timestamp[us, UTC]``, the JSON payloads as JSON
text), zstd-compressed. ``_manifest.json`` beside it records the row count, the SHA-256 of
the file and a content digest (``ContentDigest``) of the rows, so a file can be verified
without the database. Names starting with ``_`` or ``.`` (the manifest, temporary files) are
not data to pyarrow's dataset reader.

A file is written to a temporary name in the same directory, fsynced, read back and checked
(row count and content digest) before it is renamed into place; the manifest follows the
same way. ``day_file(...)`` tells whether a day's file is *verified* (its SHA-256 matches the
manifest).

Columns added to ``ml_predictions`` after the first archives (``ADDED_COLUMNS``) may be
absent from a file written before them: such a file still verifies (its digest covers the
columns it has) and reads back with those columns null.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlpred_cli.errors import MlpredError
from mlpred_cli.store.archive_sql import ARCHIVE_COLUMNS, ARROW_SCHEMA

TABLE_DIRECTORY = "ml_predictions"
FILE_NAME = "part-0.parquet"
MANIFEST_NAME = "_manifest.json"
MANIFEST_FORMAT = 1
COMPRESSION = "zstd"

#: Rows per Parquet row group (and per chunk read from the database).
ROW_GROUP_ROWS = 50_000

_ZEROS: dict[str, Any] = {"int64": 0, "int32": 0, "float64": 0.0, "bool": False}

#: Columns that archives written before them lack (migration 0006 added the attributions).
ADDED_COLUMNS: tuple[str, ...] = ("feature_attributions",)
#: The schema of an archive file written before ``ADDED_COLUMNS`` existed.
LEGACY_SCHEMA = pa.schema([field for field in ARROW_SCHEMA if field.name not in ADDED_COLUMNS])


def day_directory(root: Path, day: dt.date) -> Path:
    """``root/ml_predictions/date=YYYY-MM-DD``."""
    return root / TABLE_DIRECTORY / f"date={day.isoformat()}"


def archive_days(root: Path) -> list[dt.date]:
    """The days that have a directory under ``root/ml_predictions``, oldest first."""
    days = []
    for entry in (root / TABLE_DIRECTORY).glob("date=*"):
        try:
            days.append(dt.date.fromisoformat(entry.name.removeprefix("date=")))
        except ValueError:
            continue
    return sorted(days)


class ContentDigest:
    """SHA-256 of the rows' values, independent of how they are split into batches and of
    the bytes behind null slots: per column, one hash of the validity, one of the values
    (nulls as zero / empty text) and, for text, one of the lengths.

    ``columns`` (default: every archive column) are the columns digested, in
    ``ARCHIVE_COLUMNS`` order: a file without ``ADDED_COLUMNS`` is digested over the
    columns it has, as it was when written."""

    def __init__(self, columns: Sequence[str] | None = None) -> None:
        self.rows = 0
        wanted = None if columns is None else set(columns)
        self._columns = [
            (name, kind) for name, kind in ARCHIVE_COLUMNS if wanted is None or name in wanted
        ]
        self._hashes = [
            (hashlib.sha256(), hashlib.sha256(), hashlib.sha256()) for _ in self._columns
        ]

    def update(self, batch: pa.RecordBatch) -> None:
        """Add the rows of ``batch`` (holding at least the digested columns)."""
        self.rows += batch.num_rows
        for (name, kind), hashes in zip(self._columns, self._hashes, strict=True):
            array = batch.column(name)
            validity, values, lengths = hashes
            validity.update(np.asarray(pc.is_valid(array), dtype=np.bool_).tobytes())
            if kind == "timestamp":
                array = array.cast(pa.int64())
                kind = "int64"
            if kind in _ZEROS:
                filled = pc.fill_null(array, pa.scalar(_ZEROS[kind], type=array.type))
                values.update(np.asarray(filled.to_numpy(zero_copy_only=False)).tobytes())
                continue
            filled = pc.fill_null(array, "")
            offsets = np.frombuffer(filled.buffers()[1], dtype=np.int32)
            offsets = offsets[filled.offset : filled.offset + len(filled) + 1]
            lengths.update(np.diff(offsets).astype(np.int64).tobytes())
            data = filled.buffers()[2]
            if data is not None and len(filled):
                values.update(memoryview(data)[int(offsets[0]) : int(offsets[-1])])

    def hexdigest(self) -> str:
        """The digest of every row added so far."""
        total = hashlib.sha256(f"rows={self.rows}".encode())
        for (name, kind), hashes in zip(self._columns, self._hashes, strict=True):
            total.update(f"|{name}:{kind}:".encode())
            total.update(":".join(h.hexdigest() for h in hashes).encode())
        return total.hexdigest()


@dataclass(frozen=True)
class DayFile:
    """A day's archive file as found on disk."""

    day: dt.date
    directory: Path
    rows: int
    file_sha256: str
    content_sha256: str
    bytes: int
    verified: bool
    """True when the manifest matches the file (SHA-256 and row count)."""

    @property
    def path(self) -> Path:
        """The Parquet file."""
        return self.directory / FILE_NAME


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The day's manifest, or None when there is none or it cannot be parsed."""
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def day_file(root: Path, day: dt.date) -> DayFile | None:
    """The day's file and whether its manifest vouches for it; None when there is no file."""
    directory = day_directory(root, day)
    path = directory / FILE_NAME
    if not path.is_file():
        return None
    manifest = read_manifest(directory) or {}
    sha = _sha256_of(path)
    verified = manifest.get("file_sha256") == sha and manifest.get("day") == day.isoformat()
    return DayFile(
        day=day,
        directory=directory,
        rows=int(manifest.get("rows", -1)) if verified else -1,
        file_sha256=sha,
        content_sha256=str(manifest.get("content_sha256", "")) if verified else "",
        bytes=path.stat().st_size,
        verified=verified,
    )


def file_columns(path: Path) -> list[str]:
    """The archive columns a Parquet file holds. Raises ``MlpredError`` when it cannot be
    read or its schema is neither ``ARROW_SCHEMA`` nor ``LEGACY_SCHEMA``."""
    try:
        schema = pq.ParquetFile(path).schema_arrow
    except (OSError, pa.ArrowException) as error:
        raise MlpredError(f"cannot read archive file {path}: {error}") from None
    if not (schema.equals(ARROW_SCHEMA) or schema.equals(LEGACY_SCHEMA)):
        raise MlpredError(f"archive file {path} does not have the ml_predictions schema")
    return list(schema.names)


def read_back(path: Path) -> tuple[int, str]:
    """Row count and content digest of a Parquet file, read batch by batch. Raises
    ``MlpredError`` when it cannot be read or its schema is not ``ARROW_SCHEMA`` (or
    ``LEGACY_SCHEMA``, for a file written before ``ADDED_COLUMNS``)."""
    digest = ContentDigest(file_columns(path))
    try:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=ROW_GROUP_ROWS):
            digest.update(batch)
    except (OSError, pa.ArrowException) as error:
        raise MlpredError(f"cannot read archive file {path}: {error}") from None
    return digest.rows, digest.hexdigest()


def conformed(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A file's record batch as ``ARROW_SCHEMA``: columns it lacks (``ADDED_COLUMNS``, in a
    file written before them) are null."""
    if batch.schema.equals(ARROW_SCHEMA):
        return batch
    arrays = [
        batch.column(field.name)
        if field.name in batch.schema.names
        else pa.nulls(batch.num_rows, type=field.type)
        for field in ARROW_SCHEMA
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=ARROW_SCHEMA)


def iter_file_batches(path: Path) -> Iterable[pa.RecordBatch]:
    """The record batches of a day's file as ``ARROW_SCHEMA``, a row group at a time."""
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=ROW_GROUP_ROWS):
        yield conformed(batch)


@dataclass(frozen=True)
class WrittenDay:
    """A day's file written, read back and verified, with its manifest in place."""

    day: dt.date
    directory: Path
    rows: int
    bytes: int
    file_sha256: str
    content_sha256: str
    ids: np.ndarray[Any, np.dtype[np.int64]]
    """The ids of its rows, ascending."""


def write_day(root: Path, day: dt.date, batches: Iterable[pa.RecordBatch]) -> WrittenDay:
    """Write ``batches`` (rows of ``day`` in id order) as the day's file and manifest.

    The file goes to a temporary name, is fsynced, read back and compared (row count and
    content digest) with what was written, then renamed into place; the manifest follows.
    A failure leaves any earlier file of the day and its manifest as they were, or (when it
    happens between the two renames) a newer file holding every row of the earlier one.
    Raises ``MlpredError`` when the directory cannot be written or the read-back differs.
    """
    directory = day_directory(root, day)
    temporary = directory / f".{FILE_NAME}.tmp"
    digest = ContentDigest()
    ids: list[np.ndarray[Any, np.dtype[np.int64]]] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(
            temporary, ARROW_SCHEMA, compression=COMPRESSION, write_statistics=True
        ) as writer:
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                writer.write_batch(batch, row_group_size=ROW_GROUP_ROWS)
                digest.update(batch)
                ids.append(batch.column("id").to_numpy(zero_copy_only=False).astype(np.int64))
        with temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
        rows, content = read_back(temporary)
        if rows != digest.rows or content != digest.hexdigest():
            raise MlpredError(
                f"archive file for {day} read back differently from what was written "
                f"({rows} rows, expected {digest.rows})"
            )
        sha = _sha256_of(temporary)
        size = temporary.stat().st_size
        temporary.replace(directory / FILE_NAME)
        _fsync_directory(directory)
        manifest = {
            "format": MANIFEST_FORMAT,
            "table": "ml_predictions",
            "day": day.isoformat(),
            "file": FILE_NAME,
            "rows": rows,
            "bytes": size,
            "file_sha256": sha,
            "content_sha256": content,
            "compression": COMPRESSION,
            "written_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        manifest_temporary = directory / f".{MANIFEST_NAME}.tmp"
        with manifest_temporary.open("w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        manifest_temporary.replace(directory / MANIFEST_NAME)
        _fsync_directory(directory)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise MlpredError(f"cannot write the archive of {day} in {directory}: {error}") from None
    all_ids = np.concatenate(ids) if ids else np.empty(0, dtype=np.int64)
    return WrittenDay(day, directory, rows, size, sha, content, np.sort(all_ids))
