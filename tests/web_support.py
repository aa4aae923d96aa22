"""The dashboard under test: a planted database, the app over a read-only engine, and a real
uvicorn server on a free loopback port in a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from mlpred_cli.outcomes.rollups import rebuild_rollups
from mlpred_cli.store.database import create_engine
from mlpred_cli.store.read_only import create_read_only_engine
from tests.factories import insert_predictions
from tests.monitor_scenarios import Scenario, recent_start, scenario_rows

TOKEN = "test-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def plant(url: str, *, days: int = 10, versions: tuple[str, ...] = ("v1", "v2")) -> Scenario:
    """``days`` of predictions ending at the last closed candle, for ``SYMBOLS`` and each of
    ``versions`` (seeded), outcomes filled where due, rollups built. Returns the last
    scenario planted."""
    engine = create_engine(url)
    start = recent_start(days)
    try:
        scenario = Scenario()
        for number, version in enumerate(versions):
            scenario = Scenario(
                days=days,
                symbols=SYMBOLS,
                accuracy=0.60 - 0.04 * number,
                model_version=version,
                seed=11 + number,
                start_at=start,
            )
            rows = scenario_rows(scenario)
            keys = {key for row in rows for key in row}
            insert_predictions(engine, [{key: row.get(key) for key in keys} for row in rows])
        rebuild_rollups(engine)
    finally:
        engine.dispose()
    return scenario


def read_only(url: str) -> Engine:
    """The dashboard's read-only engine on ``url``."""
    return create_read_only_engine(url, statement_timeout_ms=10_000)


@dataclass
class RunningServer:
    """A uvicorn server in a thread: its base URL and the server object."""

    base_url: str
    server: Any


@contextmanager
def running_server(app: Any) -> Iterator[RunningServer]:
    """Serve ``app`` on 127.0.0.1 (a free port) until the block ends."""
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the dashboard server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningServer(f"http://127.0.0.1:{port}", server)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_until(condition: Any, timeout: float = 20.0, step: float = 0.05) -> Any:
    """Poll ``condition()`` until it returns a truthy value (returned) or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(step)


def later(moment: datetime, minutes: int) -> datetime:
    """``moment`` plus ``minutes``."""
    return moment + timedelta(minutes=minutes)
