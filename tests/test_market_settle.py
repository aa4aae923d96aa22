"""Candles on the caller's path and in the writer thread: ``extract_market_data`` copies (text
times unparsed), ``settle_market(s)`` parses, sorts and trims. Every form of the same candles
settles to the same arrays, time and indicators as the rule says (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from mlpred_cli.config import MAX_INDICATOR_CANDLES
from mlpred_cli.derive import indicators
from mlpred_cli.derive.indicators import (
    MarketArrays,
    compute_indicators,
    extract_market_data,
    indicator_columns,
    settle_market,
    settle_markets,
)
from mlpred_cli.errors import InputError

COUNT = MAX_INDICATOR_CANDLES + 200
START = datetime(2024, 3, 1, tzinfo=UTC)
TIMES = [START + timedelta(minutes=15) * i for i in range(COUNT)]
#: Rows in the caller's order: shuffled, so the last row is not the latest.
SHUFFLED = np.random.default_rng(7).permutation(COUNT)
assert SHUFFLED[-1] != COUNT - 1


def _prices(order: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    close = 100.0 + np.cumsum(rng.normal(size=COUNT))
    columns = {
        "open": close + rng.normal(0.0, 0.2, COUNT),
        "high": close + rng.uniform(0.1, 1.0, COUNT),
        "low": close - rng.uniform(0.1, 1.0, COUNT),
        "close": close,
        "volume": rng.uniform(1.0, 2.0, COUNT),
    }
    return {name: values[order] for name, values in columns.items()}


def _settled(frame: pd.DataFrame) -> MarketArrays:
    market = extract_market_data(frame)
    assert market is not None
    return settle_market(market)


def _forms(order: np.ndarray) -> dict[str, pd.DataFrame]:
    """The same candles, rows in ``order``, with their times in each form a caller uses."""
    times = pd.DatetimeIndex([TIMES[i] for i in order])
    prices = _prices(order)
    berlin = times.tz_convert("Europe/Berlin")
    naive_text = times.tz_convert(None).strftime("%Y-%m-%dT%H:%M:%S")
    # every other row with an offset, the others naive (= UTC), as the rule reads them
    mixed_text = [
        moment.isoformat() if position % 2 else moment.tz_convert(None).isoformat()
        for position, moment in enumerate(berlin)
    ]
    return {
        "DatetimeIndex": pd.DataFrame(prices, index=times),
        "naive DatetimeIndex": pd.DataFrame(prices, index=times.tz_convert(None)),
        "datetime64 column": pd.DataFrame({"time": berlin, **prices}),
        "ISO text": pd.DataFrame({"time": naive_text, **prices}),
        "ISO text, naive and aware": pd.DataFrame({"datetime": mixed_text, **prices}),
        "object text": pd.DataFrame({"time": pd.Series(list(naive_text), dtype=object), **prices}),
        "python-stored text": pd.DataFrame(
            {"time": pd.array(list(naive_text), dtype=pd.StringDtype("python")), **prices}
        ),
        "epoch milliseconds": pd.DataFrame({"timestamp": times.asi8 // 1_000_000, **prices}),
    }


TEXT_FORMS = ("ISO text", "ISO text, naive and aware", "object text", "python-stored text")


def _expected(order: np.ndarray) -> tuple[dict[str, np.ndarray], datetime]:
    """The rule: sorted by time when the last row is not the latest, the last 500 kept."""
    prices = _prices(order)
    times = np.array([TIMES[i] for i in order])
    if times[-1] != times.max():
        keep = np.argsort(times, kind="stable")[-MAX_INDICATOR_CANDLES:]
    else:
        keep = np.arange(COUNT)[-MAX_INDICATOR_CANDLES:]
    return {name: values[keep] for name, values in prices.items()}, times[keep][-1]


@pytest.mark.parametrize("order", [SHUFFLED, np.arange(COUNT)], ids=["unsorted", "sorted"])
def test_every_form_settles_to_the_same_candles_time_and_indicators(order: np.ndarray) -> None:
    expected, last = _expected(order)
    reference = MarketArrays(
        open=expected["open"],
        high=expected["high"],
        low=expected["low"],
        close=expected["close"],
        volume=expected["volume"],
        last_open_time=last,
    )
    markets = []
    for form, frame in _forms(order).items():
        extracted = extract_market_data(frame)
        assert extracted is not None
        assert extracted.settled == (form not in TEXT_FORMS), form
        market = settle_market(extracted)
        assert market.settled
        assert market.last_open_time == last, form
        assert market.last_open_time.tzinfo is not None
        for name, values in expected.items():
            np.testing.assert_array_equal(getattr(market, name), values, err_msg=form)
        markets.append(market)
    # one batch: rows of a stack may differ in the last bit (BLAS), not more
    columns = indicator_columns([reference, *markets])
    expected_indicators = compute_indicators(reference)
    for name, column in columns.items():
        assert column == pytest.approx([expected_indicators[name]] * len(column), rel=1e-12), name


def test_text_times_are_copied_unparsed_and_settled_in_the_writer() -> None:
    frame = _forms(SHUFFLED)["ISO text"]
    market = extract_market_data(frame)
    assert market is not None and not market.settled
    assert market.text_times is not None and market.text_times.column == "time"
    assert market.text_times.strings() == frame["time"].tolist()
    assert market.close.shape == (COUNT,)  # every row, in the caller's order
    # until settled, the time is the last row's
    assert market.last_open_time == TIMES[SHUFFLED[-1]]
    # the caller may reuse its frame at once
    frame.loc[frame.index[3], "time"] = "garbage"
    frame.loc[frame.index[3], "close"] = -1.0
    settled, errors = settle_markets([market, None])
    assert errors == [None, None] and settled[1] is None
    assert settled[0] is not None and settled[0].last_open_time == TIMES[-1]
    np.testing.assert_array_equal(settled[0].close, _expected(SHUFFLED)[0]["close"])


def test_settled_forms_keep_one_contiguous_price_block() -> None:
    for form, frame in _forms(SHUFFLED).items():
        market = extract_market_data(frame)
        assert market is not None
        assert market.prices.flags.c_contiguous and market.prices.dtype == np.float64, form
        assert market.prices.shape[0] == 5
        assert np.shares_memory(market.close, market.prices)
        assert not np.shares_memory(market.prices, frame["close"].to_numpy())


def test_an_unreadable_text_time_gives_no_market_and_the_message() -> None:
    text = [moment.strftime("%Y-%m-%dT%H:%M:%S") for moment in TIMES[:30]]
    text[12] = "yesterday-ish"
    frame = pd.DataFrame({"time": text, "close": np.arange(30.0)})
    market = extract_market_data(frame)  # the last value reads: checked in the writer
    assert market is not None and not market.settled
    settled, errors = settle_markets([market])
    assert settled == [None]
    assert errors[0] == (
        "market_data column 'time' does not hold times: 'yesterday-ish' at position 12 "
        "is neither ISO 8601 nor an epoch number"
    )
    with pytest.raises(InputError, match="at position 12"):
        settle_market(market)
    with pytest.raises(InputError, match="at position 12"):
        compute_indicators(market)
    assert indicator_columns([market])["rsi"] == [None]


def test_text_times_mixed_with_epochs_are_reported_by_settling() -> None:
    text = [str(int(TIMES[0].timestamp())), *(t.isoformat() for t in TIMES[1:20])]
    market = extract_market_data(pd.DataFrame({"time": text, "close": np.arange(20.0)}))
    assert market is not None
    assert settle_markets([market])[1] == [
        "market_data column 'time' mixes epoch numbers and ISO text (the value at position 1)"
    ]


@pytest.mark.parametrize(
    ("times", "message"),
    [
        (["2024-03-01T00:00:00", "not a time"], "does not hold times: 'not a time' at position 1"),
        (["2024-03-01T00:00:00", None], "missing candle times"),
        ([None, "2024-03-01T00:00:00"], "missing candle times"),
    ],
)
def test_a_bad_last_value_or_a_missing_time_is_still_refused_at_once(
    times: list[str | None], message: str
) -> None:
    for dtype in ("str", object):
        frame = pd.DataFrame({"time": pd.Series(times, dtype=dtype), "close": [1.0, 2.0]})
        with pytest.raises(InputError, match=message):
            extract_market_data(frame)


@pytest.mark.parametrize(
    "times",
    [
        ["03/01/2024 00:00", "03/01/2024 00:15"],  # format inferred, not ISO 8601
        ["1709251200", "1709252100"],  # epoch seconds as text
        [datetime(2024, 3, 1, tzinfo=UTC), "2024-03-01T00:15:00+00:00"],  # not all text
    ],
)
def test_text_that_is_not_plain_iso_is_parsed_on_the_callers_path(times: list[object]) -> None:
    frame = pd.DataFrame({"time": pd.Series(times, dtype=object), "close": [1.0, 2.0]})
    market = extract_market_data(frame)
    assert market is not None and market.settled
    assert market.last_open_time == datetime(2024, 3, 1, 0, 15, tzinfo=UTC)


def test_long_text_columns_are_parsed_on_the_callers_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(indicators, "MAX_DEFERRED_TEXT_ROWS", COUNT - 1)
    market = extract_market_data(_forms(SHUFFLED)["ISO text"])
    assert market is not None and market.settled
    assert market.close.shape == (MAX_INDICATOR_CANDLES,)
    assert market.last_open_time == TIMES[-1]


def test_a_sliced_arrow_text_column_keeps_only_its_rows() -> None:
    frame = _forms(np.arange(COUNT))["ISO text"].iloc[-40:-10]
    market = extract_market_data(frame)
    assert market is not None and market.text_times is not None
    assert market.text_times.offsets[0] == 0
    assert market.text_times.strings() == frame["time"].tolist()
    assert settle_market(market).last_open_time == TIMES[-11]


def test_column_labels_are_read_again_when_the_frame_gets_new_ones() -> None:
    frame = _forms(np.arange(COUNT))["DatetimeIndex"]
    assert extract_market_data(frame) is not None
    frame.columns = ["open", "high", "low", "price", "volume"]
    with pytest.raises(InputError, match="no 'close' column"):
        extract_market_data(frame)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            pd.DataFrame([[1.0, 2.0, 1]], columns=["close", "close", "time"]),
            "more than one 'close' column",
        ),
        (
            pd.DataFrame([[1.0, "2024-03-01", "2024-03-01"]], columns=["close", "time", "time"]),
            "more than one 'time' column",
        ),
    ],
)
def test_duplicated_columns_are_refused(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(InputError, match=message):
        extract_market_data(frame)


def test_prices_in_any_column_order_and_dtype() -> None:
    order = np.arange(COUNT)
    expected, last = _expected(order)
    base = _forms(order)["datetime64 column"]
    variants = {
        "reordered": base[["volume", "close", "time", "low", "open", "high"]],
        "int volume": base.assign(volume=(base["volume"] * 1000).astype("int64")),
        "float32 and missing open": base.drop(columns="open").astype({"high": "float32"}),
    }
    for form, frame in variants.items():
        market = _settled(frame)
        assert market.last_open_time == last, form
        np.testing.assert_array_equal(market.close, expected["close"], err_msg=form)
    assert np.isnan(_settled(variants["float32 and missing open"]).open).all()


def test_a_batch_settles_as_each_market_alone() -> None:
    """One parse for the batch's text; columns it cannot read wholly are read alone."""
    frames = [
        *_forms(SHUFFLED).values(),
        pd.DataFrame({"time": ["2024-03-01T00:00:00", "oops", "2024-03-01T00:30:00"],
                      "close": [1.0, 2.0, 3.0]}),
        pd.DataFrame({"time": ["03/01/2024 00:00", "2024-03-01T00:15:00+01:00"],
                      "close": [1.0, 2.0]}),
        pd.DataFrame({"time": ["1709251200", "2024-03-01T00:15:00"], "close": [1.0, 2.0]}),
        pd.DataFrame({"time": ["2500-01-01T00:00:00", "2500-01-01T00:15:00"],
                      "close": [1.0, 2.0]}),
    ]  # fmt: skip
    markets = [extract_market_data(frame) for frame in frames]
    markets.insert(2, None)
    settled, errors = settle_markets(markets)
    for market, got, error in zip(markets, settled, errors, strict=True):
        if market is None:
            assert got is None and error is None
            continue
        try:
            alone = settle_market(market)
        except InputError as refused:
            assert got is None and error == str(refused)
            continue
        assert got is not None and error is None
        assert got.last_open_us == alone.last_open_us
        np.testing.assert_array_equal(got.prices, alone.prices)
    assert sum(error is not None for error in errors) == 2
