"""The writer's counters (``MLPredictionLogger.stats()``) and what ``close()`` reports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class WriterStats:
    """Counters since the writer started; ``pending`` and ``on_disk`` are filled in when read.

    Every accepted prediction ends in exactly one of: ``saved`` (committed, or already in the
    database), ``duplicates`` skipped (``on_duplicate="skip"``), ``dead_lettered``, kept on
    disk (journal / backlog, replayed later), or ``lost``.
    """

    logged: int = 0
    saved: int = 0
    duplicates: int = 0
    retried: int = 0
    journaled: int = 0
    journal_errors: int = 0
    evicted: int = 0
    replayed: int = 0
    dead_lettered: int = 0
    dead_letter_errors: int = 0
    quarantined: int = 0
    snapshots: int = 0
    stalled_writes: int = 0
    market_data_unread: int = 0
    lost: int = 0
    pending: int = 0
    on_disk: int = 0
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
            "journaled": self.journaled,
            "journal_errors": self.journal_errors,
            "evicted": self.evicted,
            "replayed": self.replayed,
            "dead_lettered": self.dead_lettered,
            "dead_letter_errors": self.dead_letter_errors,
            "quarantined": self.quarantined,
            "importance_snapshots": self.snapshots,
            "stalled_writes": self.stalled_writes,
            "market_data_unread": self.market_data_unread,
            "lost": self.lost,
            "pending": self.pending,
            "on_disk": self.on_disk,
            "batches": self.batches,
            "mean_batch_ms": (1000 * self.batch_seconds / self.batches) if self.batches else None,
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class CloseReport:
    """What ``close()`` left behind: predictions committed in this logger's life, kept on
    disk for the next logger (or ``mlpred spool replay``), dead-lettered, and lost."""

    logged: int
    saved: int
    on_disk: int
    dead_lettered: int
    lost: int

    @property
    def clean(self) -> bool:
        """True when nothing was lost."""
        return self.lost == 0
