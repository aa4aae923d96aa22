"""Benchmark of the dashboard server (``mlpred serve``) over a large history: API throughput
and latency, database statements per poll with 1 and with 20 open event streams.

Run:  .venv/bin/python bench/bench_serve.py [--rows 1000000] [--clients 10] [--duration 10]
                                             [--sse-clients 20] [--polls 10] [--refresh 0.5]
                                             [--client raw|httpx] [--no-analyze]
                                             [--reps 3] [--keep] [--database NAME]
                                             [--pg-url postgresql://postgres@127.0.0.1/postgres]

The history is ``history_database.py``'s (a throw-away PostgreSQL database loaded by COPY,
rollups rebuilt; dropped afterwards unless ``--keep`` / ``--database``), then
``ANALYZE ml_prediction_daily`` as autovacuum would do in time (``--no-analyze``: measure the
table as ``rebuild_rollups`` leaves it, without statistics, where the planner seq-scans it
for a 7-day window). The app is built as
``mlpred serve`` builds it (``create_app`` over ``create_read_only_engine``, a token, polling
every ``--refresh`` s) and served by a real uvicorn server on loopback in this process.

The HTTP clients run in a separate process, so they do not share the server's GIL. The load
client is by default a minimal keep-alive HTTP/1.1 one (asyncio streams, ~0.1 ms of CPU per
request): on a 2-CPU machine ``httpx.AsyncClient`` (``--client httpx``) spends ~2 ms of CPU
per request, so 10 httpx clients top out near 450 req/s whatever the server does. httpx
still makes the cold requests and holds the event streams. The CPUs are shared by the
server, PostgreSQL and the clients all the same, so every load line also shows the CPU the
server process, the client process and the whole machine used, and the server's CPU per
request (a client near 100 % of one core means the rate is a floor, not the server's
limit). Measured in the same run:

1. ``GET /api/status`` (no database work: the baseline) and ``GET /api/overview`` (default
   filter, warm view cache; and ``?symbol=<one>&days=30``) with ``--clients`` concurrent
   clients for ``--duration`` s each (after a 1 s warm-up): requests/s, p50 / p95 latency,
   the overview's requests/s as a ratio to the baseline's;
2. cold overviews (the view cache emptied before each, PostgreSQL's own cache warm): one
   request (median of ``--reps``), and ``--clients`` simultaneous first requests (with the
   statements they ran: the view cache lets one of them compute);
3. the statements the read-only engine executes per poll (``before_cursor_execute``) over
   ``--polls`` polls with 1 and with ``--sse-clients`` open ``/events`` streams and no page
   request in flight; they must be equal (exit 1 otherwise, or on any failed request);
4. the time of one poll (the server's own poller, timed) and of one cold window read
   (``read_window_rollups`` on the server's engine, as ``LiveData`` calls it), with the
   slowest statements of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.*

import httpx
from history_database import add_history_arguments, history_database
from sqlalchemy import event
from sqlalchemy.engine import Engine

from mlpred_cli import config
from mlpred_cli.store.dashboard_reads import read_window_rollups
from mlpred_cli.store.read_only import create_read_only_engine
from mlpred_cli.web.app import create_app
from mlpred_cli.web.filters import DashboardFilter
from mlpred_cli.web.live import LiveData, LiveSettings
from tests.web_support import running_server

WARMUP_S = 1.0
STATUS = "GET /api/status (baseline)"
OVERVIEW = "GET /api/overview (warm)"
CLIENT_BOUND_SHARE = 0.9  # a client process using this much of one core may be the limit
OTHER_LOAD_CORES = 0.2  # other processes using more than this skew the rates


# ---------------------------------------------------------------- the client process


@dataclass
class LoadResult:
    """One load run: latencies (s) of the requests that finished inside the run, failures,
    wall seconds, the client process's CPU seconds and the last body's size."""

    latencies: list[float]
    failures: int
    elapsed_s: float
    cpu_s: float
    body_bytes: int
    first_failure: str | None = None


class _RawSession:
    """A minimal HTTP/1.1 keep-alive client on one connection: the request's bytes are built
    once, a response is its head and ``content-length`` bytes (the app sends no chunks)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"GET {target} HTTP/1.1", f"host: {parts.netloc}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def get(self) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError("a response without content-length")
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with suppress(OSError):
                await self.writer.wait_closed()


