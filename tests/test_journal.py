"""The write-ahead journal: record format, torn and corrupt segments, segment lifecycle,
ownership, file modes, and what the logger puts in it before a call returns."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import struct
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlpred_cli import MLPredictionLogger
from mlpred_cli.capture import shutdown_signals
from mlpred_cli.capture.journal import Journal, claimed_orphans, segment_files
from mlpred_cli.capture.journal_reader import read_segment
from mlpred_cli.capture.journal_records import (
    BadRegion,
    ScannedRecord,
    SnapshotRecord,
    decode,
    encode_prediction,
    encode_snapshot,
    scan,
)
from mlpred_cli.capture.pending_prediction import PendingPrediction
from mlpred_cli.capture.spool import Spool
from mlpred_cli.capture.spool_replay import export_spool, replay_spool, spool_status
from mlpred_cli.derive.indicators import MarketArrays, extract_market_data, settle_market
from mlpred_cli.errors import InputError
from mlpred_cli.store.tables import predictions_table
from tests.cli_helpers import run_cli
from tests.factories import written_rows

RAW = np.linspace(-1, 1, 20)
HEADER = 12  # magic, length, CRC-32


def _pending(index: int = 0, **overrides: object) -> PendingPrediction:
    values: dict[str, object] = {
        "prediction_id": uuid.uuid4(),
        "symbol": f"SYM{index}",
        "model_version": "v-journal",
        "features": np.arange(240, dtype=np.float64) * (index + 1),
        "raw_outputs": RAW.copy(),
        "predictions": None,
        "market": None,
        "inference_time_ms": 4.25,
        "logged_at": 1_764_000_000.123456 + index,
    }
    values.update(overrides)
    return PendingPrediction(**values)  # type: ignore[arg-type]


def _payload(record: bytes) -> bytes:
    return record[HEADER:]


def _same(left: PendingPrediction, right: PendingPrediction) -> None:
    assert right.prediction_id == left.prediction_id
    assert (right.symbol, right.model_version) == (left.symbol, left.model_version)
    np.testing.assert_array_equal(right.features, left.features)
    assert right.features.shape == left.features.shape
    if left.raw_outputs is None:
        assert right.raw_outputs is None
    else:
        assert right.raw_outputs is not None
        np.testing.assert_array_equal(right.raw_outputs, left.raw_outputs)
    assert right.predictions == left.predictions
    assert right.inference_time_ms == left.inference_time_ms
    assert right.logged_at == left.logged_at


# ---------------------------------------------------------------- record format


def test_prediction_records_round_trip_every_field() -> None:
    market = MarketArrays(
        open=np.array([1.0, 2.0, np.nan]),
        high=np.array([2.0, 3.0, 4.0]),
        low=np.array([0.5, 1.5, 2.5]),
        close=np.array([1.5, 2.5, 3.5]),
        volume=np.array([10.0, np.nan, 30.0]),
        last_open_time=datetime(2026, 3, 1, 12, 15, 0, 123457, tzinfo=UTC),
    )
    cases = [
        _pending(0),
        _pending(1, features=np.arange(12.0).reshape(3, 4), raw_outputs=None,
                 predictions={"signal_type": "LONG", "confidence_1h": 0.7, "returns_4h": None},
                 inference_time_ms=None),
        _pending(2, market=market, symbol="ÉTH/USDT", features=np.array([np.nan, np.inf, -0.0])),
    ]  # fmt: skip
    for original in cases:
        decoded = decode(_payload(encode_prediction(original)))
        assert isinstance(decoded, PendingPrediction)
        _same(original, decoded)
    decoded_market = decode(_payload(encode_prediction(cases[2])))
    assert isinstance(decoded_market, PendingPrediction) and decoded_market.market is not None
    assert decoded_market.market.last_open_time == market.last_open_time
    np.testing.assert_array_equal(decoded_market.market.volume, market.volume)
    np.testing.assert_array_equal(decoded_market.market.open, market.open)


#: A record written by the format before text times (flag bit 2): a 3-candle market, 2
#: features, interpreted predictions and attributions (encoded by the code of that time).
OLD_RECORD = bytes.fromhex(
    "4d4c504aff000000565bfa0801010212345678123456781234567812345678000020402049da41000000000000"
    "f87f070002000000000002000000ffffffff170000000300000041db556bf54b0600425443555344547631000000"
    "000000d03f000000000000f0bf7b227369676e616c5f74797065223a20224c4f4e47227d000000000000f03f0000"
    "000000000040000000000000f87f000000000000004000000000000008400000000000001040000000000000e03f"
    "000000000000f83f0000000000000440000000000000f83f00000000000004400000000000000c40000000000000"
    "2440000000000000f87f0000000000003e4002000000000000000000e03f000000000000f87f"
)


def test_a_record_of_the_format_before_text_times_decodes_and_encodes_the_same() -> None:
    decoded = decode(_payload(OLD_RECORD))
    assert isinstance(decoded, PendingPrediction) and decoded.market is not None
    assert decoded.prediction_id == uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert decoded.predictions == {"signal_type": "LONG"}
    assert decoded.market.settled
    assert decoded.market.last_open_time == datetime(2026, 3, 1, 12, 15, 0, 123457, tzinfo=UTC)
    np.testing.assert_array_equal(decoded.market.open, [1.0, 2.0, np.nan])
    np.testing.assert_array_equal(decoded.market.volume, [10.0, np.nan, 30.0])
    assert decoded.attributions is not None and decoded.attributions[0] == 0.5
    assert encode_prediction(decoded) == OLD_RECORD  # a settled market: the layout is unchanged


def _market_frames() -> dict[str, pd.DataFrame]:
    times = pd.date_range("2026-03-01", periods=300, freq="15min", tz="UTC")[::-1]  # unsorted
    close = np.linspace(100.0, 110.0, 300)
    prices = {"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": close}
    return {
        "DatetimeIndex": pd.DataFrame(prices, index=times),
        "datetime64 column": pd.DataFrame({"time": times, **prices}),
        "text column": pd.DataFrame({"time": times.strftime("%Y-%m-%dT%H:%M:%S"), **prices}),
        "object text column": pd.DataFrame(
            {"time": pd.Series([t.isoformat() for t in times], dtype=object), **prices}
        ),
    }


@pytest.mark.parametrize("form", list(_market_frames()))
def test_market_data_of_every_form_round_trips_and_settles_the_same(form: str) -> None:
    market = extract_market_data(_market_frames()[form])
    assert market is not None
    original = _pending(0, market=market, attributions=np.array([0.5] * 240))
    decoded = decode(_payload(encode_prediction(original)))
    assert isinstance(decoded, PendingPrediction) and decoded.market is not None
    _same(original, decoded)
    assert decoded.attributions is not None
    assert (
        decoded.market.settled == market.settled == (form in ("DatetimeIndex", "datetime64 column"))
    )
    assert decoded.market.last_open_us == market.last_open_us
    np.testing.assert_array_equal(decoded.market.prices, market.prices)
    if market.text_times is not None:
        assert decoded.market.text_times is not None
        assert decoded.market.text_times.column == "time"
        assert decoded.market.text_times.strings() == market.text_times.strings()
    settled, replayed = settle_market(market), settle_market(decoded.market)
    assert (
        replayed.last_open_time == settled.last_open_time == datetime(2026, 3, 4, 2, 45, tzinfo=UTC)
    )
    np.testing.assert_array_equal(replayed.prices, settled.prices)
    np.testing.assert_array_equal(settled.close, np.linspace(100.0, 110.0, 300)[::-1])


def test_a_record_with_inconsistent_text_offsets_is_refused() -> None:
    market = extract_market_data(_market_frames()["text column"])
    assert market is not None and market.text_times is not None
    payload = bytearray(_payload(encode_prediction(_pending(0, market=market))))
    text = market.text_times
    offsets_at = len(payload) - len(text.data) - 8 * len(text.offsets)
    payload[offsets_at : offsets_at + 8] = struct.pack("<q", 5)  # the first offset is not 0
    with pytest.raises(ValueError, match="offsets"):
        decode(bytes(payload))


def test_snapshot_records_round_trip() -> None:
    moment = datetime(2026, 5, 1, tzinfo=UTC)
    rows = [{"feature_name": "f0", "importance_score": 0.5, "calculated_at": moment,
             "created_at": moment, "model_version": "v1"}]  # fmt: skip
    decoded = decode(_payload(encode_snapshot(rows)))
    assert isinstance(decoded, SnapshotRecord)
    assert decoded.rows == rows


def test_a_payload_shorter_or_longer_than_its_header_is_refused() -> None:
    payload = _payload(encode_prediction(_pending()))
    with pytest.raises(ValueError, match="shorter"):
        decode(payload[:-8])
    with pytest.raises(ValueError, match="longer"):
        decode(payload + b"\0" * 8)
    with pytest.raises(ValueError, match="version"):
        decode(bytes([1, 99]) + payload[2:])


def test_scan_recovers_every_intact_record_around_torn_and_corrupt_bytes() -> None:
    records = [encode_prediction(_pending(i)) for i in range(5)]
    corrupt = bytearray(records[1])
    corrupt[40] ^= 0xFF  # a flipped byte inside the payload: the checksum fails
    torn = records[4][: len(records[4]) // 2]  # the process died inside write()
    data = records[0] + bytes(corrupt) + b"garbage" + records[2] + records[3] + torn
    found = list(scan(data))
    intact = [item for item in found if isinstance(item, ScannedRecord)]
    bad = [item for item in found if isinstance(item, BadRegion)]
    assert [item.payload for item in intact] == [
        _payload(r) for r in (records[0], records[2], records[3])
    ]
    assert [region.data for region in bad] == [bytes(corrupt) + b"garbage", torn]


def test_read_segment_quarantines_only_the_bad_bytes(tmp_path: Path) -> None:
    items = [_pending(i) for i in range(4)]
    records = [encode_prediction(item) for item in items]
    torn = records[3][:30]
    segment = tmp_path / "journal-00000000000000000001-1-abcdef01-00000001.seg"
    segment.write_bytes(records[0] + b"\x00junk\x00" + records[1] + records[2] + torn)
    contents = read_segment(segment)
    assert [p.prediction_id for p in contents.predictions] == [i.prediction_id for i in items[:3]]
    assert contents.quarantined_regions == 2
    quarantined = sorted(tmp_path.glob("quarantine-*.bin"))
    assert [path.read_bytes() for path in quarantined] == [b"\x00junk\x00", torn]
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in quarantined)


# ---------------------------------------------------------------- segments


def test_segments_are_private_and_deleted_once_every_record_resolves(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        directory = tmp_path / "spool" / "journal"
        journal = Journal(directory, segment_bytes=4096)
        numbers = [journal.append(encode_prediction(_pending(i))) for i in range(6)]
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(directory.parent.stat().st_mode) == 0o700  # a parent it made, too
    files = segment_files(directory)
    assert len(files) == len(set(numbers)) >= 2  # ~2.2 KB records: sealed every second one
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in files)
    owner_locks = list(directory.glob("owner-*.lock"))
    assert len(owner_locks) == 1 and stat.S_IMODE(owner_locks[0].stat().st_mode) == 0o600
    first = numbers[0]
    journal.resolve({first: numbers.count(first) - 1})
    assert len(segment_files(directory)) == len(files)  # one record of it still unresolved
    journal.resolve({first: 1})
    assert len(segment_files(directory)) == len(files) - 1
    assert journal.unresolved() == 6 - numbers.count(first)
    assert journal.close() == 6 - numbers.count(first)  # the rest stays for the next logger
    assert len(segment_files(directory)) == len(files) - 1


def test_a_live_journal_is_never_claimed_but_a_closed_one_is(tmp_path: Path) -> None:
    live = Journal(tmp_path)
    live.append(encode_prediction(_pending(0)))
    gone = Journal(tmp_path)
    gone.append(encode_prediction(_pending(1)))
    gone.close()
    with claimed_orphans(tmp_path) as orphans:
        assert [path.name for path in orphans] == [
            path.name for path in segment_files(tmp_path) if gone.owner in path.name
        ]
        with claimed_orphans(tmp_path) as second:  # a second replayer sees it as taken
            assert second == []
    live.close()


def test_fsync_policies_are_checked() -> None:
    with pytest.raises(InputError, match="fsync must be one of none, interval, always"):
        MLPredictionLogger("sqlite:///unused.db", fsync="sometimes")  # type: ignore[arg-type]


# ---------------------------------------------------------------- through the logger


def _unreachable_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        path = tmp_path / "later.db"
        path.mkdir()  # a directory where the file should be: SQLite cannot open it
        return f"sqlite:///{path}"
    return "postgresql://postgres@127.0.0.1:5432/mlpred_no_such_database_" + uuid.uuid4().hex[:8]


@pytest.mark.parametrize("fsync", ["none", "interval", "always"])
def test_a_prediction_is_in_the_journal_when_the_call_returns(
    backend: str, tmp_path: Path, fsync: str
) -> None:
    spool_dir = tmp_path / "spool"
    logger = MLPredictionLogger(
        _unreachable_url(backend, tmp_path), spool_dir=spool_dir, fsync=fsync,  # type: ignore[arg-type]
        handle_signals=False,
    )  # fmt: skip
    try:
        ids = [
            logger.log_prediction_sync(
                symbol="BTCUSDT", features=np.full(240, i), model_outputs=RAW
            )
            for i in range(3)
        ]
        on_disk = b"".join(path.read_bytes() for path in segment_files(spool_dir))
        assert all(uuid.UUID(pid).bytes in on_disk for pid in ids)
        assert logger.stats()["journaled"] == 3
    finally:
        report = logger.close_sync(timeout=0.5)
    assert (report.on_disk, report.lost) == (3, 0)


def test_symbols_with_control_characters_are_refused(tmp_path: Path) -> None:
    with MLPredictionLogger(
        f"sqlite:///{tmp_path / 'x.db'}", spool_dir=tmp_path / "spool", handle_signals=False
    ) as logger:
        for symbol in ("BTC\x00USDT", "BTC\nUSDT", "BTC\x1bUSDT"):
            with pytest.raises(InputError, match="control characters"):
                logger.log_prediction_sync(symbol=symbol, features=np.zeros(240), model_outputs=RAW)
        assert logger.stats()["logged"] == 0


def test_memory_only_loss_is_loud_and_counted_exactly(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.write_text("not a directory")  # nothing can be put on disk
    logger = MLPredictionLogger(
        _unreachable_url(backend, tmp_path), spool_dir=spool_dir, journal=False,
        handle_signals=False,
    )  # fmt: skip
    for i in range(7):
        logger.log_prediction_sync(symbol="BTCUSDT", features=np.full(240, i), model_outputs=RAW)
    with caplog.at_level(logging.ERROR, logger="mlpred"):
        report = logger.close_sync(timeout=0.5)
    assert (report.logged, report.saved, report.on_disk, report.lost) == (7, 0, 0, 7)
    assert logger.stats()["lost"] == 7
    assert any("7 predictions lost" in record.getMessage() for record in caplog.records)


def test_a_new_logger_replays_what_a_dead_one_left_and_deletes_it(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    dead = Journal(spool_dir)
    items = [_pending(i) for i in range(25)]
    for item in items:
        dead.append(encode_prediction(item))
    dead.close()  # as a killed process leaves it: the owner's lock is free
    with MLPredictionLogger(db_url, spool_dir=spool_dir, flush_interval_s=0.02) as logger:
        deadline = time.monotonic() + 30
        while logger.stats()["replayed"] < 25 and time.monotonic() < deadline:
            time.sleep(0.05)
    with engine.connect() as conn:
        stored = set(conn.scalars(sa.select(predictions_table.c.prediction_id)))
    assert stored == {item.prediction_id for item in items}
    assert segment_files(spool_dir) == []
    assert not list(spool_dir.glob(f"owner-{dead.owner}.lock"))  # the claim cleaned up


# ---------------------------------------------------------------- spool status, export, legacy


def test_status_shows_quarantine_and_export_writes_it_out(db_url: str, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    dead = Journal(spool_dir)
    dead.append(encode_prediction(_pending(0)))
    dead.close()
    segment = segment_files(spool_dir)[0]
    with segment.open("ab") as handle:
        handle.write(b"MLPJ" + struct.pack("<II", 500, 0) + b"torn")
    result = replay_spool(db_url, spool_dir)
    assert (result.replayed, result.quarantined_regions) == (1, 1)
    status = spool_status(db_url, spool_dir)
    assert (status.rows, status.quarantined_files) == (0, 1)
    assert status.quarantined_bytes == 16
    code, out, err = run_cli("--db", db_url, "spool", "status", "--spool-dir", str(spool_dir),
                             "--format", "json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["quarantined_files"] == 1
    exported = export_spool(tmp_path / "out.jsonl", db_url, spool_dir)
    assert exported.quarantined_items == 1
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert lines[0]["kind"] == "quarantined_bytes" and lines[0]["bytes"] == 16
    assert stat.S_IMODE((tmp_path / "out.jsonl").stat().st_mode) == 0o600
    code, _, err = run_cli("--db", db_url, "spool", "export", str(tmp_path / "out.jsonl"),
                           "--spool-dir", str(spool_dir))  # fmt: skip
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "exists already" in err


def test_a_torn_line_in_an_old_spool_file_costs_only_that_line(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    rows = written_rows(3)
    path = Spool(spool_dir).append(rows)
    assert path is not None
    text = path.read_text().splitlines()
    path.write_text(text[0] + "\n" + text[1][:40] + "\n" + text[2] + "\n")
    result = replay_spool(db_url, spool_dir)
    assert result.replayed == 2
    quarantined = spool_dir / f"quarantine-{path.name}"
    assert quarantined.read_text() == text[1][:40] + "\n"
    assert spool_status(db_url, spool_dir).quarantined_lines == 1
    with engine.connect() as conn:
        stored = set(conn.scalars(sa.select(predictions_table.c.prediction_id)))
    assert stored == {rows[0][0], rows[2][0]}


def test_dead_letters_are_replayed_once_their_cause_is_fixed(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    (row,) = written_rows(1)
    Spool(spool_dir).dead_letter(row, "rejected by a trigger")
    assert spool_status(db_url, spool_dir).dead_lettered == 1
    code, out, err = run_cli("--db", db_url, "spool", "replay", "--dead-letters",
                             "--spool-dir", str(spool_dir), "--format", "json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["replayed"] == 1
    assert spool_status(db_url, spool_dir).dead_lettered == 0
    with engine.connect() as conn:
        assert list(conn.scalars(sa.select(predictions_table.c.prediction_id))) == [row[0]]


# ---------------------------------------------------------------- signals


def test_sigterm_handler_is_installed_only_where_the_application_has_none(
    tmp_path: Path,
) -> None:
    previous = signal.getsignal(signal.SIGTERM)

    def application_handler(signum: int, frame: object) -> None:  # pragma: no cover
        pass

    try:
        signal.signal(signal.SIGTERM, application_handler)
        with MLPredictionLogger(f"sqlite:///{tmp_path / 'a.db'}", spool_dir=tmp_path / "a"):
            assert signal.getsignal(signal.SIGTERM) is application_handler
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        shutdown_signals._installed = False
        with MLPredictionLogger(f"sqlite:///{tmp_path / 'b.db'}", spool_dir=tmp_path / "b"):
            assert shutdown_signals.handler_installed()
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutdown_signals._installed = False
