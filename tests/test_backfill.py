"""``backfill-actuals``: hand-computed outcomes per horizon, gaps, entry price, idempotency,
locking, dry run, the raw_market_data source and the CLI output."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlpred_cli import db
from mlpred_cli.backfill import (
    BackfillReport,
    backfill_actuals,
    backfill_lock,
    parse_moment,
    parse_thresholds,
)
from mlpred_cli.errors import InputError
from mlpred_cli.models import predictions_table
from mlpred_cli.types import UTCDateTime
from tests.cli_helpers import run_cli
from tests.factories import candle_row, insert_candles, insert_predictions, prediction_row

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
    holder = db.create_engine(db_url)
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
    assert _outcomes(engine)[0]["actual_return_4h"] is None

    third = backfill_actuals(engine, since=old)
    assert _counts(third)["4h"] == (1, 0, 0)
    assert _outcomes(engine)[0]["actual_return_4h"] == pytest.approx(0.04)