class _HttpxSession:
    """The same through ``httpx.AsyncClient`` (one connection per client)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url
        self.client = httpx.AsyncClient(headers=headers, timeout=120.0)

    async def open(self) -> None:
        pass

    async def get(self) -> tuple[int, bytes]:
        response = await self.client.get(self.url)
        return response.status_code, response.content

    async def close(self) -> None:
        await self.client.aclose()


def _session(kind: str, url: str, headers: dict[str, str]) -> _RawSession | _HttpxSession:
    return _RawSession(url, headers) if kind == "raw" else _HttpxSession(url, headers)


def _failed(status: int, body: bytes) -> str | None:
    """Why a response is not a good JSON document (None: it is)."""
    if status != 200:
        return f"{status} {body[:200]!r}"
    document = json.loads(body)
    if not isinstance(document, dict) or document.get("error"):
        return f"200 but {body[:200]!r}"
    return None


async def _load(
    kind: str, url: str, headers: dict[str, str], clients: int, duration_s: float
) -> LoadResult:
    latencies: list[float] = []
    failures = 0
    first_failure: str | None = None
    body = b""
    sessions = [_session(kind, url, headers) for _ in range(clients)]
    await asyncio.gather(*(session.open() for session in sessions))
    cpu = time.process_time()
    start = time.perf_counter()
    deadline = start + duration_s

    async def one_client(session: _RawSession | _HttpxSession) -> None:
        nonlocal failures, first_failure, body
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            status, body = await session.get()
            ended = time.perf_counter()
            if status != 200:
                failures += 1
                first_failure = first_failure or _failed(status, body)
            elif ended <= deadline:
                latencies.append(ended - began)

    try:
        await asyncio.gather(*(one_client(session) for session in sessions))
    finally:
        await asyncio.gather(*(session.close() for session in sessions))
    elapsed = min(time.perf_counter(), deadline) - start
    cpu_s = time.process_time() - cpu
    problem = _failed(200, body) if body else "no response"
    if problem:  # the last body of a good run must be a JSON document, not an error
        failures, first_failure = failures + 1, first_failure or problem
    return LoadResult(latencies, failures, elapsed, cpu_s, len(body), first_failure)


async def _burst(url: str, headers: dict[str, str], clients: int) -> LoadResult:
    """``clients`` requests sent at once (each on its own connection, opened first)."""
    pool = [httpx.AsyncClient(headers=headers, timeout=120.0) for _ in range(clients)]
    failures = 0
    first_failure: str | None = None
    body_bytes = 0
    try:
        # open each connection first, so the burst measures the requests, not the handshakes
        await asyncio.gather(
            *(client.get(url.split("/api/")[0] + "/api/status") for client in pool)
        )
        gate = asyncio.Event()

        async def one(client: httpx.AsyncClient) -> float:
            nonlocal failures, first_failure, body_bytes
            await gate.wait()
            began = time.perf_counter()
            response = await client.get(url)
            if response.status_code != 200:
                failures += 1
                first_failure = first_failure or f"{response.status_code} {response.text:.200}"
            body_bytes = len(response.content)
            return time.perf_counter() - began

        tasks = [asyncio.create_task(one(client)) for client in pool]
        await asyncio.sleep(0)
        cpu, start = time.process_time(), time.perf_counter()
        gate.set()
        latencies = list(await asyncio.gather(*tasks))
        elapsed = time.perf_counter() - start
    finally:
        await asyncio.gather(*(client.aclose() for client in pool))
    return LoadResult(
        latencies, failures, elapsed, time.process_time() - cpu, body_bytes, first_failure
    )


@dataclass
class _Stream:
    status: int | None = None
    messages: int = 0
    pings: int = 0
    first: asyncio.Event = field(default_factory=asyncio.Event)


async def _stream(url: str, headers: dict[str, str], state: _Stream) -> None:
    timeout = httpx.Timeout(30.0, read=None)
    async with (
        httpx.AsyncClient(headers=headers, timeout=timeout) as client,
        client.stream("GET", url) as response,
    ):
        state.status = response.status_code
        if response.status_code != 200:
            state.first.set()
            return
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                state.messages += 1
                state.first.set()
            elif line.startswith(":"):
                state.pings += 1


async def _client_loop(pipe: Pipe) -> None:
    loop = asyncio.get_running_loop()
    streams: list[tuple[asyncio.Task[None], _Stream]] = []
    while True:
        job: dict[str, Any] = await loop.run_in_executor(None, pipe.recv)
        kind = job["kind"]
        result: Any
        if kind == "stop":
            break
        if kind == "load":
            result = await _load(
                job["client"], job["url"], job["headers"], job["clients"], job["duration_s"]
            )
        elif kind == "burst":
            result = await _burst(job["url"], job["headers"], job["clients"])
        elif kind == "open_streams":
            fresh = [_Stream() for _ in range(job["count"])]
            streams += [
                (asyncio.create_task(_stream(job["url"], job["headers"], state)), state)
                for state in fresh
            ]
            with suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(state.first.wait() for state in fresh)), 20.0
                )
            result = sum(1 for state in fresh if state.status == 200 and state.messages)
        elif kind == "close_streams":
            for task, _ in streams:
                task.cancel()
            await asyncio.gather(*(task for task, _ in streams), return_exceptions=True)
            result = [(state.status, state.messages, state.pings) for _, state in streams]
            streams = []
        else:
            result = f"unknown job {kind!r}"
        pipe.send(result)


def client_process(pipe: Pipe) -> None:
    """The client side: runs the jobs the benchmark sends until it sends ``stop``."""
    asyncio.run(_client_loop(pipe))


class Clients:
    """The client process and its pipe."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe()
        self.process = context.Process(target=client_process, args=(child,), daemon=True)
        self.process.start()

    def run(self, **job: Any) -> Any:
        self.pipe.send(job)
        if not self.pipe.poll(600):
            raise RuntimeError(f"the client process did not answer job {job['kind']}")
        return self.pipe.recv()

    def close(self) -> None:
        if self.process.is_alive():
            self.pipe.send({"kind": "stop"})
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)


