"""Selections and accuracy aggregations, on both databases, against hand-computed values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlpred_cli.analysis.prediction_views import (
    accuracy_table,
    frame_records,
    high_confidence,
    load_predictions,
    recent_predictions,
)
from mlpred_cli.config import check_horizons
from mlpred_cli.errors import InputError
from mlpred_cli.store.prediction_queries import (
    PredictionFilter,
    accuracy_groups,
    make_filter,
)
from tests.factories import insert_predictions as insert_rows
from tests.factories import prediction_row

pytestmark = pytest.mark.both_layouts

NOW = datetime.now(UTC)


def insert_predictions(engine: Engine, rows: list[dict[str, object]]) -> None:
    """Insert rows that may name different columns (missing ones are NULL)."""
    names = {name for row in rows for name in row}
    insert_rows(engine, [{name: row.get(name) for name in names} for row in rows])


def _outcome(direction: str, actual: str) -> dict[str, object]:
    return {
        "direction_15m": direction,
        "actual_direction_15m": actual,
        "accuracy_15m": direction == actual,
    }


# ---------------------------------------------------------------- option validation


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"days": -3}, r"^days must be positive"),
        ({"days": 0}, r"^days must be positive"),
        ({"days": 2, "since": "2026-01-01"}, "not both"),
        ({"since": "2026-02-01", "until": "2026-01-01"}, r"^since must be before until"),
        ({"since": "yesterday"}, "not an ISO 8601 time"),
        ({"hours": 1, "days": 1}, "not both"),
    ],
)
def test_make_filter_rejects_bad_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        make_filter(**options)  # type: ignore[arg-type]


def test_make_filter_takes_naive_times_as_utc() -> None:
    selection = make_filter(since="2026-03-01T12:00", until="2026-03-02T00:00+02:00")
    assert selection.since == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert selection.until == datetime(2026, 3, 1, 22, tzinfo=UTC)
    days = make_filter(symbol="BTCUSDT", days=30, now=NOW)
    assert days.since == NOW - timedelta(days=30)
    assert days.describe() == "for BTCUSDT in the last 30 days"


def test_unknown_horizon_and_grouping_are_input_errors() -> None:
    with pytest.raises(InputError, match="unknown horizon '2h'"):
        check_horizons(["2h"])
    with pytest.raises(InputError, match="cannot group by"):
        accuracy_groups(PredictionFilter(), "weekday")


# ---------------------------------------------------------------- filters really filter


def test_symbol_and_days_filter_rows(engine: Engine) -> None:
    rows = [
        prediction_row("BTCUSDT", NOW - timedelta(days=1), model_version="v1"),
        prediction_row("BTCUSDT", NOW - timedelta(days=10), model_version="v2"),
        prediction_row("BTCUSDT", NOW - timedelta(days=40), model_version="v1"),
        prediction_row("ETHUSDT", NOW - timedelta(days=1), model_version="v1"),
    ]
    insert_predictions(engine, rows)
    ids = [str(row["prediction_id"]) for row in rows]

    frame = load_predictions(engine, symbol="BTCUSDT", days=30)
    assert frame["prediction_id"].tolist() == [ids[1], ids[0]]  # oldest first
    assert str(frame["datetime"].dt.tz) == "UTC"
    assert load_predictions(engine, days=5)["prediction_id"].tolist() == [ids[0], ids[3]]
    assert load_predictions(engine, model_version="v2")["prediction_id"].tolist() == [ids[1]]
    window = load_predictions(
        engine,
        since=(NOW - timedelta(days=11)).replace(tzinfo=None).isoformat(),
        until=NOW - timedelta(days=2),
        columns=["prediction_id", "symbol"],
    )
    assert window.columns.tolist() == ["prediction_id", "symbol"]
    assert window["prediction_id"].tolist() == [ids[1]]


# ---------------------------------------------------------------- accuracy


def _accuracy_rows() -> list[dict[str, object]]:
    at = NOW - timedelta(hours=2)
    return [
        prediction_row("BTCUSDT", at, signal_confidence=0.9, **_outcome("LONG", "LONG")),
        prediction_row("BTCUSDT", at, signal_confidence=0.8, **_outcome("SHORT", "SHORT")),
        prediction_row("BTCUSDT", at, signal_confidence=0.7, **_outcome("LONG", "SHORT")),
        prediction_row("BTCUSDT", at, signal_confidence=0.2),  # no outcome yet
        prediction_row("ETHUSDT", at, signal_confidence=0.6, **_outcome("LONG", "NEUTRAL")),
    ]


def test_accuracy_by_symbol_hand_computed(engine: Engine) -> None:
    insert_predictions(engine, _accuracy_rows())
    table = accuracy_table(engine, by="symbol")
    records = table.to_dict("records")
    assert [r["symbol"] for r in records] == ["BTCUSDT", "ETHUSDT"]
    btc, eth = records
    assert (btc["total"], btc["n_outcomes"], btc["n_15m"]) == (4, 3, 3)
    assert btc["avg_confidence"] == pytest.approx((0.9 + 0.8 + 0.7 + 0.2) / 4)
    assert btc["accuracy_15m"] == pytest.approx(2 / 3)
    # Wilson 2/3 at 95 %: centre 0.573083, half width 0.365424
    assert btc["accuracy_15m_low"] == pytest.approx(0.207659, abs=1e-5)
    assert btc["accuracy_15m_high"] == pytest.approx(0.938507, abs=1e-5)
    assert btc["n_1h"] == 0
    assert btc["accuracy_1h"] is None
    assert (eth["total"], eth["n_15m"], eth["accuracy_15m"]) == (1, 1, 0.0)


def test_accuracy_groupings_and_min_count(engine: Engine) -> None:
    rows = _accuracy_rows()
    rows[0]["datetime"] = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
    rows[1]["datetime"] = datetime(2026, 3, 2, 0, 1, tzinfo=UTC)
    rows[2]["datetime"] = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    rows[3]["model_version"] = "v2"
    insert_predictions(engine, rows)

    by_version = accuracy_table(engine, by="model_version", horizons=["15m"], min_count=2)
    assert by_version.columns.tolist() == [
        "model_version", "total", "n_outcomes", "avg_confidence",
        "n_15m", "accuracy_15m", "accuracy_15m_low", "accuracy_15m_high",
        "n_15m_effective", "accuracy_15m_overlap_low", "accuracy_15m_overlap_high",
    ]  # fmt: skip
    assert by_version["model_version"].tolist() == ["v1"]
    assert by_version["total"].tolist() == [4]

    by_day = accuracy_table(
        engine, by="day", horizons=["15m"], since="2026-03-01", until="2026-03-03"
    )
    assert by_day.set_index("day")["total"].to_dict() == {"2026-03-02": 2, "2026-03-01": 1}
    assert by_day.set_index("day")["accuracy_15m"].to_dict() == {"2026-03-02": 0.5, "2026-03-01": 1}

    by_signal = accuracy_table(engine, by="signal_type")
    assert by_signal["signal_type"].tolist() == ["LONG"]


def test_accuracy_matches_the_design_query(engine: Engine, backend: str) -> None:
    insert_predictions(engine, _accuracy_rows())
    design_sql = (
        "SELECT symbol, COUNT(*) as total, "
        "AVG(CASE WHEN accuracy_15m THEN 1 ELSE 0 END) as accuracy_15m "
        "FROM ml_predictions WHERE actual_direction_15m IS NOT NULL GROUP BY symbol "
        "ORDER BY total DESC"
    )
    with engine.connect() as conn:
        design = {row.symbol: row for row in conn.execute(sa.text(design_sql))}
    ours = accuracy_table(engine, horizons=["15m"]).set_index("symbol")
    for symbol, row in design.items():
        assert ours.loc[symbol, "n_15m"] == row.total
        assert ours.loc[symbol, "accuracy_15m"] == pytest.approx(float(row.accuracy_15m))


# ---------------------------------------------------------------- latest rows


def test_high_confidence_and_recent(engine: Engine) -> None:
    rows = [
        prediction_row("BTCUSDT", NOW - timedelta(minutes=10), signal_confidence=0.95),
        prediction_row("BTCUSDT", NOW - timedelta(minutes=20), signal_confidence=0.8),
        prediction_row(
            "ETHUSDT",
            NOW - timedelta(minutes=30),
            signal_confidence=0.9,
            signal_type="NEUTRAL",
        ),
        prediction_row(
            "ETHUSDT",
            NOW - timedelta(hours=3),
            signal_confidence=0.85,
            signal_type="SHORT",
            **_outcome("SHORT", "SHORT"),
        ),
    ]
    insert_predictions(engine, rows)
    ids = [str(row["prediction_id"]) for row in rows]

    high = high_confidence(engine)  # > 0.8 strictly, NEUTRAL left out, newest first
    assert high["prediction_id"].tolist() == [ids[0], ids[3]]
    records = frame_records(high)
    assert [r["actual_direction_15m"] for r in records] == [None, "SHORT"]
    assert [r["accuracy_15m"] for r in records] == [None, True]
    with_neutral = high_confidence(engine, include_neutral=True, limit=2)
    assert with_neutral["prediction_id"].tolist() == [ids[0], ids[2]]
    assert high_confidence(engine, symbol="ETHUSDT", days=1)["prediction_id"].tolist() == [ids[3]]

    assert recent_predictions(engine)["prediction_id"].tolist() == ids[:3]
    assert recent_predictions(engine, hours=4, limit=10)["prediction_id"].tolist() == ids
    assert recent_predictions(engine, symbol="ETHUSDT")["prediction_id"].tolist() == [ids[2]]
    with pytest.raises(InputError, match=r"^limit must be at least 1"):
        recent_predictions(engine, limit=0)
    with pytest.raises(InputError, match=r"^min_confidence must be within"):
        high_confidence(engine, min_confidence=1.5)


# ---------------------------------------------------------------- the library speaks Python


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: load_predictions(days=-1), "days must be positive, got -1"),
        (lambda: make_filter(hours=1, days=1), "give days or hours, not both"),
        (lambda: load_predictions(days=1, until="2026-01-01"), "give days/hours or since/until"),
        (lambda: load_predictions(since="yesterday"), "since: 'yesterday' is not an ISO 8601"),
        (lambda: accuracy_table(min_count=-1), "min_count must not be negative, got -1"),
        (lambda: recent_predictions(limit=0), "limit must be at least 1, got 0"),
        (lambda: high_confidence(min_confidence=2), "min_confidence must be within [0, 1], got 2"),
    ],
)
def test_library_errors_name_parameters_not_flags(call: Any, message: str) -> None:
    with pytest.raises(InputError) as raised:
        call()
    assert str(raised.value).startswith(message)
    assert "--" not in str(raised.value)


def test_every_source_kind_reads_the_same_rows(db_url: str, engine: Engine) -> None:
    rows = [prediction_row("BTCUSDT", NOW - timedelta(hours=1)) for _ in range(3)]
    insert_predictions(engine, rows)
    ids = sorted(str(row["prediction_id"]) for row in rows)
    sources: list[object] = [db_url, engine, sa.engine.make_url(db_url)]
    if db_url.startswith("sqlite:///"):
        sources.append(Path(db_url.removeprefix("sqlite:///")))
    for source in sources:
        frame = load_predictions(source, columns=["prediction_id"])  # type: ignore[arg-type]
        assert sorted(frame["prediction_id"]) == ids, source
        assert accuracy_table(source)["total"].tolist() == [3]  # type: ignore[arg-type]
