"""A process that logs predictions the way a trading bot does, and the parent's handle on it;
the fault tests (tests/test_durability_faults.py) and bench/bench_durability.py kill it.

Run as ``python -m tests.durability_child`` from the repository root: the child imports
mlpred, then reads one JSON ``ChildConfig`` line on stdin (so a parent can start it ahead of
time and hand it its work when the fault is ready), creates an ``MLPredictionLogger`` and logs
predictions at ``rate`` per second. Right after each ``log_prediction_sync`` returns it writes
``<prediction_id> <symbol>`` to the ids file with one ``write`` (no buffering), so the parent
knows exactly which predictions were accepted even after SIGKILL (at most one more was
accepted and not written yet). Every 0.1 s it writes ``stats()`` to the stats file; after
``count`` predictions it either closes the logger and writes the ``CloseReport`` and final
stats to the result file (``then="close"``), or idles until killed (``then="wait"``). When a
SIGTERM closes the logger (mlpred's handler), it stops logging and idles until the handler's
second SIGTERM ends it. SIGINT is Python's: ``KeyboardInterrupt``, then ``atexit``.

The parent's side: ``Child`` / ``ChildPool`` (start children ahead, hand them work, read what
they accepted, kill them), the outages ``StoppedServer`` and ``LockedSqlite``, and read-only
views of what survived (``stored_counts``, ``journal_records``, ``dead_letter_ids``).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from mlpred_cli.capture.journal_records import ScannedRecord
    from mlpred_cli.capture.pending_prediction import PendingPrediction

REPOSITORY = Path(__file__).resolve().parents[1]


@dataclass
class ChildConfig:
    """What one child does."""

    database: str
    spool_dir: str
    ids_file: str
    stats_file: str
    result_file: str
    logger: dict[str, Any] = field(default_factory=dict)  # MLPredictionLogger keyword arguments
    count: int = 0  # 0: until killed
    rate: float = 1000.0  # predictions per second; 0: as fast as possible
    bad_symbol: str = "BAD"  # the symbol of the rows the database will reject
    bad_every: int = 0  # every n-th prediction is a bad one (0: none)
    bad_limit: int = 0  # at most this many bad ones (0: no limit)
    then: str = "close"  # after ``count``: "close" or "wait"
    flush_s: float = 0.0  # before "close": wait this long for everything to be committed
    seed: int = 0


@dataclass(frozen=True)
class Accepted:
    """One prediction the child's logger accepted."""

    prediction_id: str
    symbol: str


# ---------------------------------------------------------------- the child


def _write_json(path: Path, value: object) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(value, default=str))
    partial.replace(path)


def _report_stats(logger: Any, path: Path, stop: threading.Event) -> None:
    while not stop.wait(0.1):
        try:
            _write_json(path, {"at": time.time(), **logger.stats()})
        except Exception as error:  # the report must never end the child
            print(f"stats report failed: {error!r}", file=sys.stderr, flush=True)


def _idle_forever() -> None:
    while True:
        time.sleep(3600)