# ---------------------------------------------------------------- the server side


@dataclass
class PollRecord:
    """One poll of the server's poller: its time and the statements it executed."""

    ms: float
    statements: int


class Probe:
    """Statement counting and timing on the server's read-only engine, and the poller's
    polls timed (``LiveData.poll`` wrapped on the instance before the server starts)."""

    def __init__(self, engine: Engine, live: LiveData) -> None:
        self.local = threading.local()
        self.lock = threading.Lock()
        self.statements = 0
        self.outside_polls = 0
        self.polls: list[PollRecord] = []
        self.profile: list[tuple[float, str]] | None = None
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        original = live.poll

        def timed_poll() -> bool:
            self.local.in_poll, self.local.count = True, 0
            began = time.perf_counter()
            try:
                return original()
            finally:
                ms = (time.perf_counter() - began) * 1000
                self.local.in_poll = False
                with self.lock:
                    self.polls.append(PollRecord(ms, self.local.count))

        live.poll = timed_poll  # type: ignore[method-assign]

    def _before(self, *args: Any) -> None:
        self.local.started = time.perf_counter()
        with self.lock:
            self.statements += 1
            if getattr(self.local, "in_poll", False):
                self.local.count += 1
            else:
                self.outside_polls += 1

    def _after(self, _conn: Any, _cursor: Any, statement: str, *args: Any) -> None:
        ms = (time.perf_counter() - self.local.started) * 1000
        if self.profile is not None and not getattr(self.local, "in_poll", False):
            with self.lock:
                self.profile.append((ms, statement))

    @contextmanager
    def profiling(self) -> Iterator[list[tuple[float, str]]]:
        """The (ms, SQL) of every statement executed in the block, the poller's left out."""
        found: list[tuple[float, str]] = []
        self.profile = found
        try:
            yield found
        finally:
            self.profile = None

    def wait_polls(self, count: int, timeout_s: float) -> list[PollRecord]:
        """The next ``count`` polls to finish (from now)."""
        with self.lock:
            start = len(self.polls)
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                if len(self.polls) >= start + count:
                    return self.polls[start : start + count]
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} polls did not finish within {timeout_s:.0f} s")
            time.sleep(0.02)


