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
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from mlpred_cli.capture.console_panel import PredictionReporter
from mlpred_cli.capture.pending_prediction import PendingPrediction
from mlpred_cli.capture.prediction_rows import BuiltBatch, DuplicateTracker, build_rows
from mlpred_cli.capture.spool import Spool
from mlpred_cli.config import WriterSettings
from mlpred_cli.errors import LoggerClosed
from mlpred_cli.store.driver_errors import describe_error, is_row_specific
from mlpred_cli.store.importance_snapshots import write_snapshot
from mlpred_cli.store.migrations import ensure_schema
from mlpred_cli.store.prediction_row import WRITE_COLUMNS, Row
from mlpred_cli.store.prediction_writes import write_isolating

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
    """Raised inside the retry loop when a failing batch should go to the spool instead."""


@dataclass
class _Held:
    """A batch taken from the queue, owned by one thread until it is durable (or counted)."""

    items: list[PendingPrediction]
    rows: list[Row] | None = None  # once built


class BatchWriter:
    """Owns the queue, the writer and spill threads, the database engine and the spool.

    Every prediction taken from the queue belongs to exactly one held batch until it is
    written, spooled, dead-lettered, skipped as a duplicate or counted as lost; ``flush()``
    waits until nothing logged before it is still queued or held.
    """

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
        self._held: dict[int, _Held] = {}
        self._next_token = 0
        self._writer_token: int | None = None
        self._orphans: deque[tuple[int, list[Row]]] = deque()  # built, spool refused them
        self._snapshots: deque[list[dict[str, Any]]] = deque()
        self._lock = threading.Lock()  # queue, held batches, counters and the closed flag
        self._build_lock = threading.Lock()  # the duplicate tracker is shared by both threads
        self._close_lock = threading.Lock()
        self._wake = threading.Event()
        self._overflow = threading.Event()
        self._progress = threading.Condition()
        self._stats = WriterStats()
        self._submitted_snapshots = 0
        self._resolved_snapshots = 0
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
                raise LoggerClosed("the logger is closed")
            self._stats.logged += 1
            item.sequence = self._stats.logged
            self._queue.append(item)
            waiting = len(self._queue)
        if waiting >= self._options.batch_size and not self._wake.is_set():
            self._wake.set()
        if waiting > self._options.max_pending and not self._overflow.is_set():
            self._overflow.set()

    def submit_snapshot(self, rows: list[dict[str, Any]]) -> None:
        """Queue one feature-importance snapshot (already validated and ranked)."""
        with self._lock:
            if self._closed:
                raise LoggerClosed("the logger is closed")
            self._snapshots.append(rows)
            self._submitted_snapshots += 1
        self._wake.set()

    def stats(self) -> dict[str, object]:
        """A snapshot of the counters."""
        with self._lock:
            held = sum(len(batch.items) for batch in self._held.values())
            self._stats.pending = len(self._queue) + held
            return self._stats.as_dict()

    def _oldest_outstanding(self) -> float:
        """Sequence number of the oldest prediction not yet durable (inf when none); call
        with ``_lock`` held."""
        oldest = float(self._queue[0].sequence) if self._queue else float("inf")
        for batch in self._held.values():
            oldest = min(oldest, batch.items[0].sequence)
        return oldest

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged so far is written, spooled, dead-lettered or counted
        as lost (see ``stats()``). False when ``timeout`` seconds pass first."""
        with self._lock:
            target = self._stats.logged
            snapshot_target = self._submitted_snapshots
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._progress:
            while True:
                with self._lock:
                    done = self._oldest_outstanding() > target
                if done and self._resolved_snapshots >= snapshot_target:
                    return True
                if not self._writer.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._progress.wait(0.1 if remaining is None else min(remaining, 0.1))
                self._wake.set()

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
                self._spool_stuck_batch(timeout)
            self._overflow.set()
            self._spiller.join(timeout + 5.0)
            while self._orphans:
                token, rows = self._orphans.popleft()
                self._spool_or_lose(token, rows)
            self._spool_queue()
            if not self._writer.is_alive():
                self._engine.dispose()
            self._finished = True

    # ------------------------------------------------------------ shared helpers

    def _count_lost(self, count: int) -> None:
        """Count predictions neither written nor spooled (the one outcome to avoid)."""
        with self._lock:
            self._stats.lost += count

    def _take(self, limit: int) -> tuple[int, list[PendingPrediction]] | None:
        """Move up to ``limit`` predictions from the queue into a new held batch."""
        with self._lock:
            count = min(limit, len(self._queue))
            if count == 0:
                return None
            items = [self._queue.popleft() for _ in range(count)]
            self._next_token += 1
            token = self._next_token
            self._held[token] = _Held(items)
        return token, items

    def _release(self, token: int) -> None:
        """The held batch is durable (or counted): it no longer holds flush() back."""
        with self._lock:
            self._held.pop(token, None)
        with self._progress:
            self._progress.notify_all()

    def _requeue(self, token: int) -> None:
        """Give a held batch back to the front of the queue, in order (nothing was built)."""
        with self._lock:
            batch = self._held.pop(token, None)
            if batch is not None:
                self._queue.extendleft(reversed(batch.items))

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
        duplicates = built.skipped_duplicates + built.marked_duplicates
        if duplicates:
            with self._lock:
                self._stats.duplicates += duplicates
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
        with self._lock:
            self._stats.spooled += len(rows)
        self._spool_waiting = True
        return True

    def _spool_or_lose(self, token: int, rows: list[Row]) -> None:
        """At close: spool a held batch's rows, or count them as lost."""
        if not self._append_to_spool(rows):
            self._count_lost(len(rows))
            log.critical("%d predictions lost: neither database nor spool writable", len(rows))
        self._release(token)

    def _spool_queue(self) -> None:
        """At close: everything still queued goes to the spool (or is counted as lost)."""
        while taken := self._take(self._options.max_batch_rows):
            token, items = taken
            self._spool_or_lose(token, self._build(items).rows)

    def _spool_stuck_batch(self, timeout: float) -> None:
        """close() gave up waiting for a writer stuck in a database call: spool its batch
        too (replay is idempotent, so a write that completes after all costs nothing)."""
        token = self._writer_token
        if token is None:
            return
        with self._lock:
            batch = self._held.get(token)
        if batch is None:
            return
        rows = batch.rows
        if rows is None and self._build_lock.acquire(timeout=1.0):
            self._build_lock.release()
            rows = self._build(batch.items).rows
        if rows is None:  # stuck while building: nothing to spool
            self._count_lost(len(batch.items))
            self._release(token)
            return
        log.error("writer busy after %.1f s: its %d rows spooled", timeout, len(rows))
        self._spool_or_lose(token, rows)

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
                    taken = self._take(min(excess, self._options.max_batch_rows))
                    if taken is None:
                        break
                    if not self._spill(*taken):
                        time.sleep(1.0)  # the spool is broken: rows wait for the writer
                        break
            except Exception:
                log.exception("spilling to the spool failed")

    def _spill(self, token: int, items: list[PendingPrediction]) -> bool:
        """Spool one taken batch; if the spool refuses it, hand the built rows to the writer."""
        try:
            rows = self._build(items).rows
        except Exception:
            log.exception("could not build rows to spool; they go back to the queue")
            self._requeue(token)
            return False
        if self._append_to_spool(rows):
            self._release(token)
            return True
        with self._lock:
            self._held[token].rows = rows
        self._orphans.append((token, rows))  # still held: flush() waits for the writer
        self._wake.set()
        return False

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
        if len(self._queue) < options.batch_size and not self._orphans and not self._stopping:
            self._wake.wait(options.flush_interval_s)
        self._wake.clear()
        if self._spool_waiting and not self._stopping:
            self._replay_spool()
        if self._orphans:
            token, rows = self._orphans.popleft()
            self._writer_token = token
            try:
                self._persist(rows)
            finally:
                self._writer_token = None
                self._release(token)
            return False
        taken = self._take(options.max_batch_rows)
        if taken is not None:
            token, items = taken
            self._writer_token = token
            try:
                self._process(token, items)
            except Exception:
                log.critical("writer lost a batch of %d", len(items), exc_info=True)
                self._count_lost(len(items))
            finally:
                self._writer_token = None
                self._release(token)
        self._write_snapshots()
        return self._stopping and taken is None and not self._snapshots and not self._orphans

    def _process(self, token: int, items: list[PendingPrediction]) -> None:
        built = self._build(items)
        with self._lock:
            held = self._held.get(token)
            if held is not None:
                held.rows = built.rows
        if self._reporter is not None:
            try:
                self._reporter.predictions(built.rows)
            except Exception:  # printing must never cost a row
                log.exception("could not render predictions")
        self._persist(built.rows)

    def _persist(self, rows: list[Row]) -> None:
        """Write with retries. A batch failing for ``spool_after_s`` (or past close()'s
        deadline) goes to the spool; if the spool fails too it stays in memory and is retried,
        unless close() has run out of time, when it is counted as lost."""
        delay = self._options.retry_initial_s
        failing_since: float | None = None
        while rows:
            try:
                started = time.perf_counter()
                self._ensure_schema()
                saved = self._write_isolating(rows)
            except Exception as error:
                with self._lock:
                    self._stats.retried += 1
                self._stats.last_error = describe_error(error)
                log.warning("write failed (%s); retrying", self._stats.last_error)
                if failing_since is None:
                    failing_since = time.monotonic()
                try:
                    self._backoff(delay, failing_since)
                except _GiveUp:
                    if self._append_to_spool(rows):
                        return
                    if self._stopping and time.monotonic() >= self._deadline:
                        self._count_lost(len(rows))
                        return
                    failing_since = time.monotonic()  # try the spool again later
                delay = min(delay * 2, self._options.retry_max_s)
                continue
            elapsed = time.perf_counter() - started
            with self._lock:
                self._stats.saved += saved
                self._stats.batches += 1
                self._stats.batch_seconds += elapsed
            self._stats.last_error = None
            if self._reporter is not None:
                try:
                    self._reporter.batch_saved(len(rows), elapsed)
                except Exception:
                    log.exception("could not report a saved batch")
            return

    def _backoff(self, delay: float, failing_since: float) -> None:
        """Sleep ``delay`` seconds in short slices; raise ``_GiveUp`` when the batch should go
        to the spool (close()'s deadline passed, or failing for ``spool_after_s``)."""
        end = time.monotonic() + delay
        while True:
            now = time.monotonic()
            if self._stopping and now >= self._deadline:
                raise _GiveUp
            if now - failing_since >= self._options.spool_after_s:
                raise _GiveUp
            if now >= end:
                return
            time.sleep(min(end - now, 0.05))

    def _write_isolating(self, rows: Sequence[Row]) -> int:
        """Write rows, dead-lettering those the database rejects; returns rows saved."""
        return len(rows) - write_isolating(self._engine, rows, self._dead_letter)

    def _dead_letter(self, row: Row, reason: str) -> None:
        self._spool.dead_letter(row, reason)
        with self._lock:
            self._stats.dead_lettered += 1
        log.error("row %s rejected by the database: %s", row[0], reason)

    def _ensure_schema(self) -> None:
        if not self._schema_ready:
            ensure_schema(self._engine)
            self._schema_ready = True

    def _write_snapshots(self) -> None:
        """Write queued importance snapshots. One the database rejects is dead-lettered;
        one it cannot take now goes to the spool, to be replayed with the rows."""
        while self._snapshots:
            rows = self._snapshots[0]
            try:
                self._ensure_schema()
                write_snapshot(self._engine, rows)
                with self._lock:
                    self._stats.snapshots += 1
            except Exception as error:
                reason = describe_error(error)
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
        # Cleared first: a file spooled while we replay sets it again and is not forgotten.
        self._spool_waiting = False
        try:
            self._ensure_schema()
            self._spool.replay(self._write_isolating, on_rows=self._count_replayed)
            written = self._spool.replay_snapshots(
                lambda rows: write_snapshot(self._engine, rows), is_row_specific
            )
            with self._lock:
                self._stats.snapshots += written
        except Exception as error:
            self._stats.last_error = describe_error(error)
            self._spool_waiting = True

    def _count_replayed(self, count: int) -> None:
        with self._lock:
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
