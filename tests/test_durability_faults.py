"""The durability audit, fault by fault: a child process logs predictions and is killed
(SIGKILL at a random point, SIGTERM, SIGINT) while the database is up, down, hung or
rejecting rows; after the database is back and the spool is replayed, every prediction_id the
child's logger accepted is in ``ml_predictions`` exactly once (or, for rows the database
rejects, in ``dead-letter.jsonl``).

The child is tests/durability_child.py (it writes each accepted id to a file the moment
``log_prediction_sync`` returns). Faults that stop or freeze PostgreSQL use a cluster owned by
the test session (tests/pg_server.py), never the shared server; on SQLite an outage is an
EXCLUSIVE lock held by another connection.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine, make_url

from mlpred_cli import MLPredictionLogger
from tests.cli_helpers import run_cli
from tests.durability_child import (
    Accepted,
    Child,
    ChildConfig,
    ChildPool,
    LockedSqlite,
    Outage,
    StoppedServer,
    dead_letter_ids,
    journal_records,
    journaled_ids,
    stored_counts,
)
from tests.factories import install_poison_rule
from tests.pg_server import PgCluster, free_port, pg_cluster  # noqa: F401  (fixture)

#: Each child may have accepted one prediction it had not yet reported when it was killed.
UNREPORTED_PER_KILL = 1


# ---------------------------------------------------------------- harness


@pytest.fixture(scope="module")
def children(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildPool]:
    """Child processes, two always started ahead (their imports take seconds)."""
    pool = ChildPool(tmp_path_factory.mktemp("children"))
    yield pool
    pool.close()


@pytest.fixture
def own_pg(pg_cluster: PgCluster) -> Iterator[str]:  # noqa: F811
    """A fresh migrated database on the test-owned cluster; the cluster is left running and
    thawed whatever the test did to it."""
    pg_cluster.ensure_running()
    url = pg_cluster.create_database()
    yield url
    pg_cluster.ensure_running()
    pg_cluster.drop_database(url)


def _config(tmp_path: Path, database: str, run: int = 0, **changes: Any) -> ChildConfig:
    logger = {"batch_size": 50, "flush_interval_s": 0.05, "close_timeout_s": 3.0}
    logger.update(changes.pop("logger", {}))
    return ChildConfig(
        database=database,
        spool_dir=str(tmp_path / "spool"),
        ids_file=str(tmp_path / f"ids-{run}.txt"),
        stats_file=str(tmp_path / f"stats-{run}.json"),
        result_file=str(tmp_path / f"result-{run}.json"),
        logger=logger,
        **changes,
    )


def _assert_on_disk_or_stored(url: str, spool_dir: Path, accepted: Iterable[Accepted]) -> int:
    """Before any replay: an accepted prediction not in the database is in the journal.
    Returns how many accepted predictions only the journal holds."""
    stored = stored_counts(url)
    waiting = {a.prediction_id for a in accepted} - set(stored)
    not_kept = waiting - journaled_ids(spool_dir)
    assert not not_kept, f"{len(not_kept)} accepted predictions are neither stored nor on disk"
    return len(waiting)


def _assert_exactly_once(
    url: str, accepted: list[Accepted], *, kills: int, rejected: str | None = None
) -> Counter[str]:
    """Every accepted prediction (but those of symbol ``rejected``) is stored exactly once,
    nothing is stored twice, and at most one unreported prediction per kill is stored."""
    stored = stored_counts(url)
    duplicated = {pid: n for pid, n in stored.items() if n > 1}
    assert not duplicated, f"{len(duplicated)} prediction_ids stored more than once"
    expected = {a.prediction_id for a in accepted if a.symbol != rejected}
    missing = expected - set(stored)
    assert not missing, f"{len(missing)} of {len(expected)} accepted predictions missing"
    if rejected is not None:
        bad = {a.prediction_id for a in accepted if a.symbol == rejected}
        assert not bad & set(stored), "a row the database rejects was stored"
    unreported = set(stored) - {a.prediction_id for a in accepted}
    assert len(unreported) <= kills * UNREPORTED_PER_KILL, f"{len(unreported)} unexpected rows"
    return stored


def _segments(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.glob("journal-*.seg"))


def _replay_with_logger(url: str, spool_dir: Path, timeout: float = 30.0) -> dict[str, object]:
    """A new logger on the spool directory replays what dead loggers left; returns its stats
    once every segment is gone (it logs nothing itself, so it has no segment of its own)."""
    with MLPredictionLogger(
        url, spool_dir=spool_dir, flush_interval_s=0.02, handle_signals=False
    ) as logger:
        deadline = time.monotonic() + timeout
        while _segments(spool_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = logger.stats()
    assert not _segments(spool_dir), f"segments left after {timeout} s: {stats}"
    return stats


def _replay_with_cli(url: str, spool_dir: Path) -> dict[str, Any]:
    code, out, err = run_cli(
        "--db", url, "spool", "replay", "--spool-dir", str(spool_dir), "--format", "json"
    )
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def _spool_status(url: str, spool_dir: Path) -> dict[str, Any]:
    code, out, err = run_cli(
        "--db", url, "spool", "status", "--spool-dir", str(spool_dir), "--format", "json"
    )
    assert code == 0, err
    status: dict[str, Any] = json.loads(out)
    return status


def _assert_no_tracebacks(child: Child, allowed: tuple[str, ...] = ()) -> None:
    found = child.tracebacks(allowed)
    assert not found, "the child printed a traceback:\n" + "\n\n".join(found)


@pytest.fixture
def outage_db(backend: str, request: pytest.FixtureRequest) -> Iterator[tuple[str, Outage]]:
    """A migrated database and a way to make it unavailable: the test-owned PostgreSQL
    server stopped, or an EXCLUSIVE lock on the SQLite file."""
    if backend == "sqlite":
        url = request.getfixturevalue("db_url")
        outage = LockedSqlite(url)
        try:
            yield url, outage
        finally:
            outage.end()
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    yield request.getfixturevalue("own_pg"), StoppedServer(cluster)


# ---------------------------------------------------------------- kill -9


def test_kill9_while_logging_every_accepted_prediction_lands_once(
    db_url: str, tmp_path: Path, children: ChildPool
) -> None:
    """kill -9 at random moments of logging at 1,000/s, the database up: each new child
    replays the journal of the one killed before it, a last logger replays the rest."""
    spool_dir = tmp_path / "spool"
    rng = random.Random()
    accepted: list[Accepted] = []
    kills = 2
    for run in range(kills):
        child = children.start(_config(tmp_path, db_url, run, rate=1000, then="wait"))
        child.wait_accepted(100)
        time.sleep(rng.uniform(0.1, 0.8))
        child.kill()
        _assert_no_tracebacks(child)
        accepted += child.accepted()
    assert len(accepted) >= 2 * 100
    _assert_on_disk_or_stored(db_url, spool_dir, accepted)
    _replay_with_logger(db_url, spool_dir)
    _assert_exactly_once(db_url, accepted, kills=kills)


def test_kill9_during_an_outage_loses_nothing(
    outage_db: tuple[str, Outage], tmp_path: Path, children: ChildPool
) -> None:
    """kill -9 1-2.5 s into a database outage (PostgreSQL stopped, SQLite locked), with
    max_pending small enough that segments are evicted from memory: what the child accepted
    meanwhile is in the journal; ``mlpred spool replay`` writes it once."""
    url, outage = outage_db
    spool_dir = tmp_path / "spool"
    config = _config(tmp_path, url, rate=1000, then="wait", logger={"max_pending": 200})
    child = children.start(config)
    child.wait_accepted(100)
    outage.begin()
    try:
        during = child.accepted_count()
        time.sleep(random.uniform(1.0, 2.5))
        stats = child.stats() or {}
        child.kill()
    finally:
        outage.end()
    _assert_no_tracebacks(child)
    accepted = child.accepted()
    assert len(accepted) - during >= 500  # the child went on logging while the database was away
    assert stats["evicted"] > 0  # memory stayed bounded: the oldest segments left memory
    assert _assert_on_disk_or_stored(url, spool_dir, accepted) >= 500
    result = _replay_with_cli(url, spool_dir)
    assert result["remaining_rows"] == 0
    _assert_exactly_once(url, accepted, kills=1)
    assert not _segments(spool_dir)


@pytest.mark.postgres_only
def test_kill9_after_the_database_hung(
    pg_cluster: PgCluster,  # noqa: F811
    own_pg: str,
    tmp_path: Path,
    children: ChildPool,
) -> None:
    """The server frozen (SIGSTOP): a write unanswered for write_timeout_s is broken and
    counted; after a thaw the child catches up by itself; frozen again, kill -9: every
    accepted row is stored or in the journal, and the replay writes each once."""
    spool_dir = tmp_path / "spool"
    config = _config(tmp_path, own_pg, rate=1000, then="wait", logger={"write_timeout_s": 1.0})
    child = children.start(config)
    child.wait_accepted(100)
    pg_cluster.freeze()
    try:
        child.wait_until(
            lambda: (child.stats() or {}).get("stalled_writes", 0) >= 1, 6.0, "a stalled write"
        )
    finally:
        pg_cluster.thaw()
    at_thaw = child.accepted_count()
    child.wait_until(
        lambda: int((child.stats() or {}).get("saved", 0)) >= at_thaw,
        10.0,
        "the writer to catch up after the thaw",
    )
    stats = child.stats() or {}
    assert stats["lost"] == 0
    pg_cluster.freeze()
    try:
        time.sleep(random.uniform(0.5, 2.0))
        child.kill()
    finally:
        pg_cluster.thaw()
    _assert_no_tracebacks(child)
    accepted = child.accepted()
    assert _assert_on_disk_or_stored(own_pg, spool_dir, accepted) > 0
    _replay_with_logger(own_pg, spool_dir)
    _assert_exactly_once(own_pg, accepted, kills=1)


# ---------------------------------------------------------------- SIGTERM, SIGINT


def test_sigterm_with_the_database_down_exits_in_time_and_loses_nothing(
    outage_db: tuple[str, Outage], tmp_path: Path, children: ChildPool
) -> None:
    """SIGTERM 1 s into a 3 s outage: mlpred's handler closes the logger within
    close_timeout_s and the process ends killed by SIGTERM; the journal keeps the rest."""
    url, outage = outage_db
    spool_dir = tmp_path / "spool"
    close_timeout_s = 2.5
    config = _config(
        tmp_path, url, rate=1000, then="wait", logger={"close_timeout_s": close_timeout_s}
    )
    child = children.start(config)
    child.wait_accepted(100)
    outage.begin()
    began = time.monotonic()
    try:
        time.sleep(1.0)
        sent = time.monotonic()
        child.signal(signal.SIGTERM)
        code = child.wait(close_timeout_s + 10)
        took = time.monotonic() - sent
        time.sleep(max(0.0, began + 3.0 - time.monotonic()))
    finally:
        outage.end()
    assert code == -signal.SIGTERM
    assert took < close_timeout_s + 3.0, f"SIGTERM took {took:.1f} s"
    assert "SIGTERM: closing 1 prediction logger" in child.stderr()
    _assert_no_tracebacks(child)
    accepted = child.accepted()
    assert _assert_on_disk_or_stored(url, spool_dir, accepted) > 0
    _replay_with_logger(url, spool_dir)
    _assert_exactly_once(url, accepted, kills=1)


def test_ctrl_c_with_the_database_down_exits_within_seconds_and_loses_nothing(
    outage_db: tuple[str, Outage], tmp_path: Path, children: ChildPool
) -> None:
    """SIGINT (Ctrl-C) while the database is away, default close_timeout_s (10 s): the
    process ends within a few seconds (everything is in the journal, nothing to wait for)."""
    url, outage = outage_db
    spool_dir = tmp_path / "spool"
    config = _config(tmp_path, url, rate=1000, then="wait", logger={"close_timeout_s": 10.0})
    child = children.start(config)
    child.wait_accepted(100)
    outage.begin()
    try:
        time.sleep(1.0)
        sent = time.monotonic()
        child.signal(signal.SIGINT)
        code = child.wait(20)
        took = time.monotonic() - sent
    finally:
        outage.end()
    assert code == -signal.SIGINT  # KeyboardInterrupt, atexit closed the logger
    _assert_no_tracebacks(child, allowed=("KeyboardInterrupt",))
    accepted = child.accepted()
    assert _assert_on_disk_or_stored(url, spool_dir, accepted) > 0
    _replay_with_logger(url, spool_dir)
    _assert_exactly_once(url, accepted, kills=1)
    assert took < 5.0, f"Ctrl-C took {took:.1f} s to end the process"


# ---------------------------------------------------------------- rows the database rejects


def _deny_bad_rows(engine: Engine) -> None:
    """Reject rows of symbol BAD: a trigger raising SQLSTATE 42501 on PostgreSQL, a
    RAISE(ABORT) trigger on SQLite."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION mlpred_deny_bad() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN IF NEW.symbol = 'BAD' THEN "
                "RAISE EXCEPTION 'denied: permission' USING ERRCODE = '42501'; "
                "END IF; RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER deny_bad BEFORE INSERT ON ml_predictions "
                "FOR EACH ROW EXECUTE FUNCTION mlpred_deny_bad()"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER deny_bad BEFORE INSERT ON ml_predictions "
                "WHEN NEW.symbol = 'BAD' BEGIN SELECT RAISE(ABORT, 'denied: permission'); END"
            )