def clear_views(live: LiveData) -> None:
    """Empty the view cache (the next request of any filter computes it afresh)."""
    with live._lock:
        live._cache.clear()


TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds every CPU of the machine spent busy so far (/proc/stat)."""
    with Path("/proc/stat").open() as stat:
        values = [int(value) for value in stat.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) * TICK_S


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * TICK_S


class Backends:
    """The PostgreSQL backends serving the dashboard (``application_name`` mlpred-serve),
    found through the history's own engine, so the probe does not count these reads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def cpu_s(self) -> dict[int, float]:
        with self.engine.connect() as conn:
            pids = conn.exec_driver_sql(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'mlpred-serve'"
                " AND datname = current_database()"
            ).scalars()
            return {int(pid): process_cpu_s(int(pid)) for pid in pids}


@contextmanager
def cpu_meter(backends: Backends) -> Iterator[dict[str, float]]:
    """CPU seconds over the block: this process (the server), the dashboard's PostgreSQL
    backends, and the whole machine."""
    found: dict[str, float] = {}
    before = backends.cpu_s()
    process, machine = time.process_time(), machine_busy_s()
    try:
        yield found
    finally:
        found["server_s"] = time.process_time() - process
        found["machine_s"] = machine_busy_s() - machine
        after = backends.cpu_s()
        found["postgres_s"] = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def first_line(sql: str) -> str:
    return " ".join(sql.split())[:90]


def slowest(profile: list[tuple[float, str]], count: int) -> list[str]:
    return [f"{ms:8.1f} ms  {first_line(sql)}" for ms, sql in sorted(profile, reverse=True)[:count]]


# ---------------------------------------------------------------- the benchmark

LOAD_HEAD = (
    f"  {'request':<44} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'vs status':>9}"
    f" {'srv ms/req':>10}  {'cores: srv cli pg other':>23} {'body':>8}"
)
COLD_HEAD = f"  {'read':<44} {'ms':>7}"
POLL_HEAD = (
    f"  {'open streams':>12} {'statements/poll':>15} {'polls':>6} {'poll p50 ms':>11} {'max ms':>7}"
)


