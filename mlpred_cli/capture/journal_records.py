"""The journal's record format: one framed, checksummed binary record per accepted prediction.

A frame is ``MAGIC (4 bytes) | payload length (u32) | CRC-32 of the payload (u32) | payload``,
little-endian. The magic and the checksum let a reader resynchronise after a torn or
corrupted region: it skips bytes until the next frame whose checksum holds, so one bad byte
costs one record, never the file.

A prediction payload holds the validated copies the caller handed over (``PendingPrediction``),
not built rows: encoding is a few ``struct.pack`` and ``tobytes`` calls on the caller's path,
and replay builds rows exactly as the writer does. A feature-importance snapshot is a second
record kind holding its rows as JSON.

Market data, when the candle count in the head is not ``_NONE``: five float64 blocks of that
many candles (open, high, low, close, volume), written from the market's (5, n) block with one
copy. The head's last open time is the final one for a settled market and the last row's
time for an unsettled one (text times not parsed yet, ``derive/indicators.py``). For the
latter flag bit 2 is set and the text follows the prices: u16 length and the time column's
name (UTF-8), u64 byte length of the text, int64 offsets (candle count + 1, starting at 0),
the text (UTF-8, row ``i`` is ``text[offsets[i]:offsets[i + 1]]``). Replay settles it as the
writer does.

Feature attributions (added after the first release of the format) follow the market data
when flag bit 1 is set: a u32 count and that many float64.

Records written before a flag was added carry no such flag and decode as before; a reader
older than a flag quarantines a record that has it (it is longer than that reader expects).
"""

from __future__ import annotations

import json
import math
import struct
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from mlpred_cli.capture.pending_prediction import PendingPrediction
from mlpred_cli.derive.indicators import MarketArrays, TextTimes

MAGIC = b"MLPJ"
_FRAME = struct.Struct("<4sII")
FRAME_HEADER_BYTES = _FRAME.size
#: Larger payloads are corruption, not records (a 500-candle window with a 2-D feature
#: window stays far below this).
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024

KIND_PREDICTION = 1
KIND_SNAPSHOT = 2
_FORMAT_VERSION = 1
_NONE = 0xFFFFFFFF

# kind, version, flags (bit 0: store the feature payload; bit 1: attributions follow;
# bit 2: the candle times are unparsed text, after the prices),
# uuid, logged_at,
# inference_time_ms (NaN = None), symbol length, model version length, feature rows,
# feature columns (0 rows: a 1-D vector),
# raw output count (_NONE: none), predictions JSON length (_NONE: none),
# candle count (_NONE: no market data), last candle open time (epoch microseconds)
_HEAD = struct.Struct("<BBB16sddHHIIIIIq")
_STORE_PAYLOAD = 1
_HAS_ATTRIBUTIONS = 2
_TEXT_TIMES = 4
_COUNT = struct.Struct("<I")
#: Text times: column name length, text length.
_TEXT_HEAD = struct.Struct("<HQ")


@dataclass(frozen=True)
class SnapshotRecord:
    """A feature-importance snapshot as journaled: its rows, ready to write."""

    rows: list[dict[str, Any]]