def test_a_trigger_rejecting_some_rows_dead_letters_them_and_writes_the_rest(
    engine: Engine, db_url: str, tmp_path: Path, children: ChildPool
) -> None:
    spool_dir = tmp_path / "spool"
    _deny_bad_rows(engine)
    # On a loaded machine isolating a rejected batch can take over a second without a
    # commit, which close() takes for a stalled database (the rows stay in the journal);
    # this test is about dead letters, so it lets the writer finish first.
    config = _config(tmp_path, db_url, count=1000, rate=0, bad_every=100, flush_s=30.0)
    child = children.start(config)
    assert child.wait(60) == 0, child.stderr()
    _assert_no_tracebacks(child)
    result = child.result()
    accepted = child.accepted()
    bad = {a.prediction_id for a in accepted if a.symbol == "BAD"}
    assert len(bad) == 10
    assert result["report"] == {
        "logged": 1000, "saved": 990, "on_disk": 0, "dead_lettered": 10, "lost": 0
    }  # fmt: skip
    assert dead_letter_ids(spool_dir) == Counter(bad)
    errors = (spool_dir / "dead-letter.jsonl").read_text().splitlines()
    assert all(json.loads(line)["error"].startswith("denied: permission") for line in errors)
    _assert_exactly_once(db_url, accepted, kills=0, rejected="BAD")
    status = _spool_status(db_url, spool_dir)
    assert (status["rows"], status["live_rows"], status["dead_lettered"]) == (0, 0, 10)
    assert not _segments(spool_dir)