def run_child(config: ChildConfig) -> None:
    """Log predictions as ``config`` says (the child's main)."""
    import numpy as np

    from mlpred_cli import MLPredictionLogger
    from mlpred_cli.errors import LoggerClosed

    rng = np.random.default_rng(config.seed or os.getpid())
    vectors = rng.normal(size=(512, 240))
    raw = rng.normal(size=20)
    logger = MLPredictionLogger(config.database, spool_dir=config.spool_dir, **config.logger)
    stop_stats = threading.Event()
    threading.Thread(
        target=_report_stats,
        args=(logger, Path(config.stats_file), stop_stats),
        name="child-stats",
        daemon=True,
    ).start()
    ids = os.open(config.ids_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    started = time.monotonic()
    logged = bad = 0
    while config.count == 0 or logged < config.count:
        symbol = "BTCUSDT"
        due = bool(config.bad_every) and logged % config.bad_every == config.bad_every - 1
        if due and (not config.bad_limit or bad < config.bad_limit):
            symbol = config.bad_symbol
            bad += 1
        try:
            prediction_id = logger.log_prediction_sync(
                symbol=symbol, features=vectors[logged % 512], model_outputs=raw
            )
        except LoggerClosed:  # mlpred's SIGTERM handler closed it: the process ends soon
            _idle_forever()
        os.write(ids, f"{prediction_id} {symbol}\n".encode())
        logged += 1
        if config.rate:
            ahead = started + logged / config.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    if config.then == "wait":
        _idle_forever()
    if config.flush_s:
        logger.flush_sync(config.flush_s)
    report = logger.close_sync()
    stop_stats.set()
    _write_json(
        Path(config.result_file),
        {"report": dataclasses.asdict(report), "stats": logger.stats()},
    )


def main() -> None:
    """Import mlpred, wait for the config line on stdin, then run it."""
    import mlpred_cli.capture.logger  # noqa: F401  (the slow imports, before the config)

    line = sys.stdin.readline()
    if not line.strip():
        return  # the parent closed stdin without work: a standby child it no longer needs
    run_child(ChildConfig(**json.loads(line)))


# ---------------------------------------------------------------- the parent's side


def stored_counts(database: str) -> collections.Counter[str]:
    """How many times each prediction_id is in ``ml_predictions``."""
    import sqlalchemy as sa

    from mlpred_cli.store.database import create_engine
    from mlpred_cli.store.tables import predictions_table

    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            column = predictions_table.c.prediction_id
            rows = conn.execute(sa.select(column, sa.func.count()).group_by(column))
            return collections.Counter({str(pid): count for pid, count in rows})
    finally:
        engine.dispose()


def journal_records(spool_dir: Path) -> Iterator[tuple[Path, ScannedRecord, PendingPrediction]]:
    """Every intact prediction record of the journal segments in ``spool_dir`` (read only:
    nothing is quarantined), with its segment and place."""
    from mlpred_cli.capture.journal_records import ScannedRecord, decode, scan
    from mlpred_cli.capture.pending_prediction import PendingPrediction

    for path in sorted(spool_dir.glob("journal-*.seg")):
        for found in scan(path.read_bytes()):
            if isinstance(found, ScannedRecord):
                record = decode(found.payload)
                if isinstance(record, PendingPrediction):
                    yield path, found, record


def journaled_ids(spool_dir: Path) -> set[str]:
    """prediction_ids of every intact record in the journal segments of ``spool_dir``."""
    return {str(record.prediction_id) for _path, _found, record in journal_records(spool_dir)}


def dead_letter_ids(spool_dir: Path) -> collections.Counter[str]:
    """How many times each prediction_id is in ``dead-letter.jsonl``."""
    path = spool_dir / "dead-letter.jsonl"
    if not path.is_file():
        return collections.Counter()
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return collections.Counter(json.loads(line)["row"]["prediction_id"] for line in lines)


class Outage(Protocol):
    """A database made unavailable (``begin``) and available again (``end``)."""

    def begin(self) -> None: ...
    def end(self) -> None: ...


class StoppedServer:
    """PostgreSQL outage: a test-owned server (``tests.pg_server.PgCluster``) stopped at once,
    as by a crash, then started again."""

    def __init__(self, cluster: Any) -> None:
        self._cluster = cluster

    def begin(self) -> None:
        self._cluster.stop("immediate")

    def end(self) -> None:
        self._cluster.start()


class LockedSqlite:
    """SQLite outage: another connection holds an EXCLUSIVE lock on the database file (a
    writer waits in SQLite's busy handler, then fails with 'database is locked')."""

    def __init__(self, database: str) -> None:
        self._database = database
        self._engine: Engine | None = None
        self._conn: Connection | None = None

    def begin(self) -> None:
        from mlpred_cli.store.database import SQLITE_BEGIN_OPTION, create_engine

        self._engine = create_engine(self._database)
        conn = self._engine.connect().execution_options(**{SQLITE_BEGIN_OPTION: "EXCLUSIVE"})
        conn.begin()
        self._conn = conn

    def end(self) -> None:
        if self._conn is not None:
            self._conn.rollback()
            self._conn.close()
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


class Child:
    """A child process started ahead of its work (``spawn``), then given it (``start``)."""

    def __init__(self, process: subprocess.Popen[bytes], stderr_path: Path) -> None:
        self.process = process
        self.stderr_path = stderr_path
        self.config: ChildConfig | None = None
        self.started_at = 0.0

    @classmethod
    def spawn(cls, stderr_path: Path, env: dict[str, str] | None = None) -> Child:
        """Start a child that imports mlpred and waits for its config."""
        environment = dict(os.environ if env is None else env)
        environment.pop("MLPRED_DATABASE_URL", None)
        environment.setdefault("LOG_LEVEL", "WARNING")
        handle: IO[bytes] = stderr_path.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.durability_child"],
            cwd=REPOSITORY,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=handle,
            env=environment,
            start_new_session=True,
        )
        handle.close()
        return cls(process, stderr_path)

    def start(self, config: ChildConfig) -> None:
        """Hand the child its work."""
        assert self.process.stdin is not None
        self.config = config
        self.process.stdin.write((json.dumps(dataclasses.asdict(config)) + "\n").encode())
        self.process.stdin.close()
        self.started_at = time.monotonic()

    def accepted(self) -> list[Accepted]:
        """Predictions accepted so far (complete lines of the ids file)."""
        assert self.config is not None
        try:
            data = Path(self.config.ids_file).read_bytes()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1].decode()
        found = []
        for line in complete.splitlines():
            prediction_id, _, symbol = line.partition(" ")
            found.append(Accepted(prediction_id, symbol))
        return found

    def accepted_count(self) -> int:
        """How many predictions were accepted so far."""
        assert self.config is not None
        try:
            return Path(self.config.ids_file).read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    def stats(self) -> dict[str, Any] | None:
        """The child's latest ``stats()`` (None before the first report)."""
        assert self.config is not None
        try:
            value: dict[str, Any] = json.loads(Path(self.config.stats_file).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return value

    def result(self) -> dict[str, Any]:
        """The close report and final stats of a child that closed its logger."""
        assert self.config is not None
        value: dict[str, Any] = json.loads(Path(self.config.result_file).read_text())
        return value

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``condition`` until true; fail (with the child's stderr) after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"child exited ({self.process.returncode}) before {what}:\n{self.stderr()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.stderr()}")
            time.sleep(0.02)

    def wait_accepted(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` predictions were accepted."""
        self.wait_until(lambda: self.accepted_count() >= count, timeout, f"{count} accepted")

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the child."""
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)

    def wait(self, timeout: float) -> int:
        """Wait for the child to end; its return code (negative: killed by that signal)."""
        return self.process.wait(timeout)

    def stderr(self) -> str:
        """What the child wrote to stderr (mlpred's warnings and errors)."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tracebacks(self, allowed: tuple[str, ...] = ()) -> list[str]:
        """Tracebacks in the child's stderr other than those ending in one of ``allowed``
        (exception names, e.g. KeyboardInterrupt)."""
        found = []
        lines = self.stderr().splitlines()
        for index, line in enumerate(lines):
            if not line.startswith("Traceback"):
                continue
            block = [line]
            for following in lines[index + 1 :]:
                block.append(following)
                if following and not following[0].isspace():
                    break
            if not allowed or not block[-1].startswith(allowed):
                found.append("\n".join(block))
        return found


class ChildPool:
    """Keeps ``ahead`` children started ahead of their work (their imports take a second or
    two), so a scenario's child is ready when the scenario is."""

    def __init__(self, directory: Path, ahead: int = 2) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._directory = directory
        self._spawned = 0
        self._all: list[Child] = []
        self._ready: collections.deque[Child] = collections.deque(
            self._spawn() for _ in range(max(ahead, 1))
        )

    def _spawn(self) -> Child:
        self._spawned += 1
        child = Child.spawn(self._directory / f"child-{self._spawned:03d}.stderr")
        self._all.append(child)
        return child

    def start(self, config: ChildConfig) -> Child:
        """A started child running ``config``; another is spawned ahead for the next call."""
        child = self._ready.popleft() if self._ready else self._spawn()
        self._ready.append(self._spawn())
        child.start(config)
        return child

    def close(self) -> None:
        """End every child still running: a standby child gets an empty stdin (it exits), a
        child at work is killed."""
        for child in self._all:
            if child.config is None and child.process.stdin is not None:
                child.process.stdin.close()
            elif child.process.poll() is None:
                child.process.send_signal(signal.SIGKILL)
        for child in self._all:
            try:
                child.process.wait(10)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(10)


if __name__ == "__main__":
    main()
