"""A one-slot hand-off from the writer thread to the thread that sends batches.

The writer builds a batch (numpy work, holding the GIL) while the previous one is being
written (waiting on the database, GIL released), so the database and the Python side work
at the same time instead of in turns. At most one batch is being sent and one waits: ``put``
blocks while the slot is taken, which keeps memory bounded and batches in order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger("mlpred.writer")

Piece = TypeVar("Piece")


class Handoff(Generic[Piece]):
    """Runs ``work`` on each piece handed over, one at a time, in order, on its own thread."""

    def __init__(self, name: str, work: Callable[[Piece], None]) -> None:
        self._work = work
        self._changed = threading.Condition()
        self._waiting: Piece | None = None
        self._has_waiting = False
        self._busy = False
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def put(self, piece: Piece) -> None:
        """Hand a piece over; waits while another one is waiting. Runs ``work`` on the
        calling thread if the hand-off has stopped (nothing is dropped)."""
        with self._changed:
            while self._has_waiting and not self._stopped and self._thread.is_alive():
                self._changed.wait(0.5)
            if not self._stopped and self._thread.is_alive():
                self._waiting, self._has_waiting = piece, True
                self._changed.notify_all()
                return
        self._work(piece)

    def idle(self) -> bool:
        """Nothing is being worked on or waiting."""
        with self._changed:
            return not (self._has_waiting or self._busy)

    def slot_free(self) -> bool:
        """No piece is waiting (one may be being worked on): ``put`` would not block."""
        with self._changed:
            return not self._has_waiting

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every piece handed over is done; False if ``timeout`` passed first."""
        with self._changed:
            return self._changed.wait_for(
                lambda: not (self._has_waiting or self._busy) or not self._thread.is_alive(),
                timeout,
            )

    def stop(self, timeout: float | None = None) -> None:
        """Finish what was handed over, then end the thread (waits up to ``timeout``)."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._changed:
                while not self._has_waiting and not self._stopped:
                    self._changed.wait()
                if not self._has_waiting:
                    return
                piece = self._waiting
                self._waiting, self._has_waiting, self._busy = None, False, True
                self._changed.notify_all()
            try:
                self._work(piece)  # type: ignore[arg-type]
            except BaseException:  # the thread must outlive any single failure
                log.critical("sending a batch failed", exc_info=True)
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()
