"""Faulting in the journal's mapped pages ahead of the appends, off the caller's path.

The first write to each page of a file mapping costs a page fault (the file system
allocates and journals the page: a few microseconds per 4 KiB page, so ~4 faults for a
record with 300 candles). A helper thread asks the kernel to fault the next pages in
(``madvise(MADV_POPULATE_WRITE)``, Linux 5.14+) through a ctypes call, which releases the
GIL, so the caller's append is a plain memory copy. It never changes the mapped bytes, so
it needs no coordination with the appends beyond not touching a mapping being unmapped.
Where the call is not available (another OS, an older kernel) nothing is prefaulted and
appends fault their pages themselves, as without this module.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import sys
import threading
from typing import Any

log = logging.getLogger("mlpred.journal")

MADV_POPULATE_WRITE = 23  # linux/mman.h
#: Bytes faulted in per call, and how far ahead of the last append the pages are kept.
CHUNK_BYTES = 256 << 10
AHEAD_BYTES = 4 << 20


def _madvise() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    function.restype = ctypes.c_int
    return function


_MADVISE = _madvise()


class PagePrefaulter:
    """Keeps the pages of the current mapping faulted in ``AHEAD_BYTES`` ahead of the
    appends. ``attach`` a new mapping, ``wanted(position)`` after appends, ``detach``
    before unmapping it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # held while a mapping is in use by the thread
        self._wake = threading.Condition(self._lock)
        self._view: Any = None  # a ctypes view of the mapping (an export of its buffer)
        self._size = 0
        self._done = 0  # pages below this offset are faulted in
        self._wanted = 0
        self._stopped = False
        self._busy = False  # a call on the mapping is in progress (outside the lock)
        self._working = _MADVISE is not None
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        """False where the kernel call is missing or failed (appends fault pages then)."""
        return self._working

    def attach(self, mapping: mmap.mmap) -> None:
        """Start faulting in a new mapping's first pages."""
        if not self._working:
            return
        with self._lock:
            self._view = (ctypes.c_char * len(mapping)).from_buffer(mapping)
            self._size = len(mapping)
            self._done = 0
            self._wanted = min(AHEAD_BYTES, self._size)
            if self._thread is None:  # started on the first mapping, so never in a fork
                self._thread = threading.Thread(
                    target=self._run, name="mlpred-journal-pages", daemon=True
                )
                self._thread.start()
            self._wake.notify_all()

    def wanted(self, position: int) -> None:
        """The appends have reached ``position``: keep faulting ahead of it. Cheap when
        nothing new is needed (the caller's path calls it on every append)."""
        if self._working and position + AHEAD_BYTES // 2 > self._wanted and self._view:
            with self._lock:
                self._wanted = min(position + AHEAD_BYTES, self._size)
                self._wake.notify_all()

    def detach(self) -> None:
        """Forget the mapping (waits for a call in progress on it): it may be unmapped."""
        with self._lock:
            self._view = None
            self._size = self._done = self._wanted = 0
            while self._busy:
                self._wake.wait()

    def stop(self) -> None:
        """End the thread."""
        with self._lock:
            self._stopped = True
            self._view = None
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopped and (self._view is None or self._done >= self._wanted):
                    self._wake.wait()
                if self._stopped:
                    return
                view, start = self._view, self._done
                length = min(CHUNK_BYTES, self._size - start)
                self._busy = True
            # Outside the lock, without the GIL (a ctypes call): appends go on meanwhile;
            # detach() waits for it before the mapping may be unmapped.
            result = _MADVISE(ctypes.addressof(view) + start, length, MADV_POPULATE_WRITE)  # type: ignore[misc]
            error = ctypes.get_errno() if result != 0 else 0
            del view  # release the export of the mapping's buffer before detach() returns
            with self._lock:
                self._busy = False
                if error:
                    log.debug("journal pages not prefaulted (errno %d); appends fault them", error)
                    self._working = False
                    self._view = None
                elif self._view is not None and self._done == start:
                    self._done = start + length
                self._wake.notify_all()
                if error:
                    return