def test_kill9_after_rows_were_dead_lettered_leaves_one_dead_letter_per_row(
    engine: Engine, db_url: str, tmp_path: Path, children: ChildPool
) -> None:
    """kill -9 after the writer dead-lettered some rows: the replay of the dead logger's
    segment must not dead-letter them a second time (dead-letter.jsonl is what a human reads
    and what ``spool replay --dead-letters`` retries; ``spool status`` counts its lines)."""
    spool_dir = tmp_path / "spool"
    _deny_bad_rows(engine)
    child = children.start(_config(tmp_path, db_url, rate=2000, bad_every=50, then="wait"))
    child.wait_until(
        lambda: (child.stats() or {}).get("dead_lettered", 0) >= 10, 20.0, "10 dead letters"
    )
    child.kill()
    accepted = child.accepted()
    bad = {a.prediction_id for a in accepted if a.symbol == "BAD"}
    _replay_with_cli(db_url, spool_dir)
    _assert_exactly_once(db_url, accepted, kills=1, rejected="BAD")
    letters = dead_letter_ids(spool_dir)
    assert bad <= set(letters)
    twice = sorted(pid for pid, count in letters.items() if count > 1)
    assert not twice, f"{len(twice)} of {len(letters)} rejected rows were dead-lettered twice"
    assert _spool_status(db_url, spool_dir)["dead_lettered"] == len(letters)


