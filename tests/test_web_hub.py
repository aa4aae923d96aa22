"""The event hub: a stream opened between two messages starts from the newest state once."""

from __future__ import annotations

import asyncio

from mlpred_cli.web.hub import Hub, sse_message


def test_a_stream_starts_from_the_newest_opening_and_gets_each_later_message_once() -> None:
    async def scenario() -> list[str]:
        hub = Hub()
        stream = hub.stream(heartbeat_s=0.05, retry_ms=3000)
        assert await anext(stream) == "retry: 3000\n\n"
        await hub.publish(sse_message({"v": 1}, "tick"), opening=sse_message({"v": 1}, "update"))
        received = [await anext(stream)]  # the opening of what was published before
        await hub.publish(sse_message({"v": 2}, "update"))
        received.append(await anext(stream))
        received.append(await anext(stream))  # nothing new: a heartbeat, not a repeat
        await stream.aclose()
        return received

    assert asyncio.run(scenario()) == [
        'event: update\ndata: {"v":1}\n\n',
        'event: update\ndata: {"v":2}\n\n',
        ": ping\n\n",
    ]


def test_before_any_message_a_stream_sends_the_first_one_published() -> None:
    async def scenario() -> list[str]:
        hub = Hub()
        stream = hub.stream(heartbeat_s=5.0, retry_ms=10)
        assert await anext(stream) == "retry: 10\n\n"
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        await hub.publish(sse_message({"v": 1}, "update"), opening="opening, not sent\n\n")
        first = await asyncio.wait_for(waiting, 2.0)
        await stream.aclose()
        return [first]

    assert asyncio.run(scenario()) == ['event: update\ndata: {"v":1}\n\n']
