"""``mlpred serve``'s live updates over a real uvicorn server: the event stream follows new
predictions and filled outcomes, many open streams cost no extra queries per poll, and a
view is computed once per filter and data version."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from mlpred_cli.store.database import create_engine
from mlpred_cli.store.tables import predictions_table
from mlpred_cli.web.app import create_app
from mlpred_cli.web.live import LiveSettings
from tests.factories import insert_predictions, prediction_row
from tests.web_support import BEARER, TOKEN, plant, read_only, running_server, wait_until

P = predictions_table.c
TIMEOUT = 20.0


# --------------------------------------------------------------------------- SSE client


class Stream:
    """One open ``/events`` stream: its parsed messages, in order."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def message(self) -> tuple[str, str]:
        """The next message: (event name, data) or ("comment", text) or ("retry", ms)."""
        name, data = "message", []
        while True:
            line = await anext(self._lines)
            if line.startswith(":"):
                return "comment", line[1:].strip()
            if line.startswith("retry:"):
                return "retry", line[6:].strip()
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif line == "" and data:
                return name, "\n".join(data)

    async def update(
        self,
        wanted: Callable[[dict[str, Any]], bool] = lambda _: True,
        names: tuple[str, ...] = ("update",),
    ) -> dict[str, Any]:
        """The next event named in ``names`` whose data satisfies ``wanted``."""

        async def find() -> dict[str, Any]:
            while True:
                name, data = await self.message()
                if name in names:
                    found: dict[str, Any] = json.loads(data)
                    if wanted(found):
                        return found

        return await asyncio.wait_for(find(), TIMEOUT)

    async def state(self) -> dict[str, Any]:
        """The next poll's report: an ``update`` (the data moved) or a ``tick`` (it did not)."""
        return await self.update(names=("update", "tick"))


async def open_stream(client: httpx.AsyncClient, headers: dict[str, str]) -> Stream:
    request = client.build_request("GET", "/events", headers=headers)
    response = await client.send(request, stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-store"
    return Stream(response)


def _client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(TIMEOUT))


def _newest_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(P.id))).scalar_one())


def _app(url: str, **kwargs: Any) -> Any:
    return create_app(read_only(url), token=TOKEN, **kwargs)


def _dispose(app: Any) -> None:
    app.app.state.dashboard.live.engine.dispose()


# --------------------------------------------------------------------------- the stream


