"""The journal's active segment is preallocated and memory-mapped: an append is a copy into
the page cache (no system call, so the GIL is never released on the caller's path), a sealed
segment is cut back to its last record, and a segment left by a killed process (its unused,
zero-filled tail still there) replays every record and quarantines nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np

from mlpred_cli.capture.journal import Journal, segment_files
from mlpred_cli.capture.journal_reader import read_segment
from mlpred_cli.capture.journal_records import BadRegion, ScannedRecord, encode_prediction, scan
from mlpred_cli.capture.pending_prediction import PendingPrediction

SEGMENT_BYTES = 64 * 1024


def _pending(i: int) -> PendingPrediction:
    return PendingPrediction(
        uuid.uuid4(), "BTCUSDT", "v-map", np.full(240, float(i)), np.linspace(-1, 1, 20),
        None, None, None, time.time(),
    )  # fmt: skip


def test_a_live_segment_is_preallocated_and_a_sealed_one_ends_with_its_last_record(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path, segment_bytes=SEGMENT_BYTES)
    records = [encode_prediction(_pending(i)) for i in range(3)]
    for record in records:
        journal.append(record)
    (active,) = segment_files(tmp_path)
    assert active.stat().st_size == SEGMENT_BYTES  # reserved on disk up front
    live = read_segment(active)  # what another process reads while the logger runs
    assert [p.features[0] for p in live.predictions] == [0.0, 1.0, 2.0]
    assert live.quarantined_regions == 0
    assert journal.close() == 3
    assert active.stat().st_size == sum(len(record) for record in records)
    assert active.read_bytes() == b"".join(records)


def test_a_record_larger_than_the_rest_of_the_segment_opens_the_next(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=8192)
    numbers = [journal.append(encode_prediction(_pending(i))) for i in range(7)]
    journal.close()
    files = segment_files(tmp_path)
    assert len(files) == len(set(numbers)) > 1
    found = [p.features[0] for path in files for p in read_segment(path).predictions]
    assert found == [float(i) for i in range(7)]


_KILLED_WRITER = """
import os, signal, sys, time, uuid
import numpy as np
from pathlib import Path
from mlpred_cli.capture.journal import Journal
from mlpred_cli.capture.journal_records import encode_prediction
from mlpred_cli.capture.pending_prediction import PendingPrediction
journal = Journal(Path(sys.argv[1]), segment_bytes=int(sys.argv[2]))
for i in range(int(sys.argv[3])):
    journal.append(encode_prediction(PendingPrediction(
        uuid.uuid4(), "BTCUSDT", "v-map", np.full(240, float(i)), None,
        {"risk_score": 0.5}, None, None, time.time())))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_segment_left_by_a_killed_process_replays_every_record(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path), str(SEGMENT_BYTES * 4), "50"],
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    (left,) = segment_files(tmp_path)
    assert left.stat().st_size == SEGMENT_BYTES * 4  # never sealed: the zero tail is there
    contents = read_segment(left)
    assert [p.features[0] for p in contents.predictions] == [float(i) for i in range(50)]
    assert contents.quarantined_regions == 0
    assert not list(tmp_path.glob("quarantine-*"))


def test_a_torn_record_before_the_zero_tail_is_quarantined_without_the_tail() -> None:
    records = [encode_prediction(_pending(i)) for i in range(3)]
    torn = encode_prediction(_pending(3))[:700]
    data = b"".join(records) + torn + bytes(SEGMENT_BYTES)
    found = list(scan(data))
    intact = [item for item in found if isinstance(item, ScannedRecord)]
    bad = [item for item in found if isinstance(item, BadRegion)]
    assert len(intact) == 3 and len(bad) == 1
    region = bad[0]
    assert region.offset == sum(len(record) for record in records)
    assert region.data.startswith(torn)
    assert len(region.data) < len(torn) + 4096  # at most the rest of its page, not the tail
    assert not region.data[len(torn) :].strip(b"\x00")


_LIMITED_WRITER = """
import errno, resource, signal, sys, time, uuid
import numpy as np
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (32 * 1024, 32 * 1024))
from mlpred_cli.capture.journal import Journal
from mlpred_cli.capture.journal_records import encode_prediction
from mlpred_cli.capture.pending_prediction import PendingPrediction
journal = Journal(Path(sys.argv[1]), segment_bytes=1024 * 1024)
written = 0
for i in range(40):
    try:
        journal.append(encode_prediction(PendingPrediction(
            uuid.uuid4(), "BTCUSDT", "v-map", np.full(240, float(i)), None,
            {"risk_score": 0.5}, None, None, time.time())))
        written += 1
    except OSError as error:
        assert error.errno == errno.EFBIG, error
print(written)
"""


def test_appends_fall_back_to_write_when_the_segment_cannot_be_preallocated(
    tmp_path: Path,
) -> None:
    """A file-size limit (ulimit -f) below the segment size: no preallocation, so records are
    appended with ``write`` until the limit refuses one, which raises (never SIGBUS)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_LIMITED_WRITER), str(tmp_path)],
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 0, result.stderr.decode()
    written = int(result.stdout.decode().split()[-1])
    assert 0 < written < 40
    segments = segment_files(tmp_path)
    found = [p.features[0] for path in segments for p in read_segment(path).predictions]
    assert found == [float(i) for i in range(written)]