def test_a_failing_dead_letter_file_keeps_poison_rows_in_the_journal_until_fixed(
    engine: Engine, db_url: str, tmp_path: Path, children: ChildPool
) -> None:
    """dead-letter.jsonl cannot be opened (a directory in its place) and 10 rows are poison:
    the good rows are all written, the 10 stay in the journal (counted, not lost); once the
    file can be written, a new logger dead-letters them."""
    spool_dir = tmp_path / "spool"
    install_poison_rule(engine)
    spool_dir.mkdir(mode=0o700)
    (spool_dir / "dead-letter.jsonl").mkdir()
    config = _config(tmp_path, db_url, count=1000, rate=0, bad_symbol="POISON", bad_every=100)
    child = children.start(config)
    assert child.wait(60) == 0, child.stderr()
    _assert_no_tracebacks(child)
    result = child.result()
    accepted = child.accepted()
    poison = {a.prediction_id for a in accepted if a.symbol == "POISON"}
    assert len(poison) == 10
    assert result["report"] == {
        "logged": 1000, "saved": 990, "on_disk": 10, "dead_lettered": 0, "lost": 0
    }  # fmt: skip
    assert result["stats"]["dead_letter_errors"] == 10
    assert poison <= journaled_ids(spool_dir)
    _assert_exactly_once(db_url, accepted, kills=0, rejected="POISON")

    (spool_dir / "dead-letter.jsonl").rmdir()
    stats = _replay_with_logger(db_url, spool_dir)
    assert stats["dead_lettered"] == 10
    assert (stats["dead_letter_errors"], stats["lost"]) == (0, 0)
    assert dead_letter_ids(spool_dir) == Counter(poison)
    _assert_exactly_once(db_url, accepted, kills=0, rejected="POISON")
    status = _spool_status(db_url, spool_dir)
    assert (status["rows"], status["dead_lettered"]) == (0, 10)