def frame(payload: bytes) -> bytes:
    """One framed record: header (magic, length, CRC-32) and payload."""
    return _FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def encode_prediction(item: PendingPrediction) -> bytes:
    """The framed record of one pending prediction (the caller's path: keep it cheap)."""
    symbol = item.symbol.encode()
    version = item.model_version.encode()
    features = item.features
    rows, columns = (0, features.shape[0]) if features.ndim == 1 else features.shape
    raw = item.raw_outputs
    predictions = b"" if item.predictions is None else json.dumps(item.predictions).encode()
    market = item.market
    inference = math.nan if item.inference_time_ms is None else item.inference_time_ms
    attributions = item.attributions
    flags = _STORE_PAYLOAD if item.store_payload else 0
    if attributions is not None:
        flags |= _HAS_ATTRIBUTIONS
    text_times = None if market is None else market.text_times
    if text_times is not None:
        flags |= _TEXT_TIMES
    head = _HEAD.pack(
        KIND_PREDICTION,
        _FORMAT_VERSION,
        flags,
        item.prediction_id.bytes,
        item.logged_at,
        inference,
        len(symbol),
        len(version),
        rows,
        columns,
        _NONE if raw is None else raw.shape[0],
        _NONE if item.predictions is None else len(predictions),
        _NONE if market is None else market.close.shape[0],
        0 if market is None else market.last_open_us,
    )
    parts: list[bytes | memoryview] = [head, symbol, version, features.tobytes()]
    if raw is not None:
        parts.append(raw.tobytes())
    parts.append(predictions)
    if market is not None:
        prices = market.prices
        if prices is not None and prices.flags.c_contiguous:
            parts.append(prices.data)  # join copies it once, no tobytes() copy
        else:
            parts.extend(
                column.tobytes()
                for column in (market.open, market.high, market.low, market.close, market.volume)
            )
        if text_times is not None:
            name = text_times.column.encode()
            parts.append(_TEXT_HEAD.pack(len(name), len(text_times.data)))
            parts.append(name)
            parts.append(np.ascontiguousarray(text_times.offsets, dtype="<i8").data)
            parts.append(text_times.data)
    if attributions is not None:
        parts.append(_COUNT.pack(attributions.shape[0]))
        parts.append(attributions.tobytes())
    return frame(b"".join(parts))


def snapshot_to_json(rows: Sequence[dict[str, Any]]) -> str:
    """A feature-importance snapshot's rows as JSON (datetimes as ISO text)."""
    records = [
        {**row, "calculated_at": row["calculated_at"].isoformat(),
         "created_at": row["created_at"].isoformat()}
        for row in rows
    ]  # fmt: skip
    return json.dumps(records)


def snapshot_from_json(text: str | bytes) -> list[dict[str, Any]]:
    """The inverse of ``snapshot_to_json``."""
    records: list[dict[str, Any]] = json.loads(text)
    for record in records:
        record["calculated_at"] = datetime.fromisoformat(record["calculated_at"])
        record["created_at"] = datetime.fromisoformat(record["created_at"])
    return records


def encode_snapshot(rows: Sequence[dict[str, Any]]) -> bytes:
    """The framed record of one feature-importance snapshot."""
    return frame(bytes([KIND_SNAPSHOT, _FORMAT_VERSION]) + snapshot_to_json(rows).encode())


def decode(payload: bytes) -> PendingPrediction | SnapshotRecord:
    """The record a payload (a frame without its header) holds.

    Raises ``ValueError`` when the payload is not a record of a known kind and version.
    """
    if len(payload) < 2 or payload[1] != _FORMAT_VERSION:
        raise ValueError("unknown journal record version")
    if payload[0] == KIND_SNAPSHOT:
        return _decode_snapshot(payload[2:])
    if payload[0] != KIND_PREDICTION:
        raise ValueError(f"unknown journal record kind {payload[0]}")
    return _decode_prediction(payload)


def _decode_prediction(payload: bytes) -> PendingPrediction:
    (
        _kind,
        _version,
        flags,
        identity,
        logged_at,
        inference,
        symbol_length,
        version_length,
        rows,
        columns,
        raw_count,
        predictions_length,
        candles,
        last_open_us,
    ) = _HEAD.unpack_from(payload)
    reader = _Reader(payload, _HEAD.size)
    symbol = reader.take(symbol_length).decode()
    model_version = reader.take(version_length).decode()
    shape = (columns,) if rows == 0 else (rows, columns)
    features = reader.floats(rows * columns if rows else columns).reshape(shape)
    raw = None if raw_count == _NONE else reader.floats(raw_count)
    predictions = None
    if predictions_length != _NONE:
        predictions = json.loads(reader.take(predictions_length))
    market = None
    if candles != _NONE:
        market = _decode_market(reader, candles, last_open_us, flags)
    attributions = None
    if flags & _HAS_ATTRIBUTIONS:
        (count,) = _COUNT.unpack(reader.take(_COUNT.size))
        attributions = reader.floats(count)
    reader.finish()
    return PendingPrediction(
        prediction_id=uuid.UUID(bytes=identity),
        symbol=symbol,
        model_version=model_version,
        features=features,
        raw_outputs=raw,
        predictions=predictions,
        market=market,
        inference_time_ms=None if math.isnan(inference) else inference,
        logged_at=logged_at,
        store_payload=bool(flags & _STORE_PAYLOAD),
        attributions=attributions,
    )


