"""Benchmark of durability under faults: the write-ahead-journal issue's audit table,
re-measured at a larger scale (per fault: predictions accepted, stored exactly once,
dead-lettered, stored twice, lost).

Run:  python bench/bench_durability.py [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]
                                       [--kills 10] [--seed 1]

A child process (tests/durability_child.py) logs predictions and reports each accepted
prediction_id the moment ``log_prediction_sync`` returns; the bench injects the fault, kills
the child (SIGKILL at a random moment, or SIGTERM), brings the database back, replays the
spool (``replay_spool``) and counts every accepted id in ``ml_predictions`` and
``dead-letter.jsonl``. Faults with the database up use a throw-away database on ``--pg-url``
(and a SQLite file); stopping and freezing PostgreSQL happens on a cluster of the bench's own
(initdb / pg_ctl in a temporary directory, tests/pg_server.py), never on ``--pg-url``. Rows
marked "baseline" are measured in the same run: the same fault with the logger configured as
mlpred was before the journal (``journal=False``, ``handle_signals=False``; memory-only mode
still spills a batch that has failed for ``spool_after_s``, so it loses less than the old
logger did).
Takes about three minutes.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.*

from throwaway import throwaway_database

from mlpred_cli.capture.spool_replay import replay_spool
from mlpred_cli.store.database import create_engine
from mlpred_cli.store.migrations import upgrade_to_head
from tests.durability_child import (
    Accepted,
    ChildConfig,
    ChildPool,
    LockedSqlite,
    Outage,
    StoppedServer,
    dead_letter_ids,
    journal_records,
    stored_counts,
)
from tests.pg_server import PgCluster, free_port, unavailable_reason

RATE = 1000.0  # predictions per second while logging
BEFORE = {"journal": False, "handle_signals": False}  # the baseline: no journal, no handler


@dataclass
class Tally:
    """One row of the table."""

    fault: str
    backend: str
    runs: int = 0
    accepted: int = 0
    stored_once: int = 0
    dead_lettered: int = 0
    duplicated: int = 0
    lost: int = 0
    notes: list[str] = field(default_factory=list)


class Bench:
    """Shared state: the child pool, a scratch directory, the random kill moments."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.pool = ChildPool(root / "children", ahead=2)
        self._runs = 0

    def config(self, database: str, spool_dir: Path, **changes: Any) -> ChildConfig:
        """A child config with files of its own; ``logger`` entries override the defaults."""
        self._runs += 1
        run = self.root / f"run-{self._runs:03d}"
        run.mkdir()
        logger = {"batch_size": 100, "flush_interval_s": 0.05}
        logger.update(changes.pop("logger", {}))
        return ChildConfig(
            database=database,
            spool_dir=str(spool_dir),
            ids_file=str(run / "ids.txt"),
            stats_file=str(run / "stats.json"),
            result_file=str(run / "result.json"),
            logger=logger,
            seed=self._runs,
            **changes,
        )

    def spool(self) -> Path:
        """A new, empty spool directory."""
        self._runs += 1
        return self.root / f"spool-{self._runs:03d}"


def count(
    tally: Tally,
    database: str,
    spool_dir: Path,
    accepted: list[Accepted],
    *,
    rejected: str | None = None,
    damaged: frozenset[str] = frozenset(),
) -> None:
    """Add what became of ``accepted`` to ``tally`` (after the replay)."""
    stored = stored_counts(database)
    letters = dead_letter_ids(spool_dir)
    for item in accepted:
        if item.prediction_id in damaged:
            continue
        tally.accepted += 1
        times = stored.get(item.prediction_id, 0)
        if rejected is not None and item.symbol == rejected:
            if times:
                tally.notes.append(f"rejected row {item.prediction_id} stored")
            if letters.get(item.prediction_id):
                tally.dead_lettered += 1
            else:
                tally.lost += 1
        elif times == 1:
            tally.stored_once += 1
        elif times > 1:
            tally.duplicated += 1
        else:
            tally.lost += 1
    twice = sum(1 for times in letters.values() if times > 1)
    if twice:
        tally.notes.append(f"{twice} ids dead-lettered 2+ times")


