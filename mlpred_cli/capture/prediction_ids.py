"""Prediction ids for the caller's path: random (version 4) UUIDs drawn in blocks.

``uuid.uuid4()`` makes one ``os.urandom`` system call per id, which releases the GIL: in a
process whose writer thread is busy, the caller then waits for the GIL to come back. Here
one ``os.urandom`` call fills a block of ids, so taking an id is a list pop. The ids are the
same kind of UUID as ``uuid4`` gives (122 random bits from the operating system's CSPRNG);
a forked child draws a fresh block, so parent and child never share ids.
"""

from __future__ import annotations

import os
import threading
import uuid

import numpy as np

#: Ids drawn per ``os.urandom`` call.
BLOCK = 1024


class PredictionIds:
    """A thread-safe source of version-4 UUIDs, refilled ``BLOCK`` at a time."""

    def __init__(self, block: int = BLOCK) -> None:
        self._block = block
        self._ids: list[uuid.UUID] = []
        self._refill = threading.Lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        """In a forked child: drop the parent's block (and a lock another thread may have
        held at the fork)."""
        self._ids = []
        self._refill = threading.Lock()

    def next(self) -> uuid.UUID:
        """A new random UUID."""
        try:
            return self._ids.pop()  # atomic under the GIL
        except IndexError:
            pass
        with self._refill:
            if not self._ids:
                self._ids = random_uuids(self._block)
            return self._ids.pop()


def random_uuids(count: int) -> list[uuid.UUID]:
    """``count`` version-4 UUIDs from one ``os.urandom`` call."""
    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint8).reshape(count, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    data = raw.tobytes()
    return [uuid.UUID(bytes=data[start : start + 16]) for start in range(0, len(data), 16)]
