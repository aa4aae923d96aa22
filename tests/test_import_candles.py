"""``import-candles``: CSV and Parquet, epoch seconds / milliseconds / ISO times, upsert,
invalid rows with line numbers, --strict, interval inference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlpred_cli.errors import InputError, SchemaNotReady
from mlpred_cli.outcomes.candle_files import import_candles, read_candle_file
from mlpred_cli.store.tables import candles_table
from tests.cli_helpers import run_cli

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EPOCH_S = int(T0.timestamp())  # 1772366400


def _stored(engine: Engine) -> list[dict[str, Any]]:
    query = sa.select(candles_table).order_by(candles_table.c.symbol, candles_table.c.datetime)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def _write(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


THREE_CANDLES = [
    (T0, 100.0, 101.0, 99.0, 100.5, 10.0),
    (T0 + timedelta(minutes=15), 100.5, 102.0, 100.0, 101.5, 11.0),
    (T0 + timedelta(minutes=30), 101.5, 101.5, 100.5, 101.0, 12.0),
]


def _expected(symbol: str = "BTCUSDT") -> list[dict[str, Any]]:
    return [
        {"symbol": symbol, "interval_minutes": 15, "datetime": when, "open": o, "high": h,
         "low": lo, "close": c, "volume": v}
        for when, o, h, lo, c, v in THREE_CANDLES
    ]  # fmt: skip


@pytest.mark.parametrize(
    "time_text",
    [
        lambda t: str(int(t.timestamp())),  # epoch seconds
        lambda t: str(int(t.timestamp()) * 1000),  # epoch milliseconds
        lambda t: t.strftime("%Y-%m-%d %H:%M:%S"),  # naive ISO: UTC
        lambda t: t.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    ],
    ids=["seconds", "milliseconds", "iso-naive", "iso-z"],
)
def test_csv_time_formats_give_the_same_rows(
    engine: Engine, tmp_path: Path, time_text: Any
) -> None:
    lines = ["Timestamp,Open,High,Low,Close,Volume"]
    lines += [f"{time_text(t)},{o},{h},{lo},{c},{v}" for t, o, h, lo, c, v in THREE_CANDLES]
    path = _write(tmp_path / "btc.csv", "\n".join(lines))

    report = import_candles(engine, path, symbol="BTCUSDT")

    assert (report.inserted, report.updated, report.unchanged) == (3, 0, 0)
    assert report.interval_minutes == 15  # inferred
    assert _stored(engine) == _expected()
    assert [(s.symbol, s.rows, s.first, s.last) for s in report.symbols] == [
        ("BTCUSDT", 3, T0, T0 + timedelta(minutes=30))
    ]


def test_naive_and_aware_iso_times_give_the_same_row(engine: Engine, tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", """
symbol,datetime,open,high,low,close,volume
AAA,2026-03-01 12:00:00,1,2,0.5,1.5,1
BBB,2026-03-01T14:00:00+02:00,1,2,0.5,1.5,1
""")  # fmt: skip
    import_candles(engine, path, interval="15m")
    assert [row["datetime"] for row in _stored(engine)] == [T0, T0]


@pytest.mark.parametrize("unit", ["seconds", "milliseconds", "iso", "datetime64"])
def test_parquet_time_formats(engine: Engine, tmp_path: Path, unit: str) -> None:
    times = [t for t, *_ in THREE_CANDLES]
    column: Any = {
        "seconds": [int(t.timestamp()) for t in times],
        "milliseconds": [int(t.timestamp() * 1000) for t in times],
        "iso": [t.isoformat() for t in times],
        "datetime64": pd.to_datetime(times, utc=True),
    }[unit]
    frame = pd.DataFrame(
        {
            "open_time": column,
            "SYMBOL": "ETHUSDT",
            **{
                name: [row[i + 1] for row in THREE_CANDLES]
                for i, name in enumerate(["open", "high", "low", "close", "volume"])
            },
        }
    )
    path = tmp_path / "eth.parquet"
    frame.to_parquet(path)

    report = import_candles(engine, path)

    assert report.inserted == 3
    assert _stored(engine) == _expected("ETHUSDT")


def test_pandas_written_csv_with_index_column(engine: Engine, tmp_path: Path) -> None:
    index = pd.DatetimeIndex([t for t, *_ in THREE_CANDLES]).tz_convert(None)
    frame = pd.DataFrame(
        {name: [row[i + 1] for row in THREE_CANDLES]
         for i, name in enumerate(["open", "high", "low", "close", "volume"])},
        index=index,
    )  # fmt: skip
    path = tmp_path / "pandas.csv"
    frame.to_csv(path)

    code, out, err = run_cli("--db", _url(engine), "import-candles", str(path), "--symbol",
                             "BTCUSDT")  # fmt: skip

    assert (code, err) == (0, "")
    assert "inserted 3, updated 0, unchanged 0, invalid 0" in out
    assert _stored(engine) == _expected()


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_importing_twice_changes_nothing_and_a_changed_candle_is_updated(
    engine: Engine, tmp_path: Path
) -> None:
    lines = ["datetime,open,high,low,close,volume,symbol"]
    lines += [
        f"{t.isoformat()},{o},{h},{lo},{c},{v},BTCUSDT" for t, o, h, lo, c, v in THREE_CANDLES
    ]
    path = _write(tmp_path / "a.csv", "\n".join(lines))
    first = import_candles(engine, path)
    stored = _stored(engine)

    second = import_candles(engine, path)

    assert (first.inserted, first.updated) == (3, 0)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 3)
    assert _stored(engine) == stored

    lines[2] = lines[2].replace(",101.5,11.0,", ",101.75,11.0,")  # new close for candle 2
    lines.append(f"{(T0 + timedelta(minutes=45)).isoformat()},1,2,0.5,1.5,,BTCUSDT")
    third = import_candles(engine, _write(tmp_path / "b.csv", "\n".join(lines)))
    assert (third.inserted, third.updated, third.unchanged) == (1, 1, 2)
    rows = _stored(engine)
    assert rows[1]["close"] == 101.75
    assert rows[3]["volume"] is None  # an empty volume is stored as null


INVALID_CSV = """
datetime,symbol,open,high,low,close,volume
2026-03-01 12:00,BTCUSDT,100,101,99,100.5,10
2026-03-01 12:15,BTCUSDT,100,101,99,,10
2026-03-01 12:30,BTCUSDT,100,98,99,100,10
2026-03-01 12:45,BTCUSDT,abc,101,99,100,10
2026-03-01 13:00,BTCUSDT,100,101,99,100.25,10
not a time,BTCUSDT,100,101,99,100,10
"""


def test_invalid_rows_are_reported_with_line_numbers(engine: Engine, tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.csv", INVALID_CSV)

    code, out, err = run_cli("--db", _url(engine), "import-candles", str(path), "-i", "15m")

    assert code == 0
    assert err.splitlines() == [
        "invalid line 3: missing close",
        "invalid line 4: high < low",
        "invalid line 5: non-numeric open",
        "invalid line 7: unreadable time",
    ]
    assert "inserted 2, updated 0, unchanged 0, invalid 4 (of 6 rows" in out
    assert [row["close"] for row in _stored(engine)] == [100.5, 100.25]


def test_strict_aborts_with_nothing_written(engine: Engine, tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.csv", INVALID_CSV)

    code, _out, err = run_cli("--db", _url(engine), "import-candles", str(path), "--strict",
                              "--interval", "15m")  # fmt: skip

    assert code == 2
    assert "4 invalid row(s), nothing imported; first at line 3: missing close" in err
    assert _stored(engine) == []


@pytest.mark.sqlite_only
def test_mixed_seconds_and_milliseconds_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "mixed.csv", f"""
time,open,high,low,close,volume
{EPOCH_S},1,2,0.5,1,1
{EPOCH_S + 900},1,2,0.5,1,1
{(EPOCH_S + 1800) * 1000},1,2,0.5,1,1
""")  # fmt: skip
    with pytest.raises(InputError, match="line 4 is in milliseconds"):
        read_candle_file(path, symbol="X", interval="15m")


@pytest.mark.sqlite_only
def test_interval_inferred_only_when_unambiguous(tmp_path: Path) -> None:
    # 1h spacing with one gap (2h): still 1h
    hourly = [EPOCH_S, EPOCH_S + 3600, EPOCH_S + 7200, EPOCH_S + 14400]
    path = _write(tmp_path / "h.csv", "time,open,high,low,close,volume\n" + "\n".join(
        f"{t},1,2,0.5,1,1" for t in hourly))  # fmt: skip
    assert read_candle_file(path, symbol="X").interval_minutes == 60
    # 7-minute spacing is no known interval
    odd = _write(tmp_path / "odd.csv", "time,open,high,low,close,volume\n" + "\n".join(
        f"{EPOCH_S + 420 * i},1,2,0.5,1,1" for i in range(3)))  # fmt: skip
    with pytest.raises(InputError, match="pass --interval"):
        read_candle_file(odd, symbol="X")


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv"], "file not found"),
        (["FILE", "--interval", "7m"], "unknown interval"),
        (["FILE.json"], "cannot tell the format"),
        (["FILE", "--format", "xlsx"], "unknown file format"),
        (["NOSYMBOL"], "no symbol column: pass --symbol"),
        (["NOCLOSE"], "no 'close' column"),
        (["GARBAGE", "--format", "parquet"], "cannot read"),
    ],
)
def test_bad_input_exits_2(db_url: str, tmp_path: Path, args: list[str], message: str) -> None:
    files = {
        "FILE": _write(
            tmp_path / "ok.csv", "symbol,time,open,high,low,close,volume\nA,1,1,1,1,1,1"
        ),
        "FILE.json": _write(tmp_path / "x.json", "{}"),
        "NOSYMBOL": _write(tmp_path / "ns.csv", "time,open,high,low,close,volume\n1,1,1,1,1,1"),
        "NOCLOSE": _write(tmp_path / "nc.csv", "symbol,time,open,high,low,volume\nA,1,1,1,1,1"),
        "GARBAGE": _write(tmp_path / "g.parquet", "not parquet"),
    }
    argv = [str(files[a]) if a in files else (str(tmp_path / a) if a.endswith(".csv") else a)
            for a in args]  # fmt: skip
    code, out, err = run_cli("--db", db_url, "import-candles", *argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in out + err


MEANINGLESS_PRICES_CSV = """
symbol,datetime,open,high,low,close,volume
BTCUSDT,2026-03-01T12:00,100,101,99,100.5,10
BTCUSDT,2026-03-01T12:15,1,2,1,5,1
BTCUSDT,2026-03-01T12:30,1,2,1,0,1
BTCUSDT,2026-03-01T12:45,-1,-1,-2,-1,1
BTCUSDT,2026-03-01T13:00,0.5,2,1,1.5,1
BTCUSDT,2026-03-01T13:15,1,2,0,1.5,1
BTCUSDT,2026-03-01T13:30,100.5,101,100,101,10
"""


def test_non_positive_prices_and_open_or_close_outside_the_range_are_invalid(
    engine: Engine, tmp_path: Path
) -> None:
    path = _write(tmp_path / "meaningless.csv", MEANINGLESS_PRICES_CSV)

    code, out, err = run_cli("--db", _url(engine), "import-candles", str(path), "-i", "15m")

    assert code == 0
    assert err.splitlines() == [
        "invalid line 3: close not between low and high",  # 5 > high 2
        "invalid line 4: close <= 0",
        "invalid line 5: open <= 0",  # every price negative: the first one is named
        "invalid line 6: open not between low and high",  # 0.5 < low 1
        "invalid line 7: low <= 0",
    ]
    assert "inserted 2, updated 0, unchanged 0, invalid 5 (of 7 rows" in out
    assert [row["close"] for row in _stored(engine)] == [100.5, 101.0]

    code, _out, err = run_cli(
        "--db", _url(engine), "import-candles", str(path), "--strict", "-i", "15m"
    )
    assert code == 2
    assert "5 invalid row(s), nothing imported; first at line 3: close not between" in err


def test_import_accepts_a_url_a_path_or_an_engine_and_a_str_file(
    db_url: str, engine: Engine, backend: str, tmp_path: Path
) -> None:
    lines = ["datetime,open,high,low,close,volume,symbol"]
    lines += [
        f"{t.isoformat()},{o},{h},{lo},{c},{v},BTCUSDT" for t, o, h, lo, c, v in THREE_CANDLES
    ]
    path = _write(tmp_path / "a.csv", "\n".join(lines))

    first = import_candles(engine, str(path))
    again = [import_candles(db_url, path)]
    if backend == "sqlite":
        again.append(import_candles(Path(engine.url.database or ""), str(path)))

    assert first.inserted == 3
    assert [(r.inserted, r.updated, r.unchanged) for r in again] == [(0, 0, 3)] * len(again)
    assert _stored(engine) == _expected()
    assert read_candle_file(str(path)).total_rows == 3


def test_import_refuses_an_unmigrated_database(empty_db_url: str, tmp_path: Path) -> None:
    path = _write(tmp_path / "a.csv", "symbol,time,open,high,low,close,volume\nA,1,1,1,1,1,1")
    with pytest.raises(SchemaNotReady):
        import_candles(empty_db_url, path, interval="15m")


@pytest.mark.sqlite_only
def test_library_messages_name_parameters_the_cli_names_options(
    db_url: str, tmp_path: Path
) -> None:
    path = _write(tmp_path / "ns.csv", "time,open,high,low,close,volume\n1,1,1,1,1,1")
    with pytest.raises(InputError, match=r"no symbol column: pass symbol$"):
        read_candle_file(path, interval="15m")
    with pytest.raises(InputError, match=r"pass file_format 'csv' or 'parquet'$"):
        read_candle_file(tmp_path / "x.json")
    code, _out, err = run_cli("--db", db_url, "import-candles", str(tmp_path / "x.json"))
    assert code == 2 and "pass --format csv|parquet" in err


# ---------------------------------------------------------------- never silently wrong


def _candle_lines(times: list[datetime], symbol: str | None = "BTCUSDT", close: float = 100.5
                  ) -> list[str]:  # fmt: skip
    tail = f",{symbol}" if symbol else ""
    return [f"{t.isoformat()},100,101,99,{close},10{tail}" for t in times]


HEADER = "datetime,open,high,low,close,volume,symbol"


def test_a_declared_interval_the_spacing_contradicts_is_refused(
    engine: Engine, tmp_path: Path
) -> None:
    hourly = [T0 + timedelta(hours=i) for i in range(4)]
    good = _write(tmp_path / "good_1h.csv", "\n".join([HEADER, *_candle_lines(hourly)]))
    assert import_candles(engine, good, interval="1h").inserted == 4
    stored = _stored(engine)
    quarter = [T0 + timedelta(minutes=15 * i) for i in range(16)]
    wrong = _write(tmp_path / "good_15m.csv",
                   "\n".join([HEADER, *_candle_lines(quarter, close=100.0)]))  # fmt: skip

    code, _out, err = run_cli("--db", _url(engine), "import-candles", str(wrong), "-i", "1h")

    assert code == 2
    assert err.strip() == (
        "Error: interval 1h contradicts the file: 75% of its candles are off the 60 min grid, "
        "most 15 min apart"
    )
    assert _stored(engine) == stored  # the hourly candles are not overwritten
    # longer candles labelled shorter: 1h candles as 15m (enough of them to tell)
    daylong = [T0 + timedelta(hours=i) for i in range(12)]
    hours = _write(tmp_path / "h.csv", "\n".join([HEADER, *_candle_lines(daylong)]))
    with pytest.raises(InputError, match="its candles are never 15 min apart, most 60 min apart"):
        import_candles(engine, hours, interval="15m")
    assert _stored(engine) == stored


def test_off_grid_and_implausible_times_are_invalid_rows_never_written(
    engine: Engine, tmp_path: Path
) -> None:
    good = _write(tmp_path / "good.csv", "\n".join([HEADER, *_candle_lines(
        [T0 + timedelta(minutes=15 * i) for i in range(4)])]))  # fmt: skip
    import_candles(engine, good)
    stored = _stored(engine)
    future = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=30)
    bad = _write(tmp_path / "bad.csv", "\n".join([
        "time,open,high,low,close,volume,symbol",
        f"{EPOCH_S},100,101,99,100.5,10,BTCUSDT",  # line 2: fine, unchanged
        f"{EPOCH_S + 420},100,101,99,99.5,10,BTCUSDT",  # 12:07: off the 15m grid
        f"{EPOCH_S + 930},100,101,99,99.5,10,BTCUSDT",  # 12:15:30: off the grid
        "900,100,101,99,99.5,10,BTCUSDT",  # 1970-01-01 00:15
        f"{int(future.timestamp())},100,101,99,99.5,10,BTCUSDT",
        f"{EPOCH_S + 900},100,101,99,100.5,10,BTCUSDT",  # line 7: fine, unchanged
    ]))  # fmt: skip

    code, out, err = run_cli("--db", _url(engine), "import-candles", str(bad), "-i", "15m")

    assert code == 0
    assert err.splitlines() == [
        "invalid line 3: time not on the 15 min grid",
        "invalid line 4: time not on the 15 min grid",
        "invalid line 5: time before 2000-01-01",
        "invalid line 6: time in the future",
    ]
    assert "inserted 0, updated 0, unchanged 2, invalid 4 (of 6 rows" in out
    assert _stored(engine) == stored


def test_a_file_of_off_grid_1970_times_updates_nothing(engine: Engine, tmp_path: Path) -> None:
    """Epoch numbers in the wrong unit (here minutes) are 1970 dates: invalid, not candles."""
    good = _write(tmp_path / "good.csv", "\n".join([HEADER, *_candle_lines(
        [T0 + timedelta(minutes=15 * i) for i in range(4)])]))  # fmt: skip
    import_candles(engine, good)
    stored = _stored(engine)
    minutes = EPOCH_S // 60
    bad = _write(tmp_path / "minutes.csv", "time,open,high,low,close,volume,symbol\n" + "\n".join(
        f"{minutes + 15 * i},1,2,0.5,1,1,BTCUSDT" for i in range(4)))  # fmt: skip

    code, _out, err = run_cli("--db", _url(engine), "import-candles", str(bad))

    assert code == 2
    assert err.strip() == (
        "Error: no valid candles in minutes.csv: 4 rows invalid "
        "(first: line 2: time before 2000-01-01)"
    )
    assert _stored(engine) == stored


def test_symbol_option_must_agree_with_the_symbol_column(engine: Engine, tmp_path: Path) -> None:
    times = [T0 + timedelta(minutes=15 * i) for i in range(3)]
    lines = _candle_lines(times)
    lines[1] = lines[1].replace(",BTCUSDT", ",")  # an empty cell takes the --symbol
    path = _write(tmp_path / "btc.csv", "\n".join([HEADER, *lines]))

    code, _out, err = run_cli("--db", _url(engine), "import-candles", str(path), "-s", "ETHUSDT")
    assert code == 2
    assert err.strip() == (
        "Error: the file's symbol column says BTCUSDT at line 2, not ETHUSDT: leave out --symbol"
    )
    assert _stored(engine) == []

    code, _out, err = run_cli("--db", _url(engine), "import-candles", str(path), "-s", "BTCUSDT")
    assert (code, err) == (0, "")
    assert [row["symbol"] for row in _stored(engine)] == ["BTCUSDT"] * 3


@pytest.mark.sqlite_only
def test_a_directory_is_named_as_such(db_url: str, tmp_path: Path) -> None:
    code, _out, err = run_cli("--db", db_url, "import-candles", str(tmp_path))
    assert code == 2
    assert err.strip() == f"Error: {tmp_path} is a directory: give a candle file (.csv or .parquet)"


@pytest.mark.sqlite_only
@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_an_all_invalid_file_says_so(db_url: str, tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame(
        {"symbol": "A", "time": [EPOCH_S + 900 * i for i in range(3)], "open": 1.0,
         "high": 0.5, "low": 1.0, "close": 1.0, "volume": 1.0}
    )  # fmt: skip
    path = tmp_path / f"bad.{suffix}"
    if suffix == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    first = 1 if suffix == "parquet" else 2

    code, _out, err = run_cli("--db", db_url, "import-candles", str(path))

    assert code == 2
    assert err.strip() == (
        f"Error: no valid candles in bad.{suffix}: 3 rows invalid (first: line {first}: high < low)"
    )


# ---------------------------------------------------------------- streaming


def _messy_file(tmp_path: Path) -> Path:
    """Two symbols interleaved, out of order, keys repeated far apart, invalid rows."""
    rows = ["datetime,open,high,low,close,volume,symbol"]
    for i in range(40):
        for name, base in (("AAA", 10.0), ("BBB", 20.0)):
            when = T0 + timedelta(minutes=15 * ((i * 7) % 40))  # a permutation of 40 slots
            rows.append(f"{when.isoformat()},{base},{base + 1},{base - 1},{base + i / 100},"
                        f"{i},{name}")  # fmt: skip
    rows.append(f"{T0.isoformat()},10,11,9,10.99,99,AAA")  # repeats AAA's T0 at the end
    rows.append("1999-12-31T23:45:00,10,11,9,10.5,1,AAA")  # implausibly early
    rows.append(f"{T0.isoformat()},10,9,11,10,1,BBB")  # high < low: the earlier BBB T0 stays
    rows.append(f"{(T0 + timedelta(hours=10)).isoformat()},10,11,9,10.5,,AAA")
    return _write(tmp_path / "messy.csv", "\n".join(rows))


def _clear(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.delete(candles_table))


@pytest.mark.parametrize("chunk_rows", [1, 3, 7])
def test_tiny_chunks_store_what_one_chunk_stores(
    engine: Engine, tmp_path: Path, chunk_rows: int
) -> None:
    path = _messy_file(tmp_path)
    whole = import_candles(engine, path)
    stored = _stored(engine)
    _clear(engine)

    chunked = import_candles(engine, path, chunk_rows=chunk_rows)

    assert _stored(engine) == stored
    assert chunked == whole
    if engine.dialect.name == "sqlite":  # the text UTCDateTime stores, which joins rely on
        with engine.connect() as conn:
            first = conn.exec_driver_sql("SELECT min(datetime) FROM market_candles").scalar()
        assert first == "2026-03-01 12:00:00.000000"
    assert (whole.inserted, whole.duplicates, whole.invalid_count) == (81, 1, 2)
    assert [(r.line, r.reason) for r in whole.invalid] == [
        (83, "time before 2000-01-01"), (84, "high < low")
    ]  # fmt: skip
    assert [(s.symbol, s.rows) for s in whole.symbols] == [("AAA", 41), ("BBB", 40)]
    aaa_t0 = next(r for r in stored if r["symbol"] == "AAA" and r["datetime"] == T0)
    assert (aaa_t0["close"], aaa_t0["volume"]) == (10.99, 99.0)  # the last row of a key wins
    batch = read_candle_file(path, chunk_rows=chunk_rows)
    pd.testing.assert_frame_equal(batch.frame, read_candle_file(path).frame)
    assert len(batch.frame) == 81 and batch.duplicates == 1


def test_strict_writes_nothing_when_a_later_chunk_is_invalid(
    engine: Engine, tmp_path: Path
) -> None:
    path = _messy_file(tmp_path)
    with pytest.raises(
        InputError, match=r"^2 invalid row\(s\), nothing imported; first at line 83"
    ):
        import_candles(engine, path, strict=True, chunk_rows=5)
    assert _stored(engine) == []


@pytest.mark.sqlite_only
def test_mixed_units_across_chunks_are_caught_as_in_one_chunk(tmp_path: Path) -> None:
    path = _write(tmp_path / "mixed.csv", "time,open,high,low,close,volume\n" + "\n".join(
        [f"{EPOCH_S + 900 * i},1,2,0.5,1,1" for i in range(5)]
        + [f"{(EPOCH_S + 900 * 5) * 1000},1,2,0.5,1,1"]))  # fmt: skip
    for chunk_rows in (2, 100):
        with pytest.raises(InputError, match="mixes epoch seconds and milliseconds: line 7 is"):
            read_candle_file(path, symbol="X", chunk_rows=chunk_rows)
    iso = _write(tmp_path / "iso.csv", "time,open,high,low,close,volume\n" + "\n".join(
        [f"{(T0 + timedelta(minutes=15 * i)).isoformat()},1,2,0.5,1,1" for i in range(4)]
        + [f"{EPOCH_S + 3600},1,2,0.5,1,1"]))  # fmt: skip
    for chunk_rows in (2, 100):
        with pytest.raises(InputError, match=r"mixes epoch numbers and ISO text \(line 6\)"):
            read_candle_file(iso, symbol="X", chunk_rows=chunk_rows)


def test_the_report_keeps_the_first_invalid_rows_and_counts_all(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlpred_cli.outcomes.candle_files as candle_files

    monkeypatch.setattr(candle_files, "INVALID_ROWS_KEPT", 2)
    lines = _candle_lines([T0 + timedelta(minutes=15 * i) for i in range(12)])
    for i in (9, 3, 7, 5, 11):  # high < low on these rows (lines i + 2)
        lines[i] = lines[i].replace(",101,99,", ",99,101,")
    path = _write(tmp_path / "c.csv", "\n".join([HEADER, *lines]))

    report = import_candles(engine, path, interval="15m", chunk_rows=1)

    assert report.invalid_count == 5
    assert [row.line for row in report.invalid] == [5, 7]
    assert report.inserted == 7