def replay(database: str, spool_dir: Path) -> None:
    """What a restarted bot (or ``mlpred spool replay``) does."""
    replay_spool(database, spool_dir)


# ---------------------------------------------------------------- faults


def kill_while_logging(
    bench: Bench, backend: str, database: str, kills: int, *, before: bool = False
) -> Tally:
    """kill -9 at a random moment 0.5-2 s into logging at 1,000/s, ``kills`` times on one
    spool directory (each new child replays its predecessor's journal)."""
    label = "baseline" if before else "now"
    tally = Tally(f"kill -9, database up, 1,000/s ({label})", backend)
    spool_dir = bench.spool()
    accepted: list[Accepted] = []
    logger = BEFORE if before else {}
    for _ in range(kills):
        child = bench.pool.start(
            bench.config(database, spool_dir, rate=RATE, then="wait", logger=logger)
        )
        child.wait_accepted(100)
        time.sleep(bench.rng.uniform(0.5, 2.0))
        child.kill()
        accepted += child.accepted()
        tally.runs += 1
    replay(database, spool_dir)
    count(tally, database, spool_dir, accepted)
    return tally


def kill_during_outage(
    bench: Bench,
    backend: str,
    database: str,
    outage: Outage,
    runs: int,
    *,
    before: bool = False,
) -> Tally:
    """kill -9 at a random moment 2-8 s into a database outage."""
    label = "baseline" if before else "now"
    tally = Tally(f"kill -9 2-8 s into an outage ({label})", backend)
    waits = []
    for _ in range(runs):
        spool_dir = bench.spool()
        logger = BEFORE if before else {}
        child = bench.pool.start(
            bench.config(database, spool_dir, rate=RATE, then="wait", logger=logger)
        )
        child.wait_accepted(200)
        outage.begin()
        try:
            wait = bench.rng.uniform(2.0, 8.0)
            waits.append(wait)
            time.sleep(wait)
            child.kill()
        finally:
            outage.end()
        replay(database, spool_dir)
        count(tally, database, spool_dir, child.accepted())
        tally.runs += 1
    tally.notes.append("killed at " + ", ".join(f"{wait:.1f}" for wait in waits) + " s")
    return tally


def kill_after_hang(bench: Bench, cluster: PgCluster, database: str, hang_s: float) -> Tally:
    """The server frozen (SIGSTOP) for ``hang_s`` (the default write_timeout_s is 15 s),
    then kill -9; thaw, replay."""
    tally = Tally(f"kill -9 after a {hang_s:.0f} s hang (SIGSTOP)", "postgresql")
    spool_dir = bench.spool()
    child = bench.pool.start(bench.config(database, spool_dir, rate=RATE, then="wait"))
    child.wait_accepted(200)
    cluster.freeze()
    frozen = time.monotonic()
    try:
        time.sleep(hang_s)
        stats = child.stats() or {}
        child.kill()
    finally:
        cluster.thaw()
    waited = time.monotonic() - frozen
    replay(database, spool_dir)
    count(tally, database, spool_dir, child.accepted())
    tally.runs = 1
    tally.notes.append(f"stalled_writes={stats.get('stalled_writes')} after {waited:.0f} s")
    return tally


