"""Unblocking a write stuck on a database that accepted the connection and never answers.

A frozen server (SIGSTOP, a hung host behind a live TCP stack) acknowledges packets, so TCP
keepalives and a server-side ``statement_timeout`` never fire. ``ConnectionBreaker`` tracks the
driver connections of one engine; ``break_all()`` shuts down their sockets (PostgreSQL) or
interrupts them (SQLite), so the blocked call fails with a connection error the writer retries,
and the pool discards the connection.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


class ConnectionBreaker:
    """The live driver connections of one engine, and a way to break them all."""

    def __init__(self, engine: Engine) -> None:
        self._connections: dict[int, Any] = {}  # sqlite3 connections take no weak references
        self._lock = threading.Lock()
        self._postgresql = engine.dialect.name == "postgresql"
        event.listen(engine, "connect", self._on_connect)
        event.listen(engine.pool, "close", self._on_close)
        event.listen(engine.pool, "close_detached", self._on_close_detached)

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        with self._lock:
            self._connections[id(dbapi_connection)] = dbapi_connection

    def _on_close(self, dbapi_connection: Any, _record: Any) -> None:
        with self._lock:
            self._connections.pop(id(dbapi_connection), None)

    def _on_close_detached(self, dbapi_connection: Any) -> None:
        with self._lock:
            self._connections.pop(id(dbapi_connection), None)

    def break_all(self) -> int:
        """Shut down every tracked connection's socket (or interrupt SQLite); returns how many."""
        with self._lock:
            connections = list(self._connections.values())
        broken = 0
        for connection in connections:
            if self._postgresql:
                broken += _shutdown_socket(connection)
            else:
                with contextlib.suppress(Exception):
                    connection.interrupt()
                    broken += 1
        return broken


def _shutdown_socket(connection: Any) -> int:
    """Shut down a psycopg connection's socket from outside the thread using it."""
    try:
        fd = connection.pgconn.socket
    except Exception:  # closed already
        return 0
    try:
        duplicate = socket.socket(fileno=os.dup(fd))
    except OSError:
        return 0
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        return 0
    finally:
        duplicate.close()
    return 1
