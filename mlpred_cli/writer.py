"""BatchWriter: a bounded queue drained by one background thread that never loses a row.

The caller's path only appends to a deque. The writer thread builds rows for whole batches,
writes them in one transaction, retries transient failures with backoff (keeping order),
isolates rows the database rejects (dead-letter file), spills to the spool when the
database stays away long enough for ``max_pending`` to fill, and replays the spool when
the database is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from mlpred_cli import db
from mlpred_cli.config import WriterSettings
from mlpred_cli.console import PredictionReporter
from mlpred_cli.errors import MlpredError
from mlpred_cli.importance import write_snapshot
from mlpred_cli.pending import PendingPrediction
from mlpred_cli.rows import BuiltBatch, DuplicateTracker, Row, build_rows
from mlpred_cli.sinks import write_isolating
from mlpred_cli.spool import Spool

log = logging.getLogger("mlpred.writer")


@dataclass(frozen=True)
class WriterOptions(WriterSettings):
    """The tunable ``config.WriterSettings`` plus what one logger asks for."""

    on_duplicate: str = "mark"
    store_features: bool = False
    auto_migrate: bool = True


@dataclass
class WriterStats:
    """Counters since the writer started; ``pending`` is filled in when read."""

    logged: int = 0
    saved: int = 0
    duplicates: int = 0
    retried: int = 0
    spooled: int = 0
    replayed: int = 0
    dead_lettered: int = 0
    snapshots: int = 0
    lost: int = 0
    pending: int = 0
    batches: int = 0
    batch_seconds: float = 0.0
    last_error: str | None = None
    batch_sizes: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """The public counters (what ``MLPredictionLogger.stats()`` returns)."""
        return {
            "logged": self.logged,
            "saved": self.saved,
            "duplicates": self.duplicates,
            "retried": self.retried,
            "spooled": self.spooled,
            "replayed": self.replayed,
            "dead_lettered": self.dead_lettered,
            "importance_snapshots": self.snapshots,
            "lost": self.lost,
            "pending": self.pending,
            "batches": self.batches,
            "mean_batch_ms": (1000 * self.batch_seconds / self.batches) if self.batches else None,
            "last_error": self.last_error,
        }


class _Stopping(Exception):
    """Raised inside the retry loop when close() wants the writer to give up and spool."""


class BatchWriter:
    """Owns the queue, the writer thread, the database engine and the spool."""

    def __init__(
        self,
        engine: Engine,
        spool: Spool,
        options: WriterOptions,
        reporter: PredictionReporter | None = None,
    ) -> None:
        self._engine = engine
        self._spool = spool
        self._options = options
        self._reporter = reporter
        self._queue: deque[PendingPrediction] = deque()
        self._snapshots: deque[list[dict[str, Any]]] = deque()
        self._snapshots_submitted = 0
        self._snapshots_resolved = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._stats = WriterStats()
        self._resolved = 0  # queue items written, spooled, skipped or dead-lettered
        self._in_flight = 0
        self._duplicates = DuplicateTracker(options.duplicate_window)
        self._schema_ready = not options.auto_migrate
        self._stopping = False
        self._deadline = float("inf")
        self._closed = False
        self._spool_waiting = spool.has_files()
        self._thread = threading.Thread(target=self._run, name="mlpred-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ caller's side

    def submit(self, item: PendingPrediction) -> None:
        """Queue one prediction (the caller's path: an append and a counter)."""
        if self._closed:
            raise MlpredError("the logger is closed")
        with self._lock:
            self._queue.append(item)
            self._stats.logged += 1
            waiting = len(self._queue)
        if waiting >= self._options.batch_size and not self._wake.is_set():
            self._wake.set()

    def submit_snapshot(self, rows: list[dict[str, Any]]) -> None:
        """Queue one feature-importance snapshot (already validated and ranked)."""
        if self._closed:
            raise MlpredError("the logger is closed")
        with self._lock:
            self._snapshots.append(rows)
            self._snapshots_submitted += 1
        self._wake.set()

    def stats(self) -> dict[str, object]:
        """A snapshot of the counters."""
        with self._lock:
            self._stats.pending = len(self._queue) + self._in_flight
            return self._stats.as_dict()

    @property
    def batch_sizes(self) -> list[int]:
        """Sizes of the batches written so far (for diagnostics and log-test)."""
        return list(self._stats.batch_sizes)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is written (or spooled). False on timeout."""
        with self._lock:
            target = self._stats.logged
            snapshot_target = self._snapshots_submitted
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._progress:
            while self._resolved < target or self._snapshots_resolved < snapshot_target:
                if not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._progress.wait(0.1 if remaining is None else min(remaining, 0.1))
                self._wake.set()
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending within ``timeout`` seconds, spool the rest, stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._deadline = time.monotonic() + timeout
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout + 5.0)
        if self._thread.is_alive():  # stuck in a database call: keep what still waits
            leftover = self._take(len(self._queue))
            if leftover:
                built = build_rows(
                    leftover,
                    DuplicateTracker(self._options.duplicate_window),
                    on_duplicate=self._options.on_duplicate,
                    store_features=self._options.store_features,
                )
                self._spool.append(built.rows)
                self._stats.spooled += len(built.rows)
            log.error("writer still busy after %.1f s; %d rows spooled", timeout, len(leftover))
        self._engine.dispose()

    # ------------------------------------------------------------ writer thread

    def _take(self, limit: int) -> list[PendingPrediction]:
        with self._lock:
            count = min(limit, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight = count
        return batch

    def _resolve(self, count: int) -> None:
        with self._progress:
            self._resolved += count
            self._in_flight = 0
            self._progress.notify_all()

    def _run(self) -> None:
        options = self._options
        while True:
            if len(self._queue) < options.batch_size and not self._stopping:
                self._wake.wait(options.flush_interval_s)
            self._wake.clear()
            if self._spool_waiting and not self._stopping:
                self._replay_spool()
            batch = self._take(options.max_batch_rows)
            if batch:
                try:
                    self._process(batch)
                except Exception:  # e.g. the spool's disk is full: keep the thread alive
                    log.critical("writer lost a batch of %d predictions", len(batch), exc_info=True)
                    self._stats.lost += len(batch)
                finally:
                    self._resolve(len(batch))
            elif self._stopping and not self._snapshots:
                return
            self._write_snapshots()

    def _write_snapshots(self) -> None:
        """Write queued importance snapshots; one that fails goes to the spool at once."""
        while self._snapshots:
            rows = self._snapshots.popleft()
            try:
                self._ensure_schema()
                write_snapshot(self._engine, rows)
                self._stats.snapshots += 1
            except Exception as error:
                self._stats.last_error = db.describe_connection_error(error)
                self._spool.append_snapshot(rows)
                self._spool_waiting = True
                log.warning("feature-importance snapshot spooled: %s", self._stats.last_error)
            finally:
                with self._progress:
                    self._snapshots_resolved += 1
                    self._progress.notify_all()

    def _process(self, batch: list[PendingPrediction]) -> None:
        try:
            built = build_rows(
                batch,
                self._duplicates,
                on_duplicate=self._options.on_duplicate,
                store_features=self._options.store_features,
            )
        except Exception:  # a bug must not lose the batch: keep going row by row
            log.exception("building rows failed; retrying one prediction at a time")
            built = self._build_one_by_one(batch)
        self._stats.duplicates += built.skipped_duplicates + built.marked_duplicates
        if self._reporter is not None:
            try:
                self._reporter.predictions(built.rows)
            except Exception:  # printing must never cost a row
                log.exception("could not render predictions")
        self._persist(built.rows)

    def _build_one_by_one(self, batch: Sequence[PendingPrediction]) -> BuiltBatch:
        rows: list[Row] = []
        skipped = marked = 0
        for item in batch:
            try:
                built = build_rows(
                    [item],
                    self._duplicates,
                    on_duplicate=self._options.on_duplicate,
                    store_features=self._options.store_features,
                )
            except Exception as error:
                log.error("prediction %s could not be built: %s", item.prediction_id, error)
                self._stats.dead_lettered += 1
                self._spool.dead_letter(_minimal_row(item), f"build failed: {error}")
                continue
            rows.extend(built.rows)
            skipped += built.skipped_duplicates
            marked += built.marked_duplicates
        return BuiltBatch(rows=rows, skipped_duplicates=skipped, marked_duplicates=marked)

    def _persist(self, rows: list[Row]) -> None:
        """Write with retries; spool when closing or when the queue has reached max_pending."""
        delay = self._options.retry_initial_s
        while rows:
            try:
                started = time.perf_counter()
                self._ensure_schema()
                saved = self._write_isolating(rows)
                elapsed = time.perf_counter() - started
                self._stats.saved += saved
                self._stats.batches += 1
                self._stats.batch_seconds += elapsed
                self._stats.batch_sizes.append(len(rows))
                self._stats.last_error = None
                if self._reporter is not None:
                    try:
                        self._reporter.batch_saved(len(rows), elapsed)
                    except Exception:
                        log.exception("could not report a saved batch")
                return
            except Exception as error:
                self._stats.retried += 1
                self._stats.last_error = db.describe_connection_error(error)
                log.warning("write failed (%s); retrying", self._stats.last_error)
                if self._must_spool():
                    self._spill(rows)
                    return
                try:
                    self._backoff(delay)
                except _Stopping:
                    self._spill(rows)
                    return
                delay = min(delay * 2, self._options.retry_max_s)

    def _must_spool(self) -> bool:
        past_deadline = self._stopping and time.monotonic() >= self._deadline
        return past_deadline or len(self._queue) >= self._options.max_pending

    def _backoff(self, delay: float) -> None:
        """Sleep ``delay`` seconds in short slices, so a full queue or close() cuts it short."""
        end = time.monotonic() + delay
        while (remaining := end - time.monotonic()) > 0:
            if self._must_spool():
                raise _Stopping
            time.sleep(min(remaining, 0.05))

    def _spill(self, rows: list[Row]) -> None:
        """Spool this batch and everything queued behind it, oldest first."""
        self._spool.append(rows)
        self._stats.spooled += len(rows)
        self._spool_waiting = True
        while True:
            queued = self._take(self._options.max_batch_rows)
            if not queued:
                break
            built = build_rows(
                queued,
                self._duplicates,
                on_duplicate=self._options.on_duplicate,
                store_features=self._options.store_features,
            )
            self._stats.duplicates += built.skipped_duplicates + built.marked_duplicates
            self._spool.append(built.rows)
            self._stats.spooled += len(built.rows)
            self._resolve(len(queued))
        log.warning("database unavailable: rows spooled to %s", self._spool.directory)

    def _write_isolating(self, rows: Sequence[Row]) -> int:
        """Write rows, dead-lettering those the database rejects; returns rows saved."""
        return len(rows) - write_isolating(self._engine, rows, self._dead_letter)

    def _dead_letter(self, row: Row, reason: str) -> None:
        self._spool.dead_letter(row, reason)
        self._stats.dead_lettered += 1
        log.error("row %s rejected by the database: %s", row[0], reason)

    def _ensure_schema(self) -> None:
        if not self._schema_ready:
            db.ensure_schema(self._engine)
            self._schema_ready = True

    def _replay_spool(self) -> None:
        try:
            self._ensure_schema()
            replayed = self._spool.replay(self._write_isolating)
            self._stats.snapshots += self._spool.replay_snapshots(
                lambda rows: write_snapshot(self._engine, rows)
            )
        except Exception as error:
            self._stats.last_error = db.describe_connection_error(error)
            return
        self._stats.replayed += replayed
        self._spool_waiting = self._spool.has_files()
        if replayed:
            log.warning("replayed %d spooled rows", replayed)


def _minimal_row(item: PendingPrediction) -> Row:
    """A row holding only the identity of a prediction that could not be built."""
    from mlpred_cli.rows import WRITE_COLUMNS

    values: dict[str, object] = {
        "prediction_id": item.prediction_id,
        "symbol": item.symbol,
        "model_version": item.model_version,
    }
    return tuple(values.get(name) for name in WRITE_COLUMNS)
