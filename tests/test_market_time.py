"""One rule for candle times: ``extract_market_data`` (``log_prediction``'s ``market_data``;
text times are parsed when the writer settles the market, ``settle_market``) and
``read_candle_file`` (``import-candles``) accept the same frames, with the same times, and
reject the same frames for the same reason (``derive/market_time.py``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlpred_cli.derive.indicators import MarketArrays, extract_market_data, settle_market
from mlpred_cli.derive.market_time import epoch_microseconds, single_epoch_unit
from mlpred_cli.errors import InputError
from mlpred_cli.outcomes.candle_files import read_candle_file

LAST = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
TIMES = [LAST - timedelta(minutes=15) * (3 - i) for i in range(4)]


def _prices(**times: object) -> pd.DataFrame:
    return pd.DataFrame(
        {
            **times,
            "open": [100.0, 101.0, 102.0, 103.0],
            "high": [101.0, 102.0, 103.0, 104.0],
            "low": [99.0, 100.0, 101.0, 102.0],
            "close": [100.5, 101.5, 102.5, 103.5],
            "volume": [1.0, 2.0, 3.0, 4.0],
        }
    )


def _settled(frame: pd.DataFrame) -> MarketArrays:
    """What the writer thread gets: the caller's copy, settled."""
    market = extract_market_data(frame)
    assert market is not None
    return settle_market(market)


def _epochs(scale: int) -> list[int]:
    return [int(t.timestamp()) * scale for t in TIMES]


def _parquet(frame: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "candles.parquet"
    frame.to_parquet(path)
    return path


def _csv(frame: pd.DataFrame, tmp_path: Path, *, index: bool = False) -> Path:
    path = tmp_path / "candles.csv"
    frame.to_csv(path, index=index)
    return path


Case = tuple[pd.DataFrame, Callable[[pd.DataFrame, Path], Path]]

ACCEPTED: dict[str, Case] = {
    "epoch seconds": (_prices(time=_epochs(1)), _parquet),
    "epoch milliseconds": (_prices(timestamp=_epochs(1000)), _csv),
    "epoch microseconds": (_prices(open_time=_epochs(1_000_000)), _csv),
    "epoch nanoseconds": (_prices(Time=_epochs(1_000_000_000)), _parquet),
    "date column": (_prices(date=pd.to_datetime(TIMES)), _parquet),
    "iso text": (_prices(datetime=[t.isoformat() for t in TIMES]), _csv),
    "aware datetime64": (
        _prices(datetime=pd.DatetimeIndex(TIMES).tz_convert("Asia/Tokyo")),
        _parquet,
    ),
    "datetime index": (_prices().set_axis(pd.DatetimeIndex(TIMES)), _parquet),
    "non-ISO text (format inferred)": (
        _prices(time=[t.strftime("%m/%d/%Y %H:%M") for t in TIMES]),
        _csv,
    ),
    "ISO text with a zone name": (
        _prices(datetime=[t.strftime("%Y-%m-%d %H:%M:%S UTC") for t in TIMES]),
        _csv,
    ),
}


@pytest.mark.parametrize("case", list(ACCEPTED), ids=list(ACCEPTED))
def test_the_same_frame_is_accepted_by_both_with_the_same_times(case: str, tmp_path: Path) -> None:
    frame, write = ACCEPTED[case]
    market = _settled(frame)
    batch = read_candle_file(write(frame, tmp_path), symbol="BTCUSDT", interval="15m")

    assert market is not None and market.last_open_time == LAST
    assert batch.invalid == []
    assert batch.frame["datetime"].tolist() == TIMES
    assert batch.frame["close"].tolist() == market.close.tolist()


def test_a_pandas_written_csv_index_column_is_the_time_for_both(tmp_path: Path) -> None:
    frame = _prices().set_axis(pd.DatetimeIndex(TIMES).tz_convert(None))
    path = _csv(frame, tmp_path, index=True)
    read_back = pd.read_csv(path)  # the index comes back as a column named "Unnamed: 0"

    market = extract_market_data(read_back)
    batch = read_candle_file(path, symbol="BTCUSDT", interval="15m")

    assert market is not None and market.last_open_time == LAST
    assert batch.frame["datetime"].tolist() == TIMES


def test_a_datetime_index_wins_over_a_date_label_column(tmp_path: Path) -> None:
    """A frame indexed by candle time that also carries the day keeps the candle time."""
    days = [t.replace(hour=0, minute=0) for t in TIMES]
    frame = _prices(date=pd.to_datetime(days)).set_axis(pd.DatetimeIndex(TIMES))

    market = extract_market_data(frame)
    batch = read_candle_file(_parquet(frame, tmp_path), symbol="BTCUSDT", interval="15m")

    assert market is not None and market.last_open_time == LAST
    assert batch.frame["datetime"].tolist() == TIMES


REJECTED: dict[str, tuple[pd.DataFrame, str]] = {
    "seconds and milliseconds": (
        _prices(time=[*_epochs(1)[:3], _epochs(1000)[3]]),
        "mixes epoch seconds and milliseconds",
    ),
    "epoch numbers and iso text": (
        _prices(time=[str(_epochs(1)[0]), *(t.isoformat() for t in TIMES[1:])]),
        "mixes epoch numbers and ISO text",
    ),
    "iso text then an epoch number": (
        _prices(time=[*(t.isoformat() for t in TIMES[:3]), str(_epochs(1)[3])]),
        "mixes epoch numbers and ISO text",
    ),
    "no time at all": (_prices(), "needs candle times"),
}


@pytest.mark.parametrize("case", list(REJECTED), ids=list(REJECTED))
def test_the_same_frame_is_rejected_by_both_for_the_same_reason(case: str, tmp_path: Path) -> None:
    frame, reason = REJECTED[case]
    with pytest.raises(InputError, match=reason):
        _settled(frame)
    with pytest.raises(InputError, match=reason):
        read_candle_file(_csv(frame, tmp_path), symbol="BTCUSDT", interval="15m")


def test_mixed_units_name_the_first_value_in_another_unit() -> None:
    values = np.array([1.7e9, np.nan, 1.7e12, 1.7e9])
    with pytest.raises(InputError, match="position 2 is in milliseconds"):
        single_epoch_unit(values, what="the column")
    with pytest.raises(InputError, match="mixes epoch seconds and microseconds"):
        epoch_microseconds(np.array([1_709_280_000, 1_709_280_000_000_000]), what="x")
    assert single_epoch_unit(np.array([np.nan]), what="x") == "s"
    assert epoch_microseconds(np.array([-1_000, 1_000]), what="x").tolist() == [
        -1_000_000_000,
        1_000_000_000,
    ]
