"""Server-sent events: the poller publishes a message, every open page's stream sends it.

A plain ``asyncio`` hub owned by one app (no module-level state): a subscriber waits for the
message sequence to move past the last one it sent, or for the heartbeat interval to pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any


def sse_message(data: Any, event: str | None = None) -> str:
    """One event-stream message: ``event:`` (optional) and a one-line JSON ``data:``."""
    text = json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n"


class Hub:
    """The newest message and the streams waiting for the next one."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._sequence = 0
        self._message: str | None = None
        self._opening: str | None = None
        self._closed = False
        self.clients = 0

    async def publish(self, message: str, opening: str | None = None) -> None:
        """Make ``message`` the newest one and wake every stream; ``opening`` (by default
        ``message``) is what a stream opened from now on starts with: the same state."""
        async with self._changed:
            self._sequence += 1
            self._message = message
            self._opening = message if opening is None else opening
            self._changed.notify_all()

    def closing(self) -> None:
        """Mark the hub closed from the event loop's thread without waiting (a signal
        handler): every stream ends at its next wake-up, which ``close`` brings now."""
        self._closed = True
        asyncio.get_running_loop().create_task(self.close())

    async def close(self) -> None:
        """End every stream (the server is stopping)."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()

    async def stream(self, heartbeat_s: float, retry_ms: int) -> AsyncIterator[str]:
        """The event stream of one page: the newest message's ``opening`` (nothing before
        the first message), then each new message, and a comment line every
        ``heartbeat_s`` so proxies and the browser keep the stream."""
        self.clients += 1
        try:
            yield f"retry: {retry_ms}\n\n"
            # read together (no await between): the opening stands for the messages up to
            # this sequence, so none of them is sent again
            sent, first = self._sequence, self._opening
            if first is not None:
                yield first
            while not self._closed:
                async with self._changed:
                    if self._sequence == sent and not self._closed:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._changed.wait(), heartbeat_s)
                    sequence, message = self._sequence, self._message
                if self._closed:
                    break
                if sequence != sent and message is not None:
                    sent = sequence
                    yield message
                else:
                    yield ": ping\n\n"
        finally:
            self.clients -= 1
