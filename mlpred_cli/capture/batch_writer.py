"""BatchWriter: the journal, a bounded in-memory queue, and the threads that drain it.

The caller's path appends the prediction's record to the journal (one ``write``) and the
prediction to a deque, under one lock, so the queue and the journal hold the same order.
The writer thread builds rows for whole batches, column by column; a sender thread
(``handoff.Handoff``) writes each built batch in one transaction while the writer builds the
next, retries connection-level failures with backoff, dead-letters rows the database
rejects, and marks each committed record resolved in the journal (a segment is deleted once
all its records are). The next batch is built during a write only while that write is young
and the database healthy, so a stuck database leaves predictions in the bounded queue.
A maintenance thread keeps memory bounded: past ``max_pending`` predictions it drops the
oldest whole segments from memory (they are on disk) for the writer to replay from disk
later, and it breaks a write the database has not answered for ``write_timeout_s``.

On start the writer replays what loggers that are gone left behind (their journal segments,
and spool files of earlier versions), idempotently on ``prediction_id``.

Memory-only mode (``journal=False``) skips the caller's ``write``: predictions reach the disk
only when they must leave memory (the queue is over ``max_pending``, a batch has failed for
``spool_after_s``, or ``close()`` could not write them), so a crash loses the queue.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from mlpred_cli.capture.console_panel import PredictionReporter
from mlpred_cli.capture.handoff import Handoff
from mlpred_cli.capture.journal import NOT_JOURNALED, Journal, claimed_orphans
from mlpred_cli.capture.journal_reader import read_segment
from mlpred_cli.capture.journal_records import encode_prediction, encode_snapshot
from mlpred_cli.capture.pending_prediction import PendingPrediction
from mlpred_cli.capture.prediction_rows import BuiltBatch, DuplicateTracker, build_rows
from mlpred_cli.capture.spool import Spool
from mlpred_cli.capture.writer_stats import CloseReport, WriterStats
from mlpred_cli.config import WriterSettings
from mlpred_cli.errors import LoggerClosed
from mlpred_cli.store.connection_breaker import ConnectionBreaker
from mlpred_cli.store.driver_errors import describe_error, is_row_specific
from mlpred_cli.store.importance_snapshots import write_snapshot
from mlpred_cli.store.migrations import ensure_schema
from mlpred_cli.store.partitions import start_partition_upkeep
from mlpred_cli.store.prediction_row import WRITE_COLUMNS, Row
from mlpred_cli.store.prediction_writes import write_isolating

log = logging.getLogger("mlpred.writer")

#: close() stops waiting for a database that has committed nothing for this long (journal on).
_STALL_AT_CLOSE_S = 1.0
#: The writer builds the next batch during a write only while that write is younger than this.
_PREFETCH_WHILE_WRITING_S = 0.25


@dataclass(frozen=True)
class WriterOptions(WriterSettings):
    """The tunable ``config.WriterSettings`` plus what one logger asks for."""

    on_duplicate: str = "mark"
    store_features: bool = False
    auto_migrate: bool = True
    journal: bool = True


@dataclass
class _Held:
    """A batch taken from the queue, owned by the writer until it is resolved."""

    items: list[PendingPrediction]
    rows: Sequence[Row] | None = None  # once built


@dataclass(frozen=True)
class _Built:
    """A held batch with its rows built, on its way to the sender thread."""

    token: int
    items: list[PendingPrediction]
    rows: Sequence[Row]


@dataclass
class _Snapshot:
    rows: list[dict[str, Any]]
    segment: int = NOT_JOURNALED


@dataclass
class _BatchOutcome:
    """Prediction ids of one write whose rejection could not be recorded."""

    unkept: set[object] = field(default_factory=set)


class BatchWriter:
    """Owns the queue, the writer and maintenance threads, the engine and the journal.

    Every accepted prediction is, at any moment, queued, held by the writer, or resolved:
    committed, skipped as a duplicate, dead-lettered, on disk only (evicted / spilled, to be
    replayed) or counted as lost. ``flush()`` waits until nothing logged before it is queued
    or held.
    """

    def __init__(
        self,
        engine: Engine,
        journal: Journal,
        spool: Spool,
        options: WriterOptions,
        reporter: PredictionReporter | None = None,
        legacy_spools: Sequence[Spool] = (),
    ) -> None:
        self._engine = engine
        self._journal = journal
        self._spool = spool
        self._legacy_spools = list(legacy_spools)  # directories older keys named
        self._options = options
        self._reporter = reporter
        self._breaker = ConnectionBreaker(engine)
        self._queue: deque[PendingPrediction] = deque()
        self._held: dict[int, _Held] = {}
        self._next_token = 0
        self._backlog: deque[Path] = deque()  # own segments to replay from disk, oldest first
        self._snapshots: deque[_Snapshot] = deque()
        self._lock = threading.Lock()  # queue, held batches, counters and the closed flag
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
        self._report: CloseReport | None = None
        self._failing = False  # the last write attempt failed
        self._last_commit = 0.0  # monotonic time of the last committed batch
        self._write_started: float | None = None
        self._stall_reported = False
        self._orphans_checked = False
        self._legacy_waiting = any(s.has_files() for s in (spool, *self._legacy_spools))
        self._sender: Handoff[_Built] = Handoff("mlpred-sender", self._send)
        self._writer = threading.Thread(target=self._run, name="mlpred-writer", daemon=True)
        self._keeper = threading.Thread(target=self._keep_loop, name="mlpred-keeper", daemon=True)
        self._writer.start()
        self._keeper.start()

    # ------------------------------------------------------------ caller's side

    def submit(self, item: PendingPrediction) -> None:
        """Accept one prediction: journal it (unless memory-only) and queue it."""
        item.store_payload = self._options.store_features
        record = encode_prediction(item) if self._options.journal else None
        with self._lock:
            if self._closed:
                raise LoggerClosed("the logger is closed")
            if record is not None:
                self._journal_record(item, record)
            self._stats.logged += 1
            item.sequence = self._stats.logged
            self._queue.append(item)
            waiting = len(self._queue)
        if waiting >= self._options.batch_size and not self._wake.is_set():
            self._wake.set()
        if waiting > self._options.max_pending and not self._overflow.is_set():
            self._overflow.set()

    def _journal_record(self, item: PendingPrediction, record: bytes) -> None:
        """Append under ``_lock``; a failure keeps the prediction in memory only, loudly."""
        try:
            item.segment = self._journal.append(record)
            self._stats.journaled += 1
        except OSError as error:
            self._stats.journal_errors += 1
            self._stats.last_error = f"journal write failed: {error}"
            if self._stats.journal_errors == 1 or self._stats.journal_errors % 1000 == 0:
                log.error(
                    "cannot write the journal in %s (%s): %d predictions so far are in memory "
                    "only and are lost if the process dies before the database takes them",
                    self._journal.directory,
                    error,
                    self._stats.journal_errors,
                )

    def submit_snapshot(self, rows: list[dict[str, Any]]) -> None:
        """Accept one feature-importance snapshot (already validated and ranked)."""
        snapshot = _Snapshot(rows)
        record = encode_snapshot(rows) if self._options.journal else None
        with self._lock:
            if self._closed:
                raise LoggerClosed("the logger is closed")
            if record is not None:
                try:
                    snapshot.segment = self._journal.append(record)
                except OSError as error:
                    log.error("cannot journal a feature-importance snapshot: %s", error)
            self._snapshots.append(snapshot)
            self._submitted_snapshots += 1
        self._wake.set()

    def stats(self) -> dict[str, object]:
        """A snapshot of the counters."""
        with self._lock:
            held = sum(len(batch.items) for batch in self._held.values())
            self._stats.pending = len(self._queue) + held
            self._stats.on_disk = self._journal.unresolved()
            return self._stats.as_dict()

    def _oldest_outstanding(self) -> float:
        """Sequence number of the oldest prediction queued or held (inf when none); call
        with ``_lock`` held."""
        oldest = float(self._queue[0].sequence) if self._queue else float("inf")
        for batch in self._held.values():
            oldest = min(oldest, batch.items[0].sequence)
        return oldest

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged so far is committed, dead-lettered, on disk only
        (evicted or spilled, see ``stats()``) or counted as lost. False when ``timeout``
        seconds pass first."""
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

    def close(self, timeout: float = 10.0) -> CloseReport:
        """Stop accepting, write what can be written within ``timeout`` seconds, keep the
        rest on disk, stop the threads. Safe to call twice or from two threads."""
        with self._close_lock:
            if self._report is not None:
                return self._report
            with self._lock:
                self._closed = True
            self._deadline = time.monotonic() + timeout
            self._drain_until_deadline()
            self._stopping = True
            self._wake.set()
            self._join_writer()
            self._overflow.set()
            self._keeper.join(2.0)
            self._spill_everything_left()
            if not self._writer.is_alive():
                self._engine.dispose()
            on_disk = self._journal.close()
            with self._lock:
                held = sum(len(batch.items) for batch in self._held.values())
                self._stats.pending = len(self._queue) + held
                report = CloseReport(
                    logged=self._stats.logged,
                    saved=self._stats.saved,
                    on_disk=on_disk,
                    dead_lettered=self._stats.dead_lettered,
                    lost=self._stats.lost,
                )
            if report.lost:
                log.error(
                    "logger closed with %d predictions lost (neither committed nor on disk); "
                    "see stats() and the errors logged before",
                    report.lost,
                )
            elif on_disk:
                log.warning(
                    "%d predictions are kept in the journal at %s; the next logger on this "
                    "database (or `mlpred spool replay`) writes them",
                    on_disk,
                    self._journal.directory,
                )
            self._report = report
            return report

    def _join_writer(self) -> None:
        """Wait for the writer to stop. With the journal on, a write still in progress after
        the drain is stuck (the drain stopped waiting for it): break its connection and wait
        briefly, since its rows are on disk; memory-only, wait until the deadline."""
        remaining = max(self._deadline - time.monotonic(), 0.0)
        if not self._options.journal:
            self._writer.join(remaining + 1.0)
            return
        if self._write_started is not None:
            self._breaker.break_all()
        self._writer.join(min(remaining, _STALL_AT_CLOSE_S) + 0.5)
        if self._writer.is_alive():
            log.warning("the writer is stuck in a database call; its rows stay in the journal")

    def _drain_until_deadline(self) -> None:
        """close(): let the writer work while it makes progress. With the journal on, a
        database that fails or has committed nothing for ``_STALL_AT_CLOSE_S`` is not waited
        for (everything is on disk already)."""
        started = time.monotonic()
        while time.monotonic() < self._deadline:
            if self.flush(min(0.1, max(self._deadline - time.monotonic(), 0.0))):
                return
            if not self._options.journal:
                continue
            quiet = time.monotonic() - max(started, self._last_commit)
            if self._failing or quiet > _STALL_AT_CLOSE_S:
                return

    # ------------------------------------------------------------ bookkeeping

    def _count_lost(self, count: int, why: str) -> None:
        """Count predictions neither committed nor on disk (the one outcome to avoid)."""
        if count <= 0:
            return
        with self._lock:
            self._stats.lost += count
        log.error("%d predictions lost: %s", count, why)

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
        """The held batch is resolved: it no longer holds flush() back."""
        with self._lock:
            self._held.pop(token, None)
        with self._progress:
            self._progress.notify_all()

    def _resolve(self, items: Iterable[PendingPrediction], unkept: set[object]) -> None:
        """Committed (or dead-lettered) items free their journal records; a rejected row
        whose dead letter could not be written stays in the journal (or, memory-only, is
        lost)."""
        counts: Counter[int] = Counter()
        lost = 0
        for item in items:
            if item.prediction_id in unkept:
                if item.segment == NOT_JOURNALED:
                    lost += 1
                continue
            if item.segment != NOT_JOURNALED:
                counts[item.segment] += 1
        if counts:
            self._journal.resolve(dict(counts))
        self._count_lost(lost, "rejected by the database and the dead-letter file failed")

    def _build(self, batch: Sequence[PendingPrediction]) -> BuiltBatch:
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
        for item, reason in built.market_errors:
            with self._lock:
                self._stats.market_data_unread += 1
                count = self._stats.market_data_unread
            if count == 1 or count % 1000 == 0:
                log.error(
                    "prediction %s (%s) is stored without its market data: %s (%d so far)",
                    item.prediction_id,
                    item.symbol,
                    reason,
                    count,
                )
        return built

    def _build_one_by_one(self, batch: Sequence[PendingPrediction]) -> BuiltBatch:
        rows: list[Row] = []
        errors: list[tuple[PendingPrediction, str]] = []
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
                self._dead_letter(_minimal_row(item), f"build failed: {error}", None)
                continue
            rows.extend(built.rows)
            skipped += built.skipped_duplicates
            marked += built.marked_duplicates
            errors.extend(built.market_errors)
        return BuiltBatch(rows, skipped, marked, tuple(errors))

    def _dead_letter(self, row: Row, reason: str, outcome: _BatchOutcome | None) -> None:
        """Keep a rejected row with its reason; never raises (a full disk must not block
        the good rows of the batch)."""
        try:
            self._spool.dead_letter(row, reason)
        except OSError as error:
            with self._lock:
                self._stats.dead_letter_errors += 1
                self._stats.last_error = f"dead-letter write failed: {error}"
            if outcome is not None:
                outcome.unkept.add(row[0])
            log.critical(
                "row %s rejected by the database (%s) and the dead-letter file failed (%s); "
                "retried from the journal by the next logger (lost if it was not journaled)",
                row[0],
                reason,
                error,
            )
            return
        with self._lock:
            self._stats.dead_lettered += 1
        log.error("row %s rejected by the database: %s", row[0], reason)

    # ------------------------------------------------------------ on-disk backlog

    def _spill(self, items: list[PendingPrediction]) -> bool:
        """Memory-only mode: put predictions on disk in a segment of their own, to be
        replayed; False (logged) when the disk refuses."""
        try:
            number = self._journal.append_sealed(encode_prediction(item) for item in items)
        except OSError as error:
            self._stats.last_error = f"journal write failed: {error}"
            log.critical(
                "cannot write %d predictions to %s: %s", len(items), self._journal.directory, error
            )
            return False
        path = self._journal.evict(number)
        if path is not None:
            with self._lock:
                self._backlog.append(path)
                self._stats.evicted += len(items)
        return True

    def _evict_segments(self) -> None:
        """Journal mode: drop the oldest segments' predictions from memory (they are on disk)
        until the queue is at half of ``max_pending``. An evicted segment is replayed from
        disk whole, including records the writer held or committed meanwhile (idempotent)."""
        limit = self._options.max_pending
        self._journal.seal()
        with self._lock:
            while len(self._queue) > limit // 2:
                number = self._queue[0].segment
                if number == NOT_JOURNALED:
                    break
                if not self._journal.is_sealed(number):
                    break
                path = self._journal.evict(number)
                if path is None:
                    break
                dropped = 0
                while self._queue and self._queue[0].segment == number:
                    self._queue.popleft()
                    dropped += 1
                self._backlog.append(path)
                self._stats.evicted += dropped
        with self._progress:
            self._progress.notify_all()

    def _spill_everything_left(self) -> None:
        """close(): what is neither written nor in the journal goes to disk in a segment of
        its own (or is counted as lost). With the journal on, only predictions whose journal
        write failed are left to do."""
        with self._lock:
            items = [item for batch in self._held.values() for item in batch.items]
            items.extend(self._queue)
            self._queue.clear()
            snapshots = list(self._snapshots)
            self._snapshots.clear()
        items = [item for item in items if item.segment == NOT_JOURNALED]
        snapshots = [snapshot for snapshot in snapshots if snapshot.segment == NOT_JOURNALED]
        if items and not self._spill(items):
            self._count_lost(len(items), "the database and the journal both refused them")
        if snapshots:
            try:
                self._journal.append_sealed(encode_snapshot(s.rows) for s in snapshots)
            except OSError as error:
                log.critical("%d feature-importance snapshots lost: %s", len(snapshots), error)

    # ------------------------------------------------------------ maintenance thread

    def _keep_loop(self) -> None:
        """Bound memory and watch for a write the database never answers."""
        while not self._stopping:
            self._overflow.wait(0.25)
            self._overflow.clear()
            try:
                self._check_stalled_write()
                if len(self._queue) > self._options.max_pending and not self._stopping:
                    self._bound_memory()
            except Exception:
                log.exception("journal maintenance failed")
                time.sleep(0.5)

    def _bound_memory(self) -> None:
        if self._options.journal:
            self._evict_segments()
            return
        limit = self._options.max_pending
        while len(self._queue) > limit and not self._stopping:
            taken = self._take(min(len(self._queue) - limit // 2, self._options.max_batch_rows))
            if taken is None:
                return
            token, items = taken
            if self._spill(items):
                self._release(token)
                continue
            with self._lock:  # the disk refuses: give them back, in order, and wait
                batch = self._held.pop(token, None)
                if batch is not None:
                    self._queue.extendleft(reversed(batch.items))
            time.sleep(1.0)
            return

    def _check_stalled_write(self) -> None:
        started = self._write_started
        if started is None:
            self._stall_reported = False
            return
        waited = time.monotonic() - started
        if waited < self._options.write_timeout_s or self._stall_reported:
            return
        self._stall_reported = True
        broken = self._breaker.break_all()
        with self._lock:
            self._stats.stalled_writes += 1
            self._stats.last_error = f"database did not answer for {waited:.0f} s"
        log.error(
            "the database has not answered a write for %.0f s; %d connection(s) broken to "
            "retry (the rows are %s)",
            waited,
            broken,
            "safe in the journal" if self._options.journal else "in memory",
        )

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        # Partitioned storage: create the coming days' partitions, on its own thread so it
        # never delays a write (best effort; a no-op on SQLite and on a single table).
        start_partition_upkeep(self._engine)
        try:
            while True:
                try:
                    if self._run_once():
                        return
                except Exception:  # the writer thread must outlive any single failure
                    log.critical("writer iteration failed", exc_info=True)
                    time.sleep(0.1)
        finally:
            self._sender.stop()

    def _run_once(self) -> bool:
        """One wake-up of the writer; True when it is time to stop."""
        options = self._options
        if len(self._queue) < options.batch_size and not self._stopping:
            self._wake.wait(options.flush_interval_s)
        self._wake.clear()
        if not self._orphans_checked and not self._stopping:
            self._orphans_checked = True
            self._replay_orphans()
        if self._legacy_waiting and not self._stopping:
            self._sender.wait_idle()
            self._replay_legacy_spool()
        if self._backlog and not self._past_deadline():
            self._sender.wait_idle()
            self._replay_backlog_segment()
        taken = self._take(options.max_batch_rows) if self._may_take() else None
        if taken is not None:
            token, items = taken
            try:
                rows = self._build_held(token, items)
            except BaseException:
                self._release(token)
                raise
            self._sender.put(_Built(token, items, rows))
        if self._snapshots:
            self._sender.wait_idle()
            self._write_snapshots()
        if self._stopping and (
            self._past_deadline() or self._failing or self._options.journal
        ):  # with the journal, close() stops writing once it stops waiting
            self._sender.wait_idle()
            return True
        if self._stopping and taken is None and not self._snapshots and not self._backlog:
            self._sender.wait_idle()
            return not self._queue  # a batch the sender gave back is tried again
        return False

    def _past_deadline(self) -> bool:
        return self._stopping and time.monotonic() >= self._deadline

    def _may_take(self) -> bool:
        """Whether to take the next batch now. While the sender writes, the next batch is
        built only if that write is young and healthy: a slow, stuck or failing database
        leaves predictions in the queue, where memory is bounded (eviction), rather than in
        a second held batch. Otherwise wait a little for the sender."""
        if self._sender.idle():
            return True
        started = self._write_started
        if (
            self._sender.slot_free()
            and not self._failing
            and started is not None
            and time.monotonic() - started < _PREFETCH_WHILE_WRITING_S
        ):
            return True
        self._sender.wait_idle(self._options.flush_interval_s)
        return self._sender.idle()

    def _build_held(self, token: int, items: list[PendingPrediction]) -> Sequence[Row]:
        """Build a held batch's rows (and print them at DEBUG)."""
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
        return built.rows

    def _send(self, built: _Built) -> None:
        """The sender thread: write a built batch, then release it."""
        try:
            self._write_built(built.token, built.items, built.rows)
        finally:
            self._release(built.token)

    def _write_built(self, token: int, items: list[PendingPrediction], rows: Sequence[Row]) -> None:
        outcome = _BatchOutcome()
        if self._persist(rows, outcome):
            self._resolve(items, outcome.unkept)
            return
        # Not written. With the journal the rows are on disk; memory-only, spill them.
        in_memory = [item for item in items if item.segment == NOT_JOURNALED]
        if in_memory and not self._spill(in_memory):
            if self._past_deadline():
                self._count_lost(len(in_memory), "the database and the journal both refused them")
            else:
                with self._lock:  # keep them: back in the queue, in logging order
                    self._held.pop(token, None)
                    self._queue = deque(
                        heapq.merge(in_memory, self._queue, key=lambda item: item.sequence)
                    )

    def _persist(self, rows: Sequence[Row], outcome: _BatchOutcome) -> bool:
        """Write with retries until committed (True). False when close()'s deadline passed,
        or, memory-only, after failing for ``spool_after_s`` (the caller spills the rows)."""
        delay = self._options.retry_initial_s
        failing_since: float | None = None
        while True:
            if self._stopping and self._options.journal:
                return False  # close() gave up on the database: the rows are on disk
            try:
                started = time.perf_counter()
                self._write_started = time.monotonic()
                self._ensure_schema()
                saved = self._write_isolating(rows, outcome)
            except Exception as error:
                self._failing = True
                with self._lock:
                    self._stats.retried += 1
                    self._stats.last_error = describe_error(error)
                log.warning("write failed (%s); retrying", self._stats.last_error)
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                if self._past_deadline() or (self._stopping and self._options.journal):
                    return False
                if not self._options.journal and now - failing_since >= self._options.spool_after_s:
                    return False
                self._sleep(delay)
                delay = min(delay * 2, self._options.retry_max_s)
                continue
            finally:
                self._write_started = None
            elapsed = time.perf_counter() - started
            self._failing = False
            self._last_commit = time.monotonic()
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
            return True

    def _sleep(self, delay: float) -> None:
        """Back off in short slices, cut short by close()'s deadline (with the journal on, by
        close() itself: the rows are on disk, waiting buys nothing)."""
        end = time.monotonic() + delay
        while (now := time.monotonic()) < end and not self._past_deadline():
            if self._stopping and self._options.journal:
                return
            time.sleep(min(end - now, 0.05))

    def _write_isolating(self, rows: Sequence[Row], outcome: _BatchOutcome) -> int:
        """Write rows, dead-lettering those the database rejects; returns rows saved."""
        result = write_isolating(
            self._engine, rows, lambda row, reason: self._dead_letter(row, reason, outcome)
        )
        for undelivered in result.undelivered:  # _dead_letter raised something not OSError
            outcome.unkept.add(undelivered.row[0])
            with self._lock:
                self._stats.dead_letter_errors += 1
            log.critical(
                "row %s rejected (%s) and not dead-lettered: %r",
                undelivered.row[0],
                undelivered.reason,
                undelivered.error,
            )
        return result.written

    def _ensure_schema(self) -> None:
        if not self._schema_ready:
            ensure_schema(self._engine)
            self._schema_ready = True

    def _write_snapshots(self) -> None:
        """Write queued importance snapshots. One the database rejects is dead-lettered; one
        it cannot take now waits (journal) or goes to disk (memory-only)."""
        while self._snapshots and not self._past_deadline():
            snapshot = self._snapshots[0]
            try:
                self._ensure_schema()
                write_snapshot(self._engine, snapshot.rows)
                with self._lock:
                    self._stats.snapshots += 1
            except Exception as error:
                reason = describe_error(error)
                self._stats.last_error = reason
                if is_row_specific(error):
                    try:
                        self._spool.dead_letter_snapshot(snapshot.rows, reason)
                        log.error("feature-importance snapshot rejected: %s", reason)
                    except OSError as spool_error:
                        log.critical("cannot dead-letter a snapshot: %s", spool_error)
                        return
                elif self._options.journal and snapshot.segment != NOT_JOURNALED:
                    return  # on disk already: the next wake-up tries again
                else:
                    try:
                        self._journal.append_sealed([encode_snapshot(snapshot.rows)])
                        log.warning("feature-importance snapshot kept on disk: %s", reason)
                    except OSError as disk_error:
                        log.critical("cannot keep a feature-importance snapshot: %s", disk_error)
                        return
            self._snapshots.popleft()
            if snapshot.segment != NOT_JOURNALED:
                self._journal.resolve({snapshot.segment: 1})
            with self._progress:
                self._resolved_snapshots += 1
                self._progress.notify_all()

    # ------------------------------------------------------------ replaying from disk

    def _replay_orphans(self) -> None:
        """Segments of loggers that are gone, in this journal's directory and then in the
        directories older keys of this database named: replay each, delete it once written
        (a live logger's segments, claimed by its lock, are never touched)."""
        own = self._journal.owner
        for spool in (self._spool, *self._legacy_spools):
            with claimed_orphans(spool.directory, exclude=own) as orphans:
                for path in orphans:
                    if self._stopping or not self._replay_segment(path, spool):
                        return

    def _replay_backlog_segment(self) -> None:
        path = self._backlog[0]
        if self._replay_segment(path):
            with self._lock:
                self._backlog.popleft()

    def _replay_segment(self, path: Path, spool: Spool | None = None) -> bool:
        """Write every record of a segment on disk, then delete it. False when the database
        could not take it before close()'s deadline (the segment stays). ``spool``: the
        directory the segment is in, when not this logger's (its dead letters are skipped
        too; rows rejected now are dead-lettered in this logger's directory)."""
        try:
            contents = read_segment(path)
        except FileNotFoundError:
            return True
        except OSError as error:
            log.error("cannot read journal segment %s: %s", path.name, error)
            return True  # left on disk for `mlpred spool replay`
        if contents.quarantined_regions:
            with self._lock:
                self._stats.quarantined += contents.quarantined_regions
        chunk = self._options.max_batch_rows
        rejected_before: set[uuid.UUID] = set()
        if contents.predictions:
            rejected_before = self._spool.dead_lettered_ids()
            if spool is not None and spool is not self._spool:
                rejected_before |= spool.dead_lettered_ids()
        predictions = [p for p in contents.predictions if p.prediction_id not in rejected_before]
        unkept: set[object] = set()
        for start in range(0, len(predictions), chunk):
            built = self._build(predictions[start : start + chunk])
            outcome = _BatchOutcome()
            if not self._persist(built.rows, outcome):
                return False
            unkept |= outcome.unkept
            with self._lock:
                self._stats.replayed += len(built.rows)
        for snapshot in contents.snapshots:
            self._snapshots.append(_Snapshot(snapshot.rows))
            with self._lock:
                self._submitted_snapshots += 1
        if unkept:
            return True  # a rejected row is kept nowhere else: leave the segment for later
        self._journal.discard(path)
        if contents.predictions:
            log.warning("replayed %d predictions from %s", len(contents.predictions), path.name)
        return True

    def _replay_legacy_spool(self) -> None:
        """Spool files written by earlier versions (built rows as JSON lines), in this
        logger's directory and those older keys of its database named."""
        self._legacy_waiting = False
        try:
            self._ensure_schema()
            outcome = _BatchOutcome()
            for spool in (self._spool, *self._legacy_spools):
                spool.replay(
                    lambda rows: self._write_isolating(rows, outcome),
                    on_rows=self._count_replayed,
                )
                written = spool.replay_snapshots(
                    lambda rows: write_snapshot(self._engine, rows), is_row_specific
                )
                with self._lock:
                    self._stats.snapshots += written
        except Exception as error:
            self._stats.last_error = describe_error(error)
            self._legacy_waiting = True

    def _count_replayed(self, count: int) -> None:
        with self._lock:
            self._stats.replayed += count


def _minimal_row(item: PendingPrediction) -> Row:
    """A row holding only the identity of a prediction that could not be built."""
    values: dict[str, object] = {
        "prediction_id": item.prediction_id,
        "symbol": item.symbol,
        "model_version": item.model_version,
    }
    return tuple(values.get(name) for name in WRITE_COLUMNS)