def sigterm_during_outage(
    bench: Bench,
    backend: str,
    database: str,
    outage: Outage,
    runs: int,
    *,
    before: bool = False,
) -> Tally:
    """SIGTERM 1 s into a 3 s outage; close_timeout_s is the default (10 s)."""
    label = "baseline" if before else "now"
    tally = Tally(f"SIGTERM, database down 3 s ({label})", backend)
    exits: list[tuple[int, float]] = []
    for _ in range(runs):
        spool_dir = bench.spool()
        logger = BEFORE if before else {}
        child = bench.pool.start(
            bench.config(database, spool_dir, rate=RATE, then="wait", logger=logger)
        )
        child.wait_accepted(200)
        outage.begin()
        began = time.monotonic()
        try:
            time.sleep(1.0)
            sent = time.monotonic()
            child.signal(signal.SIGTERM)
            code = child.wait(60)
            exits.append((code, time.monotonic() - sent))
            time.sleep(max(0.0, began + 3.0 - time.monotonic()))
        finally:
            outage.end()
        replay(database, spool_dir)
        count(tally, database, spool_dir, child.accepted())
        tally.runs += 1
    codes = sorted({code for code, _took in exits})
    slowest = max(took for _code, took in exits)
    tally.notes.append(f"exit {codes}, slowest {slowest:.1f} s")
    return tally


def _deny_bad_rows(database: str) -> None:
    engine = create_engine(database)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION bench_deny_bad() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF NEW.symbol = 'BAD' THEN "
            "RAISE EXCEPTION 'permission denied for this row' USING ERRCODE = '42501'; "
            "END IF; RETURN NEW; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER deny_bad BEFORE INSERT ON ml_predictions "
            "FOR EACH ROW EXECUTE FUNCTION bench_deny_bad()"
        )
    engine.dispose()


def trigger_rejections(bench: Bench, database: str, predictions: int) -> list[Tally]:
    """A trigger raising SQLSTATE 42501 on 1 row in 200: a clean close, then kill -9
    while such rows are being dead-lettered."""
    _deny_bad_rows(database)
    clean = Tally("trigger raises 42501 on 0.5 % of rows", "postgresql")
    spool_dir = bench.spool()
    child = bench.pool.start(
        bench.config(database, spool_dir, count=predictions, rate=0, bad_every=200)
    )
    child.wait(300)
    report = child.result()["report"]
    replay(database, spool_dir)
    count(clean, database, spool_dir, child.accepted(), rejected="BAD")
    clean.runs = 1
    clean.notes.append(f"close: dead_lettered={report['dead_lettered']} lost={report['lost']}")

    killed = Tally("same, kill -9 while dead-lettering", "postgresql")
    spool_dir = bench.spool()
    child = bench.pool.start(
        bench.config(database, spool_dir, rate=2 * RATE, bad_every=200, then="wait")
    )
    child.wait_until(
        lambda: int((child.stats() or {}).get("dead_lettered", 0)) >= 10, 60, "dead letters"
    )
    time.sleep(bench.rng.uniform(0.0, 1.0))
    child.kill()
    replay(database, spool_dir)
    count(killed, database, spool_dir, child.accepted(), rejected="BAD")
    killed.runs = 1
    return [clean, killed]


def _install_poison(database: str) -> None:
    engine = create_engine(database)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "ALTER TABLE ml_predictions ADD CONSTRAINT no_poison CHECK (symbol <> 'POISON')"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER no_poison BEFORE INSERT ON ml_predictions "
                "WHEN NEW.symbol = 'POISON' BEGIN SELECT RAISE(ABORT, 'poison row'); END"
            )
    engine.dispose()


def dead_letter_failure(bench: Bench, database: str, predictions: int) -> Tally:
    """10 poison rows while dead-letter.jsonl cannot be opened (a directory in its place);
    then the directory is removed and the spool replayed."""
    tally = Tally("dead-letter unwritable + 10 poison rows", "postgresql")
    spool_dir = bench.spool()
    spool_dir.mkdir(mode=0o700)
    (spool_dir / "dead-letter.jsonl").mkdir()
    every = predictions // 10
    child = bench.pool.start(
        bench.config(
            database, spool_dir, count=predictions, rate=0, bad_symbol="POISON", bad_every=every
        )
    )
    child.wait(300)
    result = child.result()
    good_written = stored_counts(database)
    (spool_dir / "dead-letter.jsonl").rmdir()
    replay(database, spool_dir)
    accepted = child.accepted()
    count(tally, database, spool_dir, accepted, rejected="POISON")
    tally.runs = 1
    good = sum(1 for item in accepted if item.symbol != "POISON")
    stats = result["stats"]
    tally.notes.append(
        f"before fix: {len(good_written)}/{good} good stored, "
        f"dead_letter_errors={stats['dead_letter_errors']} lost={stats['lost']} "
        f"on_disk={result['report']['on_disk']}"
    )
    return tally