def _decode_market(reader: _Reader, candles: int, last_open_us: int, flags: int) -> MarketArrays:
    prices = reader.floats(5 * candles).reshape(5, candles)
    text_times = None
    if flags & _TEXT_TIMES:
        name_length, text_length = _TEXT_HEAD.unpack(reader.take(_TEXT_HEAD.size))
        name = reader.take(name_length).decode()
        offsets = np.frombuffer(reader.take(8 * (candles + 1)), dtype="<i8").astype(np.int64)
        if offsets[0] != 0 or offsets[-1] != text_length or (np.diff(offsets) < 0).any():
            raise ValueError("journal record has inconsistent candle time offsets")
        text_times = TextTimes(name, offsets, reader.take(text_length))
    return MarketArrays.from_prices(prices, last_open_us, text_times)


def _decode_snapshot(body: bytes) -> SnapshotRecord:
    return SnapshotRecord(snapshot_from_json(body))


class _Reader:
    """Sequential reads from a payload that fail loudly on a short or over-long payload."""

    def __init__(self, payload: bytes, offset: int) -> None:
        self._payload = payload
        self._offset = offset

    def take(self, count: int) -> bytes:
        end = self._offset + count
        if end > len(self._payload):
            raise ValueError("journal record is shorter than its header says")
        chunk = self._payload[self._offset : end]
        self._offset = end
        return chunk

    def floats(self, count: int) -> np.ndarray:
        return np.frombuffer(self.take(8 * count), dtype=np.float64).copy()

    def finish(self) -> None:
        if self._offset != len(self._payload):
            raise ValueError("journal record is longer than its header says")


@dataclass(frozen=True)
class ScannedRecord:
    """One intact frame found in a journal file: where it starts and its payload."""

    offset: int
    payload: bytes


@dataclass(frozen=True)
class BadRegion:
    """Bytes of a journal file that hold no intact frame (a torn write, corruption)."""

    offset: int
    data: bytes


def scan(data: bytes) -> Iterator[ScannedRecord | BadRegion]:
    """Every intact frame in ``data``, in order, and the bad regions between them.

    A frame is intact when its magic, length and CRC-32 all hold; after a bad frame the scan
    resumes at the next occurrence of the magic, so the records after a torn or corrupted
    region are still found.
    """
    position = 0
    bad_start: int | None = None
    size = len(data)
    while position < size:
        if _intact_at(data, position):
            if bad_start is not None:
                yield BadRegion(bad_start, data[bad_start:position])
                bad_start = None
            _magic, length, _checksum = _FRAME.unpack_from(data, position)
            start = position + FRAME_HEADER_BYTES
            yield ScannedRecord(position, data[start : start + length])
            position = start + length
            continue
        if bad_start is None:
            bad_start = position
        following = data.find(MAGIC, position + 1)
        position = size if following < 0 else following
    if bad_start is not None:
        yield BadRegion(bad_start, data[bad_start:])


def _intact_at(data: bytes, position: int) -> bool:
    if position + FRAME_HEADER_BYTES > len(data):
        return False
    magic, length, checksum = _FRAME.unpack_from(data, position)
    if magic != MAGIC or length > MAX_PAYLOAD_BYTES:
        return False
    start = position + FRAME_HEADER_BYTES
    if start + length > len(data):
        return False
    return bool(zlib.crc32(data[start : start + length]) == checksum)
