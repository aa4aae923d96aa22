"""SIGTERM ends a process that logs predictions only after its loggers are closed.

``systemctl stop``, ``docker stop`` and Kubernetes send SIGTERM; Python's default is to die
at once, without ``atexit``. When a logger is created in the main thread and the application
has no SIGTERM handler of its own, ``register`` installs one. On SIGTERM it puts the default
disposition back (a second SIGTERM kills at once), closes every live logger in a
(non-daemon) thread, each within its ``close_timeout_s``, and then sends the signal again, so
the process ends with the status it would have had (killed by SIGTERM). The main thread goes
on meanwhile: the handler never blocks it, so it cannot deadlock on a lock the interrupted
code holds.

SIGINT keeps Python's own behaviour (``KeyboardInterrupt``, then ``atexit``, which closes the
loggers); a second Ctrl-C while closing stops waiting (the journal keeps what is unsaved).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import weakref
from types import FrameType
from typing import Protocol

log = logging.getLogger("mlpred")


class _Closable(Protocol):
    def close_sync(self, timeout: float | None = None) -> object: ...


_loggers: weakref.WeakSet[_Closable] = weakref.WeakSet()
_lock = threading.Lock()
_installed = False


def register(logger: _Closable) -> None:
    """Close ``logger`` on SIGTERM; installs the handler on first use where possible."""
    with _lock:
        _loggers.add(logger)
    _install()


def unregister(logger: _Closable) -> None:
    """Forget a closed logger."""
    with _lock:
        _loggers.discard(logger)


def handler_installed() -> bool:
    """True when mlpred's SIGTERM handler is the current one."""
    return signal.getsignal(signal.SIGTERM) is _on_sigterm


def _install() -> None:
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # the application handles (or ignores) SIGTERM itself: leave it alone
    signal.signal(signal.SIGTERM, _on_sigterm)
    _installed = True


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    global _installed
    signal.signal(signum, signal.SIG_DFL)
    _installed = False
    with _lock:
        loggers = list(_loggers)
    log.warning("SIGTERM: closing %d prediction logger(s) before exiting", len(loggers))
    closer = threading.Thread(
        target=_close_then_resignal, args=(loggers, signum), name="mlpred-sigterm"
    )
    closer.start()


def _close_then_resignal(loggers: list[_Closable], signum: int) -> None:
    try:
        for logger in loggers:
            try:
                logger.close_sync()
            except Exception:
                log.exception("closing a logger on SIGTERM failed")
    finally:
        os.kill(os.getpid(), signum)
