"""BatchWriter: a bounded queue drained by a background thread that never loses a row.

The caller's path only appends to a deque. The writer thread builds rows for whole batches,
writes them in one transaction, retries transient failures with backoff (keeping order) and
isolates rows the database rejects (dead-letter file). A second thread keeps memory bounded:
whenever more than ``max_pending`` predictions wait (the database is away or slower than the
producers) it spills the oldest to the spool, which the writer replays, in order, before
newer rows once the database takes writes again. ``close()`` writes what it can within its
timeout and spools everything else, including a batch stuck in a database call.
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
from mlpred_cli.rows import WRITE_COLUMNS, BuiltBatch, DuplicateTracker, Row, build_rows
from mlpred_cli.sinks import is_row_specific, write_isolating
from mlpred_cli.spool import Spool

log = logging.getLogger("mlpred.writer")

#: Batch sizes remembered for diagnostics (older ones are forgotten).
BATCH_HISTORY = 1_000


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
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=BATCH_HISTORY))

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


class _GiveUp(Exception):
    """Raised inside the retry loop when close()'s deadline has passed: spool instead."""


class BatchWriter:
    """Owns the queue, the writer and spill threads, the database engine and the spool."""

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
        self._lock = threading.Lock()  # queue, counters and the closed flag
        self._build_lock = threading.Lock()  # the duplicate tracker is shared by both threads
        self._close_lock = threading.Lock()
        self._wake = threading.Event()
        self._overflow = threading.Event()
        self._progress = threading.Condition()
        self._stats = WriterStats()
        self._submitted_snapshots = 0
        self._resolved = 0  # predictions written, spooled, skipped, dead-lettered or lost
        self._resolved_snapshots = 0
        self._in_flight = 0
        self._current_rows: list[Row] = []  # what the writer thread is persisting right now
        self._duplicates = DuplicateTracker(options.duplicate_window)
        self._schema_ready = not options.auto_migrate
        self._stopping = False
        self._deadline = float("inf")
        self._closed = False
        self._finished = False
        self._spool_waiting = spool.has_files()
        self._writer = threading.Thread(target=self._run, name="mlpred-writer", daemon=True)
        self._spiller = threading.Thread(target=self._spill_loop, name="mlpred-spill", daemon=True)
        self._writer.start()
        self._spiller.start()

    # ------------------------------------------------------------ caller's side

    def submit(self, item: PendingPrediction) -> None:
        """Queue one prediction (the caller's path: an append and a counter)."""
        with self._lock:
            if self._closed:
                raise MlpredError("the logger is closed")
            self._queue.append(item)
            self._stats.logged += 1
            waiting = len(self._queue)
        if waiting >= self._options.batch_size and not self._wake.is_set():
            self._wake.set()
        if waiting > self._options.max_pending and not self._overflow.is_set():
            self._overflow.set()

    def submit_snapshot(self, rows: list[dict[str, Any]]) -> None:
        """Queue one feature-importance snapshot (already validated and ranked)."""
        with self._lock:
            if self._closed:
                raise MlpredError("the logger is closed")
            self._snapshots.append(rows)
            self._submitted_snapshots += 1
        self._wake.set()

    def stats(self) -> dict[str, object]:
        """A snapshot of the counters."""
        with self._lock:
            self._stats.pending = len(self._queue) + self._in_flight
            return self._stats.as_dict()

    @property
    def batch_sizes(self) -> list[int]:
        """Sizes of the most recent batches written (for diagnostics)."""
        return list(self._stats.batch_sizes)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is written (or spooled). False on timeout."""
        with self._lock:
            target = self._stats.logged
            snapshot_target = self._submitted_snapshots
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._progress:
            while self._resolved < target or self._resolved_snapshots < snapshot_target:
                if not self._writer.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._progress.wait(0.1 if remaining is None else min(remaining, 0.1))
                self._wake.set()
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending within ``timeout`` seconds, spool the rest, stop the threads.

        Safe to call twice or from two threads: the second call waits for the first.
        """
        with self._close_lock:
            if self._finished:
                return
            with self._lock:
                self._closed = True
            self._deadline = time.monotonic() + timeout
            self._stopping = True
            self._wake.set()
            self._writer.join(timeout + 5.0)
            if self._writer.is_alive():
                # Stuck in a database call: spool the batch it holds too; replaying is
                # idempotent, so a write that completes after all costs nothing.
                stuck = list(self._current_rows)
                if stuck and self._append_to_spool(stuck):
                    log.error("writer busy after %.1f s: its %d rows spooled", timeout, len(stuck))
            self._overflow.set()
            self._spiller.join(timeout + 5.0)
            self._spool_queue()
            if not self._writer.is_alive():
                self._engine.dispose()
            self._finished = True

    # ------------------------------------------------------------ shared helpers

    def _take(self, limit: int, *, for_writer: bool = False) -> list[PendingPrediction]:
        with self._lock:
            count = min(limit, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            if for_writer:
                self._in_flight = count
        return batch

    def _resolve(self, count: int, *, from_writer: bool = False) -> None:
        with self._progress:
            self._resolved += count
            if from_writer:
                self._in_flight = 0
            self._progress.notify_all()

    def _build(self, batch: Sequence[PendingPrediction]) -> BuiltBatch:
        with self._build_lock:
            try:
                built = build_rows(
                    batch,
                    self._duplicates,
                    on_duplicate=self._options.on_duplicate,
                    store_features=self._options.store_features,
                )
            except Exception:  # a bug must not lose the batch: go one prediction at a time
                log.exception("building rows failed; retrying one prediction at a time")
                built = self._build_one_by_one(batch)
        self._stats.duplicates += built.skipped_duplicates + built.marked_duplicates
        return built

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
                self._dead_letter(_minimal_row(item), f"build failed: {error}")
                continue
            rows.extend(built.rows)
            skipped += built.skipped_duplicates
            marked += built.marked_duplicates
        return BuiltBatch(rows=rows, skipped_duplicates=skipped, marked_duplicates=marked)

    def _append_to_spool(self, rows: Sequence[Row]) -> bool:
        """Spool rows durably; False (and logged) when the spool itself fails."""
        try:
            self._spool.append(rows)
        except OSError as error:
            self._stats.last_error = f"spool failed: {error}"
            log.critical("cannot write the spool at %s: %s", self._spool.directory, error)
            return False
        self._stats.spooled += len(rows)
        self._spool_waiting = True
        return True

    def _spool_items(self, items: list[PendingPrediction]) -> bool:
        """Build and spool queued predictions; on a spool failure put them back, in order."""
        built = self._build(items)
        if self._append_to_spool(built.rows):
            self._resolve(len(items))
            return True
        with self._lock:
            self._queue.extendleft(reversed(items))
        return False

    def _spool_queue(self) -> None:
        """At close: everything still queued goes to the spool (or is counted as lost)."""
        while items := self._take(self._options.max_batch_rows):
            if not self._spool_items(items):
                with self._lock:
                    leftover = len(self._queue)
                    self._queue.clear()
                self._stats.lost += leftover
                self._resolve(leftover)
                log.critical("%d predictions lost: neither database nor spool writable", leftover)
                return

    # ------------------------------------------------------------ spill thread

    def _spill_loop(self) -> None:
        """Keep at most ``max_pending`` predictions in memory by spooling the oldest."""
        limit = self._options.max_pending
        while not self._stopping:
            self._overflow.wait(0.5)
            self._overflow.clear()
            try:
                while len(self._queue) > limit and not self._stopping:
                    excess = len(self._queue) - limit // 2
                    items = self._take(min(excess, self._options.max_batch_rows))
                    if items and not self._spool_items(items):
                        time.sleep(1.0)  # the spool is broken too: keep rows in memory
                        break
            except Exception:
                log.exception("spilling to the spool failed")

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        while True:
            try:
                if self._run_once():
                    return
            except Exception:  # the writer thread must outlive any single failure
                log.critical("writer iteration failed", exc_info=True)
                time.sleep(0.1)

    def _run_once(self) -> bool:
        """One wake-up of the writer; True when it is time to stop."""
        options = self._options
        if len(self._queue) < options.batch_size and not self._stopping:
            self._wake.wait(options.flush_interval_s)
        self._wake.clear()
        if self._spool_waiting and not self._stopping:
            self._replay_spool()
        batch = self._take(options.max_batch_rows, for_writer=True)
        if batch:
            try:
                self._process(batch)
            finally:
                self._resolve(len(batch), from_writer=True)
        self._write_snapshots()
        return self._stopping and not batch and not self._snapshots

    def _process(self, batch: list[PendingPrediction]) -> None:
        built = self._build(batch)
        if self._reporter is not None:
            try:
                self._reporter.predictions(built.rows)
            except Exception:  # printing must never cost a row
                log.exception("could not render predictions")
        self._current_rows = built.rows
        try:
            self._persist(built.rows)
        finally:
            self._current_rows = []

    def _persist(self, rows: list[Row]) -> None:
        """Write with retries; once close()'s deadline has passed, spool instead."""
        delay = self._options.retry_initial_s
        while rows:
            try:
                started = time.perf_counter()
                self._ensure_schema()
                saved = self._write_isolating(rows)
            except Exception as error:
                self._stats.retried += 1
                self._stats.last_error = db.describe_connection_error(error)
                log.warning("write failed (%s); retrying", self._stats.last_error)
                try:
                    self._backoff(delay)
                except _GiveUp:
                    if not self._append_to_spool(rows):
                        self._stats.lost += len(rows)
                    return
                delay = min(delay * 2, self._options.retry_max_s)
                continue
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

    def _backoff(self, delay: float) -> None:
        """Sleep ``delay`` seconds in short slices; raise ``_GiveUp`` past close()'s deadline."""
        end = time.monotonic() + delay
        while True:
            if self._stopping and time.monotonic() >= self._deadline:
                raise _GiveUp
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.05))

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

    def _write_snapshots(self) -> None:
        """Write queued importance snapshots. One the database rejects is dead-lettered;
        one it cannot take now goes to the spool, to be replayed with the rows."""
        while self._snapshots:
            rows = self._snapshots[0]
            try:
                self._ensure_schema()
                write_snapshot(self._engine, rows)
                self._stats.snapshots += 1
            except Exception as error:
                reason = db.describe_connection_error(error)
                self._stats.last_error = reason
                try:
                    if is_row_specific(error):
                        self._spool.dead_letter_snapshot(rows, reason)
                        log.error("feature-importance snapshot rejected: %s", reason)
                    else:
                        self._spool.append_snapshot(rows)
                        self._spool_waiting = True
                        log.warning("feature-importance snapshot spooled: %s", reason)
                except OSError as spool_error:
                    log.critical("cannot spool a feature-importance snapshot: %s", spool_error)
                    return  # keep it queued; the next wake-up tries again
            self._snapshots.popleft()
            with self._progress:
                self._resolved_snapshots += 1
                self._progress.notify_all()

    def _replay_spool(self) -> None:
        try:
            self._ensure_schema()
            self._spool.replay(self._write_isolating, on_rows=self._count_replayed)
            self._stats.snapshots += self._spool.replay_snapshots(
                lambda rows: write_snapshot(self._engine, rows), is_row_specific
            )
        except Exception as error:
            self._stats.last_error = db.describe_connection_error(error)
            return
        self._spool_waiting = self._spool.has_files()

    def _count_replayed(self, count: int) -> None:
        self._stats.replayed += count
        if count:
            log.warning("replayed %d spooled rows", count)


def _minimal_row(item: PendingPrediction) -> Row:
    """A row holding only the identity of a prediction that could not be built."""
    values: dict[str, object] = {
        "prediction_id": item.prediction_id,
        "symbol": item.symbol,
        "model_version": item.model_version,
    }
    return tuple(values.get(name) for name in WRITE_COLUMNS)
