"""``backfill-actuals``: hand-computed outcomes per horizon, gaps, entry price, idempotency,
locking, dry run, the raw_market_data source and the CLI output."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlpred_cli.cli.parsers import parse_moment, parse_thresholds
from mlpred_cli.errors import InputError, SchemaNotReady
from mlpred_cli.outcomes.backfill import BackfillReport, backfill_actuals
from mlpred_cli.store.column_types import UTCDateTime
from mlpred_cli.store.database import create_engine
from mlpred_cli.store.locks import backfill_lock
from mlpred_cli.store.tables import predictions_table
from tests.cli_helpers import run_cli
from tests.factories import candle_row, insert_candles, insert_predictions, prediction_row

pytestmark = pytest.mark.both_layouts

#: A quarter-hour boundary two days ago: every horizon of a prediction made then is due.
T = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
M15, H1, H4, H12 = (timedelta(minutes=15), timedelta(hours=1), timedelta(hours=4),
                    timedelta(hours=12))  # fmt: skip


def _outcomes(engine: Engine, prediction_id: Any = None) -> list[dict[str, Any]]:
    query = sa.select(predictions_table).order_by(predictions_table.c.id)
    if prediction_id is not None:
        query = query.where(predictions_table.c.prediction_id == prediction_id)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def _counts(report: BackfillReport) -> dict[str, tuple[int, int, int]]:
    return {c.horizon: (c.filled, c.pending, c.missing) for c in report.horizons}


def _candles(symbol: str, closes: dict[timedelta, float], base: datetime = T) -> list[Any]:
    return [candle_row(symbol, base + offset, close) for offset, close in closes.items()]


def test_each_horizon_hand_computed(engine: Engine) -> None:
    row = prediction_row("BTCUSDT", T, close_price=100.0)
    insert_predictions(engine, [row])
    # 15m +0.2 % > 0.15 % LONG; 1h -0.4 % < -0.3 % SHORT; 4h +0.5 % < 0.7 % NEUTRAL;
    # 12h -1.5 % < -1 % SHORT.
    insert_candles(engine, _candles("BTCUSDT", {M15: 100.2, H1: 99.6, H4: 100.5, H12: 98.5}))

    report = backfill_actuals(engine)

    assert report.status == "ok"
    assert report.rows_updated == 1
    assert _counts(report) == dict.fromkeys(("15m", "1h", "4h", "12h"), (1, 0, 0))
    stored = _outcomes(engine)[0]
    expected = {"15m": (0.002, "LONG"), "1h": (-0.004, "SHORT"), "4h": (0.005, "NEUTRAL"),
                "12h": (-0.015, "SHORT")}  # fmt: skip
    for horizon, (actual_return, direction) in expected.items():
        assert stored[f"actual_return_{horizon}"] == pytest.approx(actual_return, abs=1e-12)
        assert stored[f"actual_direction_{horizon}"] == direction
        # the factory predicts LONG and a return of +0.1 % for every horizon
        assert stored[f"accuracy_{horizon}"] is (direction == "LONG")
        assert stored[f"return_error_{horizon}"] == pytest.approx(0.001 - actual_return, abs=1e-12)
    assert stored["actuals_filled_at"] is not None
    assert stored["actuals_filled_at"].utcoffset() == timedelta(0)
    assert stored["updated_at"] == stored["actuals_filled_at"]


def test_exact_threshold_is_neutral_and_just_beyond_is_not(engine: Engine) -> None:
    # 64 -> 64.125 is exactly +2**-9 = 0.001953125 in binary floating point.
    rows = [prediction_row("AAA", T, close_price=64.0), prediction_row("BBB", T, close_price=64.0),
            prediction_row("CCC", T, close_price=64.0)]  # fmt: skip
    insert_predictions(engine, rows)
    insert_candles(engine, [candle_row("AAA", T + M15, 64.125), candle_row("BBB", T + M15, 63.875),
                            candle_row("CCC", T + M15, 64.1875)])  # fmt: skip

    backfill_actuals(engine, horizons=["15m"], thresholds={"15m": 0.001953125})

    by_symbol = {row["symbol"]: row for row in _outcomes(engine)}
    assert by_symbol["AAA"]["actual_return_15m"] == 0.001953125
    assert by_symbol["AAA"]["actual_direction_15m"] == "NEUTRAL"
    assert by_symbol["BBB"]["actual_return_15m"] == -0.001953125
    assert by_symbol["BBB"]["actual_direction_15m"] == "NEUTRAL"
    assert by_symbol["CCC"]["actual_return_15m"] == 0.0029296875
    assert by_symbol["CCC"]["actual_direction_15m"] == "LONG"
    # only one horizon filled: the row stays pending for the others
    assert all(row["actuals_filled_at"] is None for row in by_symbol.values())
    assert all(row["actual_return_1h"] is None for row in by_symbol.values())


def test_gap_in_candles_stays_null_and_counts_missing(engine: Engine) -> None:
    insert_predictions(engine, [prediction_row("BTCUSDT", T, close_price=100.0)])
    # no candle at T+4h, but its neighbours exist: nothing may be guessed from them
    closes = {M15: 101.0, H1: 101.0, H4 - M15: 150.0, H4 + M15: 150.0, H12: 101.0}
    insert_candles(engine, _candles("BTCUSDT", closes))

    report = backfill_actuals(engine)

    assert _counts(report)["4h"] == (0, 0, 1)
    assert _counts(report)["12h"] == (1, 0, 0)
    stored = _outcomes(engine)[0]
    assert stored["actual_return_4h"] is None
    assert stored["actual_direction_4h"] is None
    assert stored["accuracy_4h"] is None
    assert stored["actual_return_12h"] == pytest.approx(0.01)
    assert stored["actuals_filled_at"] is None

    # the candle arrives later: the next run fills it and completes the row
    insert_candles(engine, [candle_row("BTCUSDT", T + H4, 98.0)])
    second = backfill_actuals(engine)
    assert _counts(second)["4h"] == (1, 0, 0)
    assert _counts(second)["15m"] == (0, 0, 0)
    stored = _outcomes(engine)[0]
    assert stored["actual_return_4h"] == pytest.approx(-0.02)
    assert stored["actuals_filled_at"] is not None


def test_entry_price_from_close_price_or_from_the_candle(engine: Engine) -> None:
    rows = [
        prediction_row("AAA", T, close_price=200.0),  # from close_price
        prediction_row("BBB", T, close_price=None),  # from the candle at T
        prediction_row("CCC", T, close_price=0.0),  # not positive: from the candle at T
        prediction_row("DDD", T, close_price=None),  # no candle at T either: missing
    ]
    insert_predictions(engine, rows)
    candles = []
    for symbol in ("AAA", "BBB", "CCC", "DDD"):
        candles.append(candle_row(symbol, T + M15, 210.0))
        if symbol != "DDD":
            candles.append(candle_row(symbol, T, 250.0))
    insert_candles(engine, candles)

    report = backfill_actuals(engine, horizons=["15m"])

    by_symbol = {row["symbol"]: row for row in _outcomes(engine)}
    assert by_symbol["AAA"]["actual_return_15m"] == pytest.approx(210 / 200 - 1)
    assert by_symbol["BBB"]["actual_return_15m"] == pytest.approx(210 / 250 - 1)
    assert by_symbol["CCC"]["actual_return_15m"] == pytest.approx(210 / 250 - 1)
    assert by_symbol["DDD"]["actual_return_15m"] is None
    assert _counts(report) == {"15m": (3, 0, 1)}


def test_pending_until_the_target_candle_has_closed(engine: Engine) -> None:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    start = now - timedelta(hours=2)  # 15m and 1h due (their candles closed); 4h, 12h not
    insert_predictions(engine, [prediction_row("BTCUSDT", start, close_price=100.0)])
    closes = {M15: 101.0, H1: 102.0, H1 + M15 * 3: 103.0}
    insert_candles(engine, _candles("BTCUSDT", closes, base=start))
    # a candle opening at now - 15m closed exactly at now: due; one opening at now is not
    late = prediction_row("ETHUSDT", now - timedelta(minutes=30), close_price=10.0)
    insert_predictions(engine, [late])
    insert_candles(
        engine, [candle_row("ETHUSDT", now - M15, 11.0), candle_row("ETHUSDT", now, 12.0)]
    )

    report = backfill_actuals(engine, now=now)

    assert _counts(report) == {"15m": (2, 0, 0), "1h": (1, 1, 0), "4h": (0, 2, 0),
                               "12h": (0, 2, 0)}  # fmt: skip
    stored = _outcomes(engine, late["prediction_id"])[0]
    assert stored["actual_return_15m"] == pytest.approx(0.1)
    assert stored["actual_return_1h"] is None


def test_naive_and_aware_inputs_give_the_same_row(engine: Engine) -> None:
    naive = T.replace(tzinfo=None)
    aware = T.astimezone(timezone(timedelta(hours=2)))
    insert_predictions(engine, [prediction_row("AAA", naive, close_price=100.0),
                                prediction_row("BBB", aware, close_price=100.0)])  # fmt: skip
    later = T + M15
    insert_candles(engine, [candle_row("AAA", later.replace(tzinfo=None), 101.0),
                            candle_row("BBB", later.astimezone(aware.tzinfo), 101.0)])  # fmt: skip

    backfill_actuals(engine, horizons=["15m"], since=parse_moment(naive.isoformat()))

    rows = _outcomes(engine)
    assert [row["datetime"] for row in rows] == [T, T]
    assert [row["actual_return_15m"] for row in rows] == [pytest.approx(0.01)] * 2
    assert parse_moment("2026-03-01T12:00") == parse_moment("2026-03-01T14:00+02:00")


def test_rerun_writes_nothing(engine: Engine) -> None:
    insert_predictions(engine, [prediction_row("BTCUSDT", T, close_price=100.0),
                                prediction_row("ETHUSDT", T, close_price=100.0)])  # fmt: skip
    insert_candles(engine, _candles("BTCUSDT", {M15: 101.0, H1: 101.0}))  # 4h, 12h missing
    first = backfill_actuals(engine)
    before = _outcomes(engine)

    second = backfill_actuals(engine, now=datetime.now(UTC) + timedelta(minutes=5))

    assert first.rows_updated == 1
    assert second.rows_updated == 0
    assert _counts(second)["15m"] == (0, 0, 1)  # ETHUSDT has no candles at all
    assert _counts(second)["4h"] == (0, 0, 2)
    assert _outcomes(engine) == before


def test_dry_run_counts_but_writes_nothing(engine: Engine) -> None:
    insert_predictions(engine, [prediction_row("BTCUSDT", T, close_price=100.0)])
    insert_candles(engine, _candles("BTCUSDT", {M15: 101.0, H1: 101.0, H4: 101.0}))
    before = _outcomes(engine)

    report = backfill_actuals(engine, dry_run=True)

    assert report.status == "dry-run"
    assert _counts(report) == {"15m": (1, 0, 0), "1h": (1, 0, 0), "4h": (1, 0, 0),
                               "12h": (0, 0, 1)}  # fmt: skip
    assert report.rows_updated == 0
    assert _outcomes(engine) == before


def test_chunks_limit_and_filters(engine: Engine) -> None:
    rows = [prediction_row("BTCUSDT", T + M15 * i, close_price=100.0) for i in range(5)]
    rows.append(prediction_row("ETHUSDT", T, close_price=100.0))
    insert_predictions(engine, rows)
    insert_candles(engine, [candle_row("BTCUSDT", T + M15 * i, 110.0) for i in range(1, 7)])
    insert_candles(engine, [candle_row("ETHUSDT", T + M15, 110.0)])

    limited = backfill_actuals(engine, horizons=["15m"], symbol="BTCUSDT", limit=2)
    assert _counts(limited) == {"15m": (2, 0, 0)}
    windowed = backfill_actuals(
        engine, horizons=["15m"], symbol="BTCUSDT", since=T + M15 * 3, until=T + M15 * 3
    )
    assert _counts(windowed) == {"15m": (1, 0, 0)}
    chunked = backfill_actuals(engine, horizons=["15m"], chunk_rows=2)
    assert _counts(chunked) == {"15m": (3, 0, 0)}  # BTCUSDT #2, #4 and ETHUSDT
    assert chunked.chunks == 3  # 6 candidates in chunks of 2
    assert all(row["actual_return_15m"] == pytest.approx(0.1) for row in _outcomes(engine))


def test_raw_market_data_source(engine: Engine) -> None:
    raw = sa.Table(
        "raw_market_data",
        sa.MetaData(),
        sa.Column("symbol", sa.String(20)),
        sa.Column("timestamp", sa.BigInteger),
        sa.Column("datetime", UTCDateTime),
        sa.Column("interval_minutes", sa.Integer),
        *(sa.Column(name, sa.Double) for name in ("open", "high", "low", "close", "volume")),
        sa.Column("turnover", sa.Double),
        sa.Column("exchange", sa.String(20)),
    )
    with engine.begin() as conn:
        raw.create(conn)
        conn.execute(raw.insert(), [
            # timestamp deliberately in an unreliable unit: the join must use datetime
            {"symbol": "BTCUSDT", "timestamp": 1, "datetime": T + M15, "interval_minutes": 15,
             "open": 1, "high": 1, "low": 1, "close": 105.0, "volume": 1, "turnover": 1,
             "exchange": "x"},
            {"symbol": "BTCUSDT", "timestamp": 2, "datetime": T + M15, "interval_minutes": 5,
             "open": 1, "high": 1, "low": 1, "close": 500.0, "volume": 1, "turnover": 1,
             "exchange": "x"},
        ])  # fmt: skip
    insert_predictions(engine, [prediction_row("BTCUSDT", T, close_price=100.0)])
    insert_candles(engine, [candle_row("BTCUSDT", T + M15, 999.0)])  # must not be read

    report = backfill_actuals(engine, source="raw_market_data", horizons=["15m"])

    assert _counts(report) == {"15m": (1, 0, 0)}
    assert _outcomes(engine)[0]["actual_return_15m"] == pytest.approx(0.05)


def test_second_run_while_locked_exits_zero_and_writes_nothing(engine: Engine, db_url: str) -> None:
    insert_predictions(engine, [prediction_row("BTCUSDT", T, close_price=100.0)])
    insert_candles(engine, _candles("BTCUSDT", {M15: 101.0}))
    holder = create_engine(db_url)
    try:
        with holder.connect() as conn, backfill_lock(holder, conn) as acquired:
            assert acquired
            code, out, err = run_cli("--db", db_url, "backfill-actuals")
            assert (code, err) == (0, "")
            assert "another backfill is running" in out
            assert backfill_actuals(engine).status == "locked"
            assert _outcomes(engine)[0]["actual_return_15m"] is None
    finally:
        holder.dispose()
    assert backfill_actuals(engine).status == "ok"
    assert _outcomes(engine)[0]["actual_return_15m"] == pytest.approx(0.01)


def test_two_concurrent_runs_fill_each_row_once(engine: Engine) -> None:
    rows = [prediction_row("BTCUSDT", T + M15 * i, close_price=100.0) for i in range(40)]
    insert_predictions(engine, rows)
    insert_candles(engine, [candle_row("BTCUSDT", T + M15 * i, 100.0 + i) for i in range(1, 41)])
    barrier = threading.Barrier(2)
    reports: list[BackfillReport] = []

    def run() -> None:
        barrier.wait()
        reports.append(backfill_actuals(engine, horizons=["15m"], chunk_rows=5))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(r.status for r in reports) in (["locked", "ok"], ["ok", "ok"])
    assert sum(_counts(r)["15m"][0] for r in reports) == 40  # no row filled twice
    stored = _outcomes(engine)
    assert [row["actual_return_15m"] for row in stored] == [
        pytest.approx((101.0 + i) / 100 - 1) for i in range(40)
    ]


def test_cli_json_output_and_summary_line(db_url: str, engine: Engine) -> None:
    insert_predictions(engine, [prediction_row("BTCUSDT", T, close_price=100.0)])
    insert_candles(engine, _candles("BTCUSDT", {M15: 101.0}))

    code, out, err = run_cli("--db", db_url, "backfill-actuals", "--dry-run", "--format", "json")
    assert (code, err) == (0, "")
    payload = json.loads(out)
    assert payload["status"] == "dry-run"
    assert payload["rows_updated"] == 0
    assert payload["horizons"][0] == {"horizon": "15m", "filled": 1, "pending": 0, "missing": 0}
    assert [h["horizon"] for h in payload["horizons"]] == ["15m", "1h", "4h", "12h"]

    code, out, err = run_cli("--db", db_url, "backfill-actuals", "--horizons", "15m,1h",
                             "--thresholds", "15m=0.02")  # fmt: skip
    assert (code, err) == (0, "")
    assert len(out.strip().splitlines()) == 1  # cron: one summary line
    assert "15m filled=1 pending=0 missing=0; 1h filled=0 pending=0 missing=1" in out
    assert _outcomes(engine)[0]["actual_direction_15m"] == "NEUTRAL"  # 1 % < 2 %


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--horizons", "15m,2h"], "unknown horizon '2h'"),
        (["--thresholds", "15m:0.1"], "bad threshold"),
        (["--thresholds", "1h=abc"], "bad threshold value"),
        (["--since", "yesterday"], "bad date/time"),
        (["--interval", "7m"], "unknown interval"),
        (["--source", "nope"], "unknown source"),
        (["--source", "raw_market_data"], "does not exist"),
    ],
)
def test_cli_bad_options_exit_2(db_url: str, args: list[str], message: str) -> None:
    code, out, err = run_cli("--db", db_url, "backfill-actuals", *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out


def test_parse_thresholds_keeps_defaults_for_unnamed_horizons() -> None:
    assert parse_thresholds("1h=0.005") == {"15m": 0.0015, "1h": 0.005, "4h": 0.007, "12h": 0.01}
    with pytest.raises(InputError):
        parse_thresholds("1h=-1")


def test_without_since_old_gaps_outside_the_retry_window_wait_for_since(engine: Engine) -> None:
    old = T - timedelta(days=8)
    insert_predictions(engine, [prediction_row("BTCUSDT", old, close_price=100.0),
                                prediction_row("BTCUSDT", T, close_price=100.0)])  # fmt: skip
    insert_candles(engine, _candles("BTCUSDT", {M15: 101.0, H1: 101.0, H12: 101.0}, base=old))
    insert_candles(engine, _candles("BTCUSDT", {M15: 102.0, H1: 102.0, H4: 102.0, H12: 102.0}))

    first = backfill_actuals(engine)  # nothing complete yet: looks at everything
    assert first.scanned_since is None
    assert _counts(first)["4h"] == (1, 0, 1)

    insert_candles(engine, [candle_row("BTCUSDT", old + H4, 104.0)])  # the gap is filled late
    second = backfill_actuals(engine, retry_window=timedelta(days=2))
    assert second.scanned_since == T - timedelta(days=2)  # newest complete row minus window
    assert second.candidates == 0
    assert second.outside_window == 1  # counted, not silently dropped
    assert _outcomes(engine)[0]["actual_return_4h"] is None

    third = backfill_actuals(engine, since=old)
    assert _counts(third)["4h"] == (1, 0, 0)
    assert _outcomes(engine)[0]["actual_return_4h"] == pytest.approx(0.04)


# ---------------------------------------------------------------- review follow-up


def test_logged_without_market_data_takes_the_last_closed_candle(engine: Engine) -> None:
    logged = T + timedelta(minutes=3, seconds=27, microseconds=123456)
    rows = [
        prediction_row("AAA", logged, close_price=None),  # reference T - 15m
        prediction_row("BBB", T + 2 * M15, close_price=None),  # aligned: reference as is
        prediction_row("CCC", logged, close_price=0.0),  # not positive: as AAA
        prediction_row("DDD", T + timedelta(minutes=34), close_price=None),  # 1h candles
    ]
    insert_predictions(engine, rows)
    candles = [candle_row(symbol, T - M15, 200.0) for symbol in ("AAA", "CCC")]
    candles += [candle_row(symbol, T, 210.0) for symbol in ("AAA", "CCC")]  # t + 15m = T
    candles += [candle_row("AAA", T - M15 + H1, 190.0), candle_row("BBB", T + 2 * M15, 50.0),
                candle_row("BBB", T + 3 * M15, 55.0)]  # fmt: skip
    # DDD on 1h candles: 12:34 -> floor 12:00 -> the 11:00 candle (closed at 12:00)
    candles += [candle_row("DDD", T - H1, 80.0, interval_minutes=60),
                candle_row("DDD", T, 84.0, interval_minutes=60)]  # fmt: skip
    insert_candles(engine, candles)

    report = backfill_actuals(engine, horizons=["15m", "1h"], symbol=None)
    hourly = backfill_actuals(engine, horizons=["1h"], interval="1h", symbol="DDD")

    by_symbol = {row["symbol"]: row for row in _outcomes(engine)}
    assert by_symbol["AAA"]["actual_return_15m"] == pytest.approx(0.05)  # 210 / 200 - 1
    assert by_symbol["AAA"]["actual_return_1h"] == pytest.approx(-0.05)  # 190 / 200 - 1
    assert by_symbol["CCC"]["actual_return_15m"] == pytest.approx(0.05)
    assert by_symbol["BBB"]["actual_return_15m"] == pytest.approx(0.1)  # 55 / 50 - 1
    assert by_symbol["DDD"]["actual_return_1h"] == pytest.approx(0.05)  # 84 / 80 - 1
    assert _counts(report) == {"15m": (3, 0, 1), "1h": (1, 0, 3)}
    assert _counts(hourly) == {"1h": (1, 0, 0)}


def test_logged_without_market_data_is_due_from_its_reference_time(engine: Engine) -> None:
    now = datetime(2026, 3, 2, 12, 10, tzinfo=UTC)
    logged = datetime(2026, 3, 2, 11, 44, 59, 500000, tzinfo=UTC)  # reference 11:15
    insert_predictions(engine, [prediction_row("AAA", logged, close_price=None)])
    insert_candles(
        engine,
        [candle_row("AAA", logged.replace(minute=15, second=0, microsecond=0), 100.0),
         candle_row("AAA", datetime(2026, 3, 2, 11, 30, tzinfo=UTC), 101.0)],
    )  # fmt: skip

    # the 11:30 candle closed at 11:45 <= now although logging time + 30 min is later
    report = backfill_actuals(engine, horizons=["15m", "1h"], now=now)

    assert _counts(report) == {"15m": (1, 0, 0), "1h": (0, 1, 0)}
    assert _outcomes(engine)[0]["actual_return_15m"] == pytest.approx(0.01)


def test_a_late_symbol_is_retried_in_its_own_window(engine: Engine) -> None:
    early = T - timedelta(days=5)
    insert_predictions(engine, [prediction_row("ETHUSDT", T, close_price=100.0),
                                prediction_row("BTCUSDT", early, close_price=100.0)])  # fmt: skip
    insert_candles(engine, _candles("ETHUSDT", {M15: 101.0, H1: 101.0, H4: 101.0, H12: 101.0}))

    first = backfill_actuals(engine)
    assert _counts(first)["15m"] == (1, 0, 1)  # BTCUSDT has no candles yet

    # BTCUSDT's candles are imported late; ETHUSDT's newest complete row is T, 5 days later
    insert_candles(engine, _candles("BTCUSDT", {M15: 99.0, H1: 99.0, H4: 99.0, H12: 99.0},
                                    base=early))  # fmt: skip
    second = backfill_actuals(engine)

    assert _counts(second) == dict.fromkeys(("15m", "1h", "4h", "12h"), (1, 0, 0))
    assert second.outside_window == 0
    btc = next(row for row in _outcomes(engine) if row["symbol"] == "BTCUSDT")
    assert btc["actual_return_12h"] == pytest.approx(-0.01)
    assert btc["actuals_filled_at"] is not None


def test_rows_before_the_window_are_counted_not_dropped(db_url: str, engine: Engine) -> None:
    old = T - timedelta(days=8)
    insert_predictions(engine, [prediction_row("BTCUSDT", old, close_price=100.0),
                                prediction_row("BTCUSDT", T, close_price=100.0),
                                prediction_row("ETHUSDT", old, close_price=100.0)])  # fmt: skip
    insert_candles(engine, _candles("BTCUSDT", {M15: 102.0, H1: 102.0, H4: 102.0, H12: 102.0}))
    insert_candles(engine, _candles("ETHUSDT", {M15: 102.0, H1: 102.0, H4: 102.0, H12: 102.0},
                                    base=old))  # fmt: skip
    backfill_actuals(engine)  # completes BTCUSDT at T and ETHUSDT at old

    report = backfill_actuals(engine)

    # BTCUSDT's old row has no candles and lies 8 days before its newest complete one
    assert report.outside_window == 1
    assert report.candidates == 0
    code, out, err = run_cli("--db", db_url, "backfill-actuals", "--format", "json")
    assert (code, err) == (0, "")
    assert json.loads(out)["outside_window"] == 1
    code, out, err = run_cli("--db", db_url, "backfill-actuals")
    assert "outside_window=1" in out
    assert backfill_actuals(engine, since=old).outside_window == 0


def test_a_return_at_the_threshold_up_to_rounding_is_neutral(engine: Engine) -> None:
    # 100.15 / 100 - 1 = 0.0015000000000000568 and 99.85 / 100 - 1 = -0.0015000000000000568
    rows = [prediction_row(symbol, T, close_price=100.0) for symbol in ("AAA", "BBB", "CCC")]
    insert_predictions(engine, rows)
    insert_candles(engine, [candle_row("AAA", T + M15, 100.15), candle_row("BBB", T + M15, 99.85),
                            candle_row("CCC", T + M15, 100.16)])  # fmt: skip

    backfill_actuals(engine, horizons=["15m"])  # default 15m threshold 0.15 %

    by_symbol = {row["symbol"]: row for row in _outcomes(engine)}
    assert by_symbol["AAA"]["actual_return_15m"] > 0.0015  # the float is just above
    assert by_symbol["AAA"]["actual_direction_15m"] == "NEUTRAL"
    assert by_symbol["BBB"]["actual_direction_15m"] == "NEUTRAL"
    assert by_symbol["CCC"]["actual_direction_15m"] == "LONG"


def test_nan_prices_are_never_an_outcome(engine: Engine) -> None:
    nan = float("nan")
    # SQLite stores NaN as NULL, which market_candles refuses: there the bad close is infinity
    bad_close = float("inf") if engine.dialect.name == "sqlite" else nan
    insert_predictions(engine, [prediction_row("AAA", T, close_price=100.0),
                                prediction_row("BBB", T, close_price=nan)])  # fmt: skip
    insert_candles(engine, [candle_row("AAA", T + M15, bad_close),
                            candle_row("AAA", T + H1, 101.0), candle_row("BBB", T, 50.0),
                            candle_row("BBB", T + M15, 51.0)])  # fmt: skip

    report = backfill_actuals(engine, horizons=["15m", "1h"])

    by_symbol = {row["symbol"]: row for row in _outcomes(engine)}
    assert by_symbol["AAA"]["actual_return_15m"] is None  # NaN exit close: missing
    assert by_symbol["AAA"]["actual_direction_15m"] is None
    assert by_symbol["AAA"]["accuracy_15m"] is None
    assert by_symbol["AAA"]["actual_return_1h"] == pytest.approx(0.01)
    assert by_symbol["BBB"]["actual_return_15m"] == pytest.approx(0.02)  # entry from the candle
    assert _counts(report) == {"15m": (1, 0, 1), "1h": (1, 0, 1)}


def _raw_market_data(engine: Engine, rows: list[tuple[str, str, float, str]]) -> None:
    """A raw_market_data table whose datetime is text on SQLite (as the bot wrote it)."""
    time_type = "TEXT" if engine.dialect.name == "sqlite" else "TIMESTAMPTZ"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE raw_market_data (symbol VARCHAR(20), timestamp BIGINT, "
            f"datetime {time_type}, interval_minutes INTEGER, open DOUBLE PRECISION, "
            "high DOUBLE PRECISION, low DOUBLE PRECISION, close DOUBLE PRECISION, "
            "volume DOUBLE PRECISION, turnover DOUBLE PRECISION, exchange VARCHAR(20))"
        )
        conn.execute(
            sa.text(
                "INSERT INTO raw_market_data VALUES (:symbol, 0, :datetime, 15, 1, 1, 1, "
                ":close, 1, 1, :exchange)"
            ),
            [{"symbol": s, "datetime": d, "close": c, "exchange": e} for s, d, c, e in rows],
        )


@pytest.mark.parametrize(
    "time_format",
    ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S+00:00",
     "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%d %H:%M:%S.%f"],
)  # fmt: skip
def test_raw_market_data_in_other_text_formats(engine: Engine, time_format: str) -> None:
    insert_predictions(engine, [prediction_row("BTCUSDT", T, close_price=None)])
    _raw_market_data(engine, [
        ("BTCUSDT", T.strftime(time_format), 100.0, "x"),
        ("BTCUSDT", (T + M15).strftime(time_format), 103.0, "x"),
    ])  # fmt: skip

    report = backfill_actuals(engine, source="raw_market_data", horizons=["15m"])

    assert _counts(report) == {"15m": (1, 0, 0)}
    assert _outcomes(engine)[0]["actual_return_15m"] == pytest.approx(0.03)


def test_raw_market_data_duplicates_take_the_first_exchange(engine: Engine) -> None:
    when = (T + M15).strftime("%Y-%m-%d %H:%M:%S")
    insert_predictions(engine, [prediction_row("BTCUSDT", T, close_price=100.0)])
    _raw_market_data(engine, [("BTCUSDT", when, 107.0, "okx"), ("BTCUSDT", when, 104.0, "bybit"),
                              ("BTCUSDT", when, 102.0, "binance")])  # fmt: skip

    report = backfill_actuals(engine, source="raw_market_data", horizons=["15m"])

    assert _counts(report) == {"15m": (1, 0, 0)}
    assert _outcomes(engine)[0]["actual_return_15m"] == pytest.approx(0.02)  # binance


def test_newest_completed_found_behind_many_incomplete_rows(engine: Engine) -> None:
    # more incomplete rows after the newest complete one than the quick look covers (256)
    complete = T - timedelta(days=10)
    rows = [prediction_row("BTCUSDT", complete - timedelta(days=10), close_price=100.0),
            prediction_row("BTCUSDT", complete, close_price=100.0)]  # fmt: skip
    rows += [
        prediction_row("BTCUSDT", complete + M15 * i, close_price=100.0) for i in range(1, 301)
    ]
    insert_predictions(engine, rows)
    insert_candles(engine, _candles("BTCUSDT", {M15: 101.0, H1: 101.0, H4: 101.0, H12: 101.0},
                                    base=complete))  # fmt: skip
    backfill_actuals(engine)

    report = backfill_actuals(engine, retry_window=timedelta(days=2))

    assert report.scanned_since == complete - timedelta(days=2)
    assert report.candidates == 300
    assert report.outside_window == 1  # the row 20 days before T


# ---------------------------------------------------------------- database sources


def test_backfill_accepts_a_url_a_path_or_an_engine(
    db_url: str, engine: Engine, backend: str
) -> None:
    insert_predictions(engine, [prediction_row("BTCUSDT", T + M15 * i, close_price=100.0)
                                for i in range(3)])  # fmt: skip
    insert_candles(engine, [candle_row("BTCUSDT", T + M15 * i, 101.0) for i in range(1, 4)])
    sources: list[Any] = [db_url]
    if backend == "sqlite":
        sources.append(Path(engine.url.database or ""))
    for source in sources:
        report = backfill_actuals(source, horizons=["15m"], dry_run=True)
        assert _counts(report) == {"15m": (3, 0, 0)}
    by_url = backfill_actuals(db_url, horizons=["15m"], limit=1)
    by_engine = backfill_actuals(engine, horizons=["15m"])
    assert (by_url.rows_updated, by_engine.rows_updated) == (1, 2)
    assert engine.pool.checkedout() == 0  # the engine passed in is still usable, not disposed
    assert all(row["actual_return_15m"] == pytest.approx(0.01) for row in _outcomes(engine))


def test_backfill_refuses_an_unmigrated_database(empty_db_url: str) -> None:
    with pytest.raises(SchemaNotReady):
        backfill_actuals(empty_db_url)


@pytest.mark.sqlite_only
def test_library_messages_name_parameters_not_options(engine: Engine) -> None:
    with pytest.raises(InputError, match=r"^limit must be a positive number"):
        backfill_actuals(engine, limit=0)
    with pytest.raises(InputError, match="unknown horizon '2h'"):
        backfill_actuals(engine, horizons=["15m", "2h"])
    with pytest.raises(InputError, match=r"^chunk_rows must be a positive number"):
        backfill_actuals(engine, chunk_rows=0)


@pytest.mark.parametrize(
    ("thresholds", "reason"),
    [
        ({"1h": -0.01}, "threshold for 1h must be a finite number >= 0"),
        ({"1h": float("nan")}, "threshold for 1h must be a finite number >= 0"),
        ({"2h": 0.01}, "unknown horizon '2h'"),
        ({"1h": "0.01"}, "threshold for 1h must be a number"),
    ],
)
def test_the_library_checks_thresholds_as_the_cli_does(
    engine: Engine, thresholds: dict[str, object], reason: str
) -> None:
    with pytest.raises(InputError, match=reason):
        backfill_actuals(engine, thresholds=thresholds)  # type: ignore[arg-type]


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--limit", "99999999999999999999"), "Error: --limit must be between 1 and 1000000000000"),
        (("--limit", "0"), "Error: --limit must be between 1 and 1000000000000"),
        (
            ("--since", "2026-12-01", "--until", "2026-11-01"),
            "Error: --since 2026-12-01 is after --until 2026-11-01: no prediction is in between",
        ),
    ],
)
def test_cli_out_of_range_options_name_the_problem(
    db_url: str, args: tuple[str, ...], message: str
) -> None:
    code, out, err = run_cli("--db", db_url, "backfill-actuals", *args)
    assert (code, out) == (2, "")
    assert err.strip() == message


@pytest.mark.sqlite_only
def test_help_offers_only_the_formats_the_command_prints(db_url: str) -> None:
    code, out, _err = run_cli("backfill-actuals", "--help")
    assert code == 0
    assert "table|json" in out and "csv" not in out
    code, _out, err = run_cli("--db", db_url, "backfill-actuals", "--format", "csv")
    assert code == 2 and "'csv' is not one of 'table', 'json'" in err


@pytest.mark.sqlite_only
def test_library_refuses_since_after_until_and_a_huge_limit(engine: Engine) -> None:
    since, until = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(InputError, match=r"^since \(2026-12-01T00:00:00\+00:00\) is after until"):
        backfill_actuals(engine, since=since, until=until)
    with pytest.raises(InputError, match=r"^limit must be at most 1000000000000 predictions"):
        backfill_actuals(engine, limit=99999999999999999999)