@contextmanager
def full_filesystem(root: Path) -> Iterator[Path | None]:
    """A 1 MiB tmpfs filled to the last byte (None when it cannot be mounted here)."""
    mount = root / "full-disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        yield None
        return
    try:
        (mount / "spool").mkdir(mode=0o700)
        with (mount / "filler").open("wb") as filler:
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass
        yield mount / "spool"
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, check=False)


def full_disk(bench: Bench, database: str, predictions: int) -> Tally:
    """The spool's filesystem full (journal and dead letters fail) + 10 poison rows: the
    good rows are written; the poison rows can be kept nowhere and must be counted lost."""
    tally = Tally("spool disk full (ENOSPC) + 10 poison rows", "postgresql")
    with full_filesystem(bench.root) as spool_dir:
        if spool_dir is None:
            tally.notes.append("skipped: cannot mount a tmpfs here")
            return tally
        every = predictions // 10
        child = bench.pool.start(
            bench.config(
                database, spool_dir, count=predictions, rate=0, bad_symbol="POISON",
                bad_every=every,
            )
        )  # fmt: skip
        child.wait(300)
        result = child.result()
        count(tally, database, spool_dir, child.accepted(), rejected="POISON")
    tally.runs = 1
    stats = result["stats"]
    tally.notes.append(
        f"journal_errors={stats['journal_errors']} lost counter={stats['lost']} "
        f"(poison rows have nowhere to go)"
    )
    return tally