# ---------------------------------------------------------------- a damaged journal


def _unreachable(backend: str, db_url: str, tmp_path: Path) -> str:
    """A URL no logger can write to now: a directory where the SQLite file should be, or a
    port nothing listens on."""
    if backend == "sqlite":
        path = tmp_path / "unreachable.db"
        path.mkdir()
        return f"sqlite:///{path}"
    return make_url(db_url).set(port=free_port()).render_as_string(hide_password=False)


def test_a_torn_and_corrupted_journal_costs_only_the_damaged_records(
    backend: str, db_url: str, tmp_path: Path, children: ChildPool
) -> None:
    """A segment cut inside its last record and with bytes corrupted inside record 100:
    replay writes the 198 intact records; each quarantine-*.bin holds exactly the bad bytes."""
    spool_dir = tmp_path / "spool"
    unreachable = _unreachable(backend, db_url, tmp_path)
    child = children.start(_config(tmp_path, unreachable, count=200, rate=0))
    assert child.wait(60) == 0, child.stderr()
    assert child.result()["report"]["on_disk"] == 200
    accepted = child.accepted()
    (segment,) = _segments(spool_dir)
    records = [(found, str(item.prediction_id)) for _p, found, item in journal_records(spool_dir)]
    assert [pid for _found, pid in records] == [a.prediction_id for a in accepted]

    data = bytearray(segment.read_bytes())
    middle = records[100][0]
    middle_end = records[101][0].offset
    data[middle.offset + 40 : middle.offset + 48] = b"\xff" * 8  # inside its payload
    last = records[199][0]
    cut = last.offset + (len(data) - last.offset) // 2
    del data[cut:]  # torn inside the last record
    segment.write_bytes(bytes(data))
    damaged = {records[100][1], records[199][1]}

    result = _replay_with_cli(db_url, spool_dir)
    assert (result["replayed"], result["quarantined_regions"]) == (198, 2)
    intact = [a for a in accepted if a.prediction_id not in damaged]
    stored = _assert_exactly_once(db_url, intact, kills=0)
    assert not damaged & set(stored)

    quarantined = sorted(spool_dir.glob("quarantine-*.bin"))
    assert [path.read_bytes() for path in quarantined] == [
        bytes(data[middle.offset : middle_end]),
        bytes(data[last.offset :]),
    ]
    status = _spool_status(db_url, spool_dir)
    assert (status["rows"], status["quarantined_files"]) == (0, 2)
    assert status["quarantined_bytes"] == (middle_end - middle.offset) + (cut - last.offset)
    assert not _segments(spool_dir)