@pytest.mark.both_layouts
def test_updates_follow_new_predictions_and_filled_outcomes(db_url: str) -> None:
    plant(db_url, days=1)
    writer = create_engine(db_url)
    # the clock stands still: a planted outcome falling due mid-test would move the
    # data version (it should) and break "nothing changes" below
    frozen = datetime.now(UTC)
    app = _app(db_url, settings=LiveSettings(refresh_s=0.2), clock=lambda: frozen)

    async def scenario(base_url: str) -> None:
        async with _client(base_url) as client:
            refused = await client.get("/events")
            assert refused.status_code == 401 and list(refused.json()) == ["error"]
            stream = await open_stream(client, BEARER)
            assert await stream.message() == ("retry", "3000")
            first = await stream.state()
            assert set(first) >= {"data_version", "polled_at", "newest_prediction", "newest_id"}
            assert first["newest_id"] == _newest_id(writer)
            status = (await client.get("/api/status", headers=BEARER)).json()
            assert first["data_version"] == status["data_version"]
            assert status["clients"] == 1
            # nothing changes: the polls report no new data version
            for _ in range(3):
                name, data = await asyncio.wait_for(stream.message(), TIMEOUT)
                assert name in ("tick", "comment"), (name, data)
                if name == "tick":
                    assert json.loads(data)["data_version"] == first["data_version"]
            before = (await client.get("/api/overview", headers=BEARER)).json()

            # a new prediction, newer than every planted one
            moment = datetime.now(UTC).replace(microsecond=0)
            row = prediction_row("BTCUSDT", moment, model_version="v1")
            await asyncio.to_thread(insert_predictions, writer, [row])
            new_id = _newest_id(writer)
            assert new_id != first["newest_id"]
            second = await stream.update(lambda data: data["newest_id"] == new_id)
            assert second["data_version"] != first["data_version"]
            newest = datetime.fromisoformat(second["newest_prediction"].replace("Z", "+00:00"))
            assert newest == moment
            feed = (await client.get("/api/feed", params={"limit": 1}, headers=BEARER)).json()
            assert feed["data_version"] == second["data_version"]
            assert [r["id"] for r in feed["rows"]] == [new_id]
            after = (await client.get("/api/overview", headers=BEARER)).json()
            assert after["predictions"] == before["predictions"] + 1

            # an outcome filled in, as the backfill does, on a recent planted row
            with writer.connect() as conn:
                target, direction = conn.execute(
                    sa.select(P.id, P.direction_15m)
                    .where(P.actual_direction_15m.is_(None), P.id != new_id)
                    .order_by(P.datetime.desc(), P.id.desc())
                    .limit(1)
                ).one()
            statement = (
                sa.update(predictions_table)
                .where(P.id == target)
                .values(
                    actual_direction_15m="SHORT",
                    actual_return_15m=-0.0042,
                    accuracy_15m=direction == "SHORT",
                    return_error_15m=0.005,
                    actuals_filled_at=datetime.now(UTC),
                )
            )

            def fill() -> None:
                with writer.begin() as conn:
                    assert conn.execute(statement).rowcount == 1

            await asyncio.to_thread(fill)
            third = await stream.update(lambda data: data["data_version"] != second["data_version"])
            assert third["newest_id"] == new_id
            feed = (await client.get("/api/feed", headers=BEARER)).json()
            assert feed["data_version"] == third["data_version"]
            cell = next(r for r in feed["rows"] if r["id"] == target)["by_horizon"]["15m"]
            assert cell["actual_direction"] == "SHORT"
            assert cell["actual_return"] == pytest.approx(-0.0042)
            assert cell["correct"] is (direction == "SHORT")
            await stream.response.aclose()

    try:
        with running_server(app) as server:
            asyncio.run(scenario(server.base_url))
    finally:
        _dispose(app)
        writer.dispose()


def test_a_quiet_stream_sends_heartbeats(db_url: str) -> None:
    writer = create_engine(db_url)
    insert_predictions(writer, [prediction_row()])
    writer.dispose()
    # one poll (the first update), then nothing to report for the test's length
    app = _app(db_url, settings=LiveSettings(refresh_s=3600), heartbeat_s=0.2)

    async def scenario(base_url: str) -> None:
        async with _client(base_url) as client:
            stream = await open_stream(client, BEARER)
            assert await stream.message() == ("retry", "3000")
            name, data = await asyncio.wait_for(stream.message(), TIMEOUT)
            assert name == "update" and json.loads(data)["newest_id"]
            seen = [await asyncio.wait_for(stream.message(), TIMEOUT) for _ in range(2)]
            assert seen == [("comment", "ping"), ("comment", "ping")]
            await stream.response.aclose()

    try:
        with running_server(app) as server:
            asyncio.run(scenario(server.base_url))
    finally:
        _dispose(app)


def test_a_stream_opened_between_changes_starts_with_an_update(db_url: str) -> None:
    app = _app(db_url, settings=LiveSettings(refresh_s=0.1))
    live = app.app.state.dashboard.live

    async def scenario(base_url: str) -> None:
        async with _client(base_url) as client:
            while live.polls < 3:  # the first poll's update is no longer the newest message
                await asyncio.sleep(0.05)
            stream = await open_stream(client, BEARER)
            assert await stream.message() == ("retry", "3000")
            name, _ = await asyncio.wait_for(stream.message(), TIMEOUT)
            await stream.response.aclose()
            assert name == "update"

    try:
        with running_server(app) as server:
            asyncio.run(scenario(server.base_url))
    finally:
        _dispose(app)