def torn_journal(bench: Bench, database: str, predictions: int) -> Tally:
    """A segment with one record corrupted in the middle and torn inside its last record."""
    tally = Tally("torn + corrupted journal record", "postgresql")
    spool_dir = bench.spool()
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    child = bench.pool.start(
        bench.config(
            unreachable, spool_dir, count=predictions, rate=0, logger={"close_timeout_s": 2}
        )
    )
    child.wait(300)
    records = list(journal_records(spool_dir))
    middle_path, middle, middle_record = records[len(records) // 2]
    last_path, last, last_record = records[-1]
    damaged = frozenset({str(middle_record.prediction_id), str(last_record.prediction_id)})
    data = bytearray(middle_path.read_bytes())
    data[middle.offset + 40 : middle.offset + 48] = b"\xff" * 8  # inside its payload
    middle_path.write_bytes(bytes(data))
    data = bytearray(last_path.read_bytes())
    del data[last.offset + (len(data) - last.offset) // 2 :]  # torn inside the last record
    last_path.write_bytes(bytes(data))
    result = replay_spool(database, spool_dir)
    count(tally, database, spool_dir, child.accepted(), damaged=damaged)
    tally.runs = 1
    quarantined = sum(p.stat().st_size for p in spool_dir.glob("quarantine-*.bin"))
    tally.notes.append(
        f"2 damaged by the bench; {result.quarantined_regions} regions, "
        f"{quarantined} bytes quarantined"
    )
    return tally


# ---------------------------------------------------------------- main


def _sqlite_database(root: Path, name: str) -> str:
    url = f"sqlite:///{root / name}"
    engine = create_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    return url


def _timed(label: str, work: Callable[[], Tally | list[Tally]]) -> list[Tally]:
    started = time.perf_counter()
    result = work()
    print(f"  {label}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return result if isinstance(result, list) else [result]


def print_table(tallies: list[Tally]) -> None:
    """The audit table."""
    header = (
        f"{'fault':<42} {'backend':<10} {'runs':>4} {'accepted':>9} {'once':>9} "
        f"{'dead-let.':>9} {'dup':>5} {'lost':>6}  notes"
    )
    print(header)
    print("-" * len(header))
    for t in tallies:
        print(
            f"{t.fault:<42} {t.backend:<10} {t.runs:>4} {t.accepted:>9,} {t.stored_once:>9,} "
            f"{t.dead_lettered:>9,} {t.duplicated:>5,} {t.lost:>6,}  {'; '.join(t.notes)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--kills", type=int, default=10, help="kill -9 runs while logging")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    logging.getLogger("mlpred").setLevel(logging.CRITICAL)  # replays here; the table says it
    reason = unavailable_reason()
    if reason is not None:
        raise SystemExit(f"cannot run the stop/hang faults: {reason}")
    print(f"seed {args.seed}; progress on stderr", file=sys.stderr)
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="mlpred-bench-durability-"))
    cluster = PgCluster.create()
    cluster.start()
    bench = Bench(root, args.seed)
    tallies: list[Tally] = []
    try:
        with throwaway_database(args.pg_url, prefix="mlpred_bench_dur") as shared:
            shared_url = shared.render_as_string(hide_password=False)
            sqlite = _sqlite_database(root, "bench.db")
            tallies += _timed("kill -9 pg", lambda: kill_while_logging(
                bench, "postgresql", shared_url, args.kills))  # fmt: skip
            tallies += _timed("kill -9 pg before", lambda: kill_while_logging(
                bench, "postgresql", shared_url, max(args.kills // 2, 1), before=True))  # fmt: skip
            tallies += _timed("kill -9 sqlite", lambda: kill_while_logging(
                bench, "sqlite", sqlite, max(args.kills // 2, 1)))  # fmt: skip

            stopped = StoppedServer(cluster)
            own = cluster.create_database()
            tallies += _timed("outage pg", lambda: kill_during_outage(
                bench, "postgresql", own, stopped, 3))  # fmt: skip
            tallies += _timed("outage pg before", lambda: kill_during_outage(
                bench, "postgresql", own, stopped, 1, before=True))  # fmt: skip
            locked_db = _sqlite_database(root, "locked.db")
            tallies += _timed("outage sqlite", lambda: kill_during_outage(
                bench, "sqlite", locked_db, LockedSqlite(locked_db), 2))  # fmt: skip

            tallies += _timed("hang", lambda: kill_after_hang(bench, cluster, own, 16.0))

            tallies += _timed("sigterm pg", lambda: sigterm_during_outage(
                bench, "postgresql", own, stopped, 3))  # fmt: skip
            tallies += _timed("sigterm pg before", lambda: sigterm_during_outage(
                bench, "postgresql", own, stopped, 1, before=True))  # fmt: skip
            tallies += _timed("sigterm sqlite", lambda: sigterm_during_outage(
                bench, "sqlite", locked_db, LockedSqlite(locked_db), 1))  # fmt: skip

            with throwaway_database(args.pg_url, prefix="mlpred_bench_dur") as rejecting:
                url = rejecting.render_as_string(hide_password=False)
                tallies += _timed("trigger", lambda: trigger_rejections(bench, url, 20_000))
            with throwaway_database(args.pg_url, prefix="mlpred_bench_dur") as poisoned:
                url = poisoned.render_as_string(hide_password=False)
                _install_poison(url)
                tallies += _timed("dead letters", lambda: dead_letter_failure(bench, url, 10_000))
                if os.geteuid() == 0:
                    tallies += _timed("full disk", lambda: full_disk(bench, url, 10_000))
            tallies += _timed("torn", lambda: torn_journal(bench, shared_url, 10_000))
    finally:
        bench.pool.close()
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)
    print()
    print("Every accepted prediction_id after the fault, a restart and a replay:")
    print("once = in ml_predictions exactly once; dead-let. = rejected by the database and in")
    print("dead-letter.jsonl; dup = in ml_predictions twice or more; lost = neither.")
    print()
    print_table(tallies)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
