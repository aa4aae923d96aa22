"""After an upgrade that changed the spool key, a new logger on the same database replays
what a crashed logger journalled under the old key's directory, and leaves a live logger's
segments there alone. The loggers are real processes writing real journal files."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from mlpred_cli import MLPredictionLogger
from mlpred_cli.capture.journal import segment_files
from mlpred_cli.capture.journal_reader import read_segment
from mlpred_cli.capture.spool import Spool
from mlpred_cli.capture.spool_keys import default_spool_dir
from mlpred_cli.capture.spool_replay import spool_status
from mlpred_cli.store.database import normalize_url
from mlpred_cli.store.tables import predictions_table
from tests.cli_helpers import run_cli
from tests.factories import written_rows

REPOSITORY = Path(__file__).resolve().parents[1]
RAW = np.linspace(-1, 1, 20)

#: A logger of the old version: journals ``count`` predictions into ``spool_dir`` (the old
#: key's directory) and writes nothing to the database (batch and interval never reached);
#: then it dies without closing (``crash``) or idles, holding its journal, until killed.
_CHILD = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from mlpred_cli import MLPredictionLogger
    url, spool_dir, count, then, ready = sys.argv[1:]
    logger = MLPredictionLogger(url, model_version="before-upgrade", spool_dir=spool_dir,
                                batch_size=1000, flush_interval_s=600, handle_signals=False)
    for i in range(int(count)):
        logger.log_prediction_sync(symbol="BTCUSDT", features=np.full(240, float(i)),
                                   model_outputs=np.linspace(-1, 1, 20))
    open(ready, "w").close()
    if then == "crash":
        os._exit(0)
    while True:
        time.sleep(1)
    """
)


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    return data


def _old_key_directory(text: str) -> Path:
    """Where mlpred before the normalized key spooled for this spelling (its key function:
    the normalized URL's text, password as ***)."""
    identity = normalize_url(text).render_as_string(hide_password=True)
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return default_spool_dir(normalize_url(text)).parent / key


def _spellings(db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(the old logger's spelling, the new logger's spelling) of the test's database."""
    url = make_url(db_url)
    if backend == "sqlite":
        path = Path(url.database or "")
        monkeypatch.chdir(path.parent)
        # the old key was the URL's text, the new one the file's path (a relative spelling's
        # old key is ambiguous and never taken: test_spool_keys)
        spelling = f"sqlite:///{path}?timeout=5"
        return spelling, spelling
    if url.host not in ("127.0.0.1", "localhost"):
        pytest.skip(f"the test database is not on the loopback interface ({url.host})")
    port = url.port or 5432
    old = url.set(drivername="postgresql", host="localhost", port=port)
    new = url.set(host="127.0.0.1", port=None if port == 5432 else port)
    return old.render_as_string(hide_password=False), new.render_as_string(hide_password=False)


def _start_old_logger(
    url: str, spool_dir: Path, count: int, then: str, ready: Path
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    process = subprocess.Popen(
        [sys.executable, "-c", _CHILD, url, str(spool_dir), str(count), then, str(ready)],
        cwd=Path.cwd(),
        env=env,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        if process.poll() is not None and not ready.exists():
            raise AssertionError(process.stderr.read().decode() if process.stderr else "")
        assert time.monotonic() < deadline, "the old logger did not start"
        time.sleep(0.05)
    return process


def _stored(engine: Engine) -> int:
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(predictions_table)).scalar()
    return int(count or 0)


def _run_new_logger(url: str, replayed: int) -> int:
    """Start a logger on ``url``, wait until it replayed ``replayed`` rows (at most 30 s),
    close it; returns what it replayed."""
    with MLPredictionLogger(url, flush_interval_s=0.05, handle_signals=False) as logger:
        deadline = time.monotonic() + 30
        while int(logger.stats()["replayed"]) < replayed and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3 if replayed else 1.5)  # past its start-up replay, whatever it finds
        return int(logger.stats()["replayed"])


def test_a_new_logger_replays_what_a_crashed_logger_left_under_the_old_key(
    db_url: str, backend: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_spelling, new_spelling = _spellings(db_url, backend, monkeypatch)
    old_dir = _old_key_directory(old_spelling)
    assert old_dir != default_spool_dir(normalize_url(new_spelling))
    process = _start_old_logger(old_spelling, old_dir, 6, "crash", tmp_path / "ready")
    assert process.wait(timeout=30) == 0
    assert segment_files(old_dir) and _stored(engine) == 0
    assert _run_new_logger(new_spelling, 6) == 6
    assert _stored(engine) == 6
    assert segment_files(old_dir) == []


def test_a_live_loggers_segments_under_the_old_key_are_left_to_it(
    db_url: str, backend: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_spelling, new_spelling = _spellings(db_url, backend, monkeypatch)
    old_dir = _old_key_directory(old_spelling)
    process = _start_old_logger(old_spelling, old_dir, 4, "wait", tmp_path / "ready")
    try:
        segments = segment_files(old_dir)
        assert segments
        assert _run_new_logger(new_spelling, 0) == 0
        assert segment_files(old_dir) == segments and _stored(engine) == 0
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert _run_new_logger(new_spelling, 4) == 4  # gone now: its rows are replayed
    assert _stored(engine) == 4


def test_a_row_dead_lettered_in_the_new_directory_is_not_dead_lettered_again(
    db_url: str, backend: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A logger that dead-lettered a legacy segment's row in its own directory and died
    before deleting the segment: a later ``spool replay`` skips that row, it does not
    reject it into the legacy directory a second time."""
    old_spelling, new_spelling = _spellings(db_url, backend, monkeypatch)
    old_dir = _old_key_directory(old_spelling)
    process = _start_old_logger(old_spelling, old_dir, 3, "crash", tmp_path / "ready")
    assert process.wait(timeout=30) == 0
    (segment,) = segment_files(old_dir)
    first = read_segment(segment).predictions[0].prediction_id
    new_dir = default_spool_dir(normalize_url(new_spelling))
    Spool(new_dir).dead_letter(written_rows(1, prediction_id=first)[0], "rejected for a test")
    code, out, err = run_cli("--db", new_spelling, "spool", "replay", "--format", "json")
    assert code == 0, err
    replay = json.loads(out)
    assert (replay["replayed"], replay["dead_lettered"]) == (2, 0)
    assert _stored(engine) == 2
    status = spool_status(new_spelling)
    assert (status.rows, status.dead_lettered) == (0, 1)