def _count_statements(app: Any) -> Counter[int]:
    """Statements run on the app's engine, keyed by the number of polls completed when each
    ran (so the statements of poll k are under k)."""
    live = app.app.state.dashboard.live
    counts: Counter[int] = Counter()

    @event.listens_for(live.engine, "before_cursor_execute")
    def _count(*_args: Any) -> None:
        counts[live.polls] += 1

    return counts


@pytest.mark.both_layouts
def test_many_streams_do_not_add_queries_per_poll(db_url: str) -> None:
    plant(db_url, days=1)
    frozen = datetime.now(UTC)  # no planted outcome falls due while the streams open
    app = _app(db_url, settings=LiveSettings(refresh_s=0.1), clock=lambda: frozen)
    live = app.app.state.dashboard.live
    hub = app.app.state.dashboard.hub
    counts = _count_statements(app)

    async def per_poll(polls: int = 3) -> list[int]:
        start = live.polls
        while live.polls < start + polls + 1:
            await asyncio.sleep(0.05)
        # polls start+1 .. start+polls ran wholly while this many streams were open
        return [counts[k] for k in range(start + 1, start + polls + 1)]

    async def scenario(base_url: str) -> None:
        async with _client(base_url) as client:
            one = await open_stream(client, BEARER)
            await one.state()
            assert hub.clients == 1
            alone = await per_poll()
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(TIMEOUT), limits=limits
        ) as client:
            streams = await asyncio.gather(*(open_stream(client, BEARER) for _ in range(20)))
            firsts = await asyncio.gather(*(stream.state() for stream in streams))
            assert len({first["data_version"] for first in firsts}) == 1
            assert hub.clients == 20
            crowded = await per_poll()
            status = (await client.get("/api/status", headers=BEARER)).json()
            assert status["clients"] == hub.clients == 20
            for stream in streams:
                await stream.response.aclose()
        assert alone[0] > 0
        assert len(set(alone)) == 1, alone
        assert crowded == alone

    try:
        with running_server(app) as server:
            asyncio.run(scenario(server.base_url))
            wait_until(lambda: hub.clients == 0, timeout=10)
    finally:
        _dispose(app)


def test_a_view_is_computed_once_per_filter_and_version(db_url: str) -> None:
    writer = create_engine(db_url)
    now = datetime.now(UTC)
    rows = [
        prediction_row(symbol, now - k * timedelta(minutes=15), model_version=version)
        for k in range(40)
        for symbol in ("BTCUSDT", "ETHUSDT")
        for version in ("v1", "v2")
    ]
    insert_predictions(writer, rows)
    writer.dispose()
    # one poll at start, then none for the test's length: the version cannot move
    app = _app(db_url, settings=LiveSettings(refresh_s=3600))
    live = app.app.state.dashboard.live
    counts = _count_statements(app)
    try:
        with TestClient(app) as client:
            wait_until(lambda: live.polls >= 1)
            polled = sum(counts.values())

            def statements_for(path: str) -> tuple[int, str]:
                before = sum(counts.values())
                response = client.get(path, headers=BEARER)
                assert response.status_code == 200
                return sum(counts.values()) - before, response.json()["data_version"]

            first, version = statements_for("/api/overview?days=2")
            assert first > 0
            assert statements_for("/api/overview?days=2") == (0, version)
            # the same window serves the other views of that filter without a new read
            symbols, _ = statements_for("/api/symbols?days=2")
            assert symbols == 0
            # another filter is another read, then cached in turn
            other, _ = statements_for("/api/overview?days=2&symbol=BTCUSDT")
            assert other > 0
            assert statements_for("/api/overview?days=2&symbol=BTCUSDT")[0] == 0
            feed, _ = statements_for("/api/feed?limit=5")
            assert feed > 0 and statements_for("/api/feed?limit=5")[0] == 0
            assert live.polls == 1 and polled > 0
    finally:
        _dispose(app)