@dataclass
class Bench:
    """The server under measure, the clients, and the lines of the report."""

    clients: Clients
    base_url: str
    headers: dict[str, str]
    live: LiveData
    dashboard: Any
    probe: Probe
    backends: Backends
    args: argparse.Namespace
    rates: dict[str, float] = field(default_factory=dict)
    others: list[float] = field(default_factory=list)
    load_rows: list[str] = field(default_factory=list)
    cold_rows: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def load(self, name: str, path: str, baseline: float | None = None) -> float:
        """``--clients`` clients on ``path`` for ``--duration`` s: requests/s (recorded)."""
        url = self.base_url + path
        job = {"kind": "load", "client": self.args.client, "url": url, "headers": self.headers}
        warm = self.clients.run(**job, clients=self.args.clients, duration_s=WARMUP_S)
        version = self.live.status()["data_version"]
        with cpu_meter(self.backends) as cpu:
            result: LoadResult = self.clients.run(
                **job, clients=self.args.clients, duration_s=self.args.duration
            )
        for run in (warm, result):
            if run.failures:
                self.failures.append(f"{name}: {run.failures} failed, first {run.first_failure}")
        requests = len(result.latencies)
        rate = requests / result.elapsed_s
        self.rates[name] = rate
        client_share = result.cpu_s / result.elapsed_s
        other = cpu["machine_s"] - cpu["server_s"] - result.cpu_s - cpu["postgres_s"]
        cores = [cpu["server_s"], result.cpu_s, cpu["postgres_s"], max(0.0, other)]
        shares = " ".join(f"{value / result.elapsed_s:4.2f}" for value in cores)
        self.others.append(max(0.0, other) / result.elapsed_s)
        self.load_rows.append(
            f"  {name:<44} {rate:7.0f} {percentile(result.latencies, 0.5) * 1000:7.1f}"
            f" {percentile(result.latencies, 0.95) * 1000:7.1f}"
            f" {rate / (baseline or rate):8.2f}x {cpu['server_s'] / max(1, requests) * 1000:10.2f}"
            f"  {shares:>23} {result.body_bytes:6,} B"
        )
        if client_share >= CLIENT_BOUND_SHARE:
            self.notes.append(
                f"{name}: the client process used {client_share:.0%} of a core: the rate is "
                "a floor of the server's"
            )
        if self.live.status()["data_version"] != version:
            self.notes.append(f"{name}: the data version moved during the run (some cold views)")
        return rate

    def cold(self, name: str, path: str) -> None:
        """Latency of one request after emptying the view cache (median of ``--reps``)."""
        times: list[float] = []
        profile: list[tuple[float, str]] = []
        for _ in range(self.args.reps):
            clear_views(self.live)
            with self.probe.profiling() as found:
                result: LoadResult = self.clients.run(
                    kind="burst", url=self.base_url + path, headers=self.headers, clients=1
                )
            if result.failures:
                self.failures.append(f"{name}: {result.first_failure}")
            times.append(result.latencies[0] * 1000)
            profile = found
        spent = sum(ms for ms, _ in profile)
        self.cold_rows.append(
            f"  {name:<44} {statistics.median(times):7.1f}  median of {len(times)} (first"
            f" {times[0]:.0f}); {len(profile)} statements, {spent:.0f} ms of them in SQL"
        )
        self.notes += [f"{name}, slowest statement:", *slowest(profile, 1)]

    def cold_burst(self, name: str, path: str) -> None:
        """``--clients`` simultaneous first requests after emptying the view cache."""
        clear_views(self.live)
        with self.probe.profiling() as found:
            result: LoadResult = self.clients.run(
                kind="burst", url=self.base_url + path, headers=self.headers,
                clients=self.args.clients,
            )  # fmt: skip
        if result.failures:
            self.failures.append(f"{name}: {result.failures} failed, first {result.first_failure}")
        self.cold_rows.append(
            f"  {name:<44} {max(result.latencies) * 1000:7.1f}  the slowest (p50"
            f" {percentile(result.latencies, 0.5) * 1000:.0f}); {len(found)} statements in all"
        )

    def window_read(self, name: str, flt: DashboardFilter) -> float:
        """Median ms of ``read_window_rollups`` as ``LiveData`` calls it (no cache)."""
        reading = self.live.reading
        assert reading is not None
        monitor = self.live.settings.monitor
        times: list[float] = []
        profile: list[tuple[float, str]] = []
        for _ in range(self.args.reps):
            with self.probe.profiling() as found:
                began = time.perf_counter()
                with self.live.engine.connect() as conn, conn.begin():
                    read_window_rollups(
                        conn,
                        flt.selection(reading.polled_at),
                        now=reading.polled_at,
                        candle_interval=monitor.candle_interval,
                        hours=self.live.settings.hours,
                    )
                times.append((time.perf_counter() - began) * 1000)
            profile = found
        median = statistics.median(times)
        spent = sum(ms for ms, _ in profile)
        self.cold_rows.append(
            f"  {name:<44} {median:7.1f}  median of {len(times)} (first {times[0]:.0f});"
            f" {len(profile)} statements, {spent:.0f} ms of them in SQL"
        )
        self.notes += [f"{name}, slowest statements:", *slowest(profile, 2)]
        return median

    def polls(self, streams: int) -> list[PollRecord]:
        """Open event streams up to ``streams``; the next ``--polls`` polls."""
        url = self.base_url + "/events"
        hub = self.dashboard.hub
        wanted = streams - hub.clients
        opened = self.clients.run(kind="open_streams", url=url, headers=self.headers, count=wanted)
        deadline = time.monotonic() + 20
        while hub.clients != streams:
            if time.monotonic() > deadline:
                self.failures.append(f"{hub.clients} streams open, {streams} wanted")
                break
            time.sleep(0.02)
        if opened != wanted:
            self.failures.append(f"{opened} of {wanted} new streams had their first message")
        outside = self.probe.outside_polls
        polls_before = self.live.polls
        timeout = self.args.polls * (self.args.refresh + 10) + 10
        records = self.probe.wait_polls(self.args.polls, timeout)
        if self.probe.outside_polls != outside:
            self.failures.append(f"{self.probe.outside_polls - outside} statements outside polls")
        if self.live.polls - polls_before < len(records):
            self.failures.append("LiveData.polls moved less than the polls timed")
        return records


def poll_row(streams: int, records: list[PollRecord]) -> str:
    counts = sorted({record.statements for record in records})
    text = str(counts[0]) if len(counts) == 1 else "varies " + "/".join(map(str, counts))
    times = [record.ms for record in records]
    return (
        f"  {streams:>12} {text:>15} {len(records):>6} {statistics.median(times):11.1f}"
        f" {max(times):7.1f}"
    )


def rollup_statistics(engine: Engine, *, analyze: bool) -> str:
    """ANALYZE the rollup table when ``analyze``; say what statistics the planner has."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if analyze:
            began = time.perf_counter()
            conn.exec_driver_sql("ANALYZE ml_prediction_daily")
            return f"ml_prediction_daily ANALYZEd now ({time.perf_counter() - began:.1f} s)"
        row = conn.exec_driver_sql(
            "SELECT coalesce(last_analyze, last_autoanalyze) FROM pg_stat_user_tables"
            " WHERE relname = 'ml_prediction_daily'"
        ).scalar_one_or_none()
        autovacuum = conn.exec_driver_sql("SHOW autovacuum").scalar_one()
    when = f"last analyzed {row:%Y-%m-%d %H:%M} UTC" if row else "never analyzed"
    return f"ml_prediction_daily as it is: {when} (autovacuum {autovacuum})"


def run(args: argparse.Namespace, admin: Engine, url: Any, clients: Clients) -> int:
    """Serve the history, measure, print; 1 when the polls' statements differ or a request
    failed."""
    token = secrets.token_urlsafe(24)
    engine = create_read_only_engine(url, statement_timeout_ms=config.WEB_STATEMENT_TIMEOUT_MS)
    try:
        app = create_app(engine, token=token, settings=LiveSettings(refresh_s=args.refresh))
        dashboard = app.app.state.dashboard
        live: LiveData = dashboard.live
        probe = Probe(engine, live)  # before the server starts: its poller is timed from the first
        with running_server(app) as server:
            headers = {"Authorization": f"Bearer {token}"}
            bench = Bench(
                clients, server.base_url, headers, live, dashboard, probe, Backends(admin), args
            )
            probe.wait_polls(1, 60)  # the first poll: the pulse and the data version
            reading = live.reading
            assert reading is not None
            symbol = str(reading.pulse.feed[0]["symbol"])
            one = f"/api/overview?symbol={symbol}&days=30"
            label = "GET /api/overview?symbol=S&days=30"
            # 1. throughput and latency, the baseline first
            baseline = bench.load(STATUS, "/api/status")
            bench.load(OVERVIEW, "/api/overview", baseline)
            bench.load(f"{label} (warm)", one, baseline)
            # 2. cold views
            bench.cold("GET /api/overview (cold)", "/api/overview")
            bench.cold_burst(f"GET /api/overview, {args.clients} at once (cold)", "/api/overview")
            bench.cold(f"{label} (cold)", one)
            # 3. polls with 1 and with --sse-clients streams, nothing else in flight
            clear_views(live)
            one_stream = bench.polls(1)
            many = bench.polls(args.sse_clients)
            streams = clients.run(kind="close_streams")
            # 4. the window reads behind a cold view
            bench.window_read(
                f"window read, default ({DashboardFilter().days} days)", DashboardFilter()
            )
            bench.window_read("window read, symbol=S, 30 days", DashboardFilter(symbol, days=30))
        print_report(args, bench, symbol, (one_stream, many), streams)
    finally:
        engine.dispose()
    one_counts = {record.statements for record in one_stream}
    many_counts = {record.statements for record in many}
    if one_counts != many_counts or len(one_counts) != 1:
        print(f"FAIL: statements per poll differ: {sorted(one_counts)} vs {sorted(many_counts)}")
        return 1
    if bench.failures:
        print("FAIL: " + "; ".join(bench.failures))
        return 1
    return 0


def print_report(
    args: argparse.Namespace,
    bench: Bench,
    symbol: str,
    polls: tuple[list[PollRecord], list[PollRecord]],
    streams: list[tuple[int | None, int, int]],
) -> None:
    one_stream, many = polls
    print(
        f"load: {args.clients} concurrent clients ({args.client} client, one keep-alive"
        f" connection each), {args.duration:g} s per line after a {WARMUP_S:g} s warm-up;"
        f" S = {symbol}; poller every {args.refresh:g} s"
    )
    print(LOAD_HEAD, *bench.load_rows, sep="\n")
    print("cold: the view cache emptied before each; PostgreSQL's own cache warm")
    print(COLD_HEAD, *bench.cold_rows, sep="\n")
    print(f"polls: every {args.refresh:g} s, no page request in flight")
    print(POLL_HEAD)
    print(poll_row(1, one_stream), poll_row(args.sse_clients, many), sep="\n")
    received = [messages for status, messages, _ in streams if status == 200]
    print(
        f"  streams: {len(received)} of {len(streams)} answered 200, with"
        f" {min(received, default=0)} to {max(received, default=0)} data messages each"
    )
    print("notes:")
    print(
        f"  {os.cpu_count()} CPUs shared by the server (one process, one GIL), PostgreSQL and"
        " the client process; srv ms/req: the server process's CPU per request; cores: CPU"
        " seconds per second of the server, the client, the dashboard's PostgreSQL backends"
        " and everything else on the machine"
    )
    if max(bench.others, default=0.0) > OTHER_LOAD_CORES:
        print(
            f"  other work used up to {max(bench.others):.2f} cores during the load runs:"
            " the rates are lower than on an idle machine"
        )
    print(*(f"  {note}" for note in bench.notes), sep="\n")
    pulse = [record.ms for record in one_stream + many]
    status_rate, overview_rate = bench.rates[STATUS], bench.rates[OVERVIEW]
    same = {r.statements for r in one_stream} == {r.statements for r in many}
    print(
        f"summary: {args.rows:,} rows: warm overview {overview_rate:.0f} req/s"
        f" ({overview_rate / max(status_rate, 1):.2f}x /api/status's {status_rate:.0f});"
        f" poll {statistics.median(pulse):.1f} ms; {one_stream[0].statements} statements per"
        f" poll with 1 stream, {many[0].statements} with {args.sse_clients}"
        f" ({'equal' if same else 'DIFFERENT'})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    add_history_arguments(parser)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--sse-clients", type=int, default=20)
    parser.add_argument("--polls", type=int, default=10)
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load client: a minimal keep-alive HTTP/1.1 one (default) or httpx.AsyncClient",
    )
    parser.add_argument(
        "--analyze",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ANALYZE ml_prediction_daily first, as autovacuum would in time (default); "
        "--no-analyze: measure it as rebuild_rollups leaves it",
    )
    parser.add_argument("--refresh", type=float, default=0.5, help="poll interval, seconds")
    args = parser.parse_args()
    clients = Clients()  # started first: a spawned child, not a fork of a threaded process
    try:
        with history_database(args, "bench_serve") as (engine, url):
            print(f"rollup statistics: {rollup_statistics(engine, analyze=args.analyze)}")
            return run(args, engine, url, clients)
    finally:
        clients.close()


if __name__ == "__main__":
    sys.exit(main())
