"""``report_content``: the report's figures on a planted data set, on both databases, checked
against ``analyze`` (the shared keys) and against independent computations from raw rows."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from mlpred_cli.analysis.prediction_views import analyze
from mlpred_cli.config import CONFIDENCE_BIN_EDGES, HORIZON_DELTAS, HORIZONS
from mlpred_cli.errors import InputError
from mlpred_cli.outcomes.rollups import rebuild_rollups
from mlpred_cli.render.output import to_jsonable
from mlpred_cli.report.content import report_content
from tests.factories import insert_predictions
from tests.monitor_scenarios import Scenario, scenario_rows

pytestmark = pytest.mark.timeout(300)

#: The keys the report shares with ``mlpred analyze --format json``.
SHARED_KEYS = (
    "selection",
    "overview",
    "sources",
    "signals",
    "horizons",
    "confidence_bins",
    "calibration",
    "symbols",
    "input_health",
    "performance",
)

START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 24
NOW = START + timedelta(days=DAYS, minutes=5)
SINCE = START + timedelta(days=10, hours=6)  # mid-day edges: rollups plus raw rows
UNTIL = START + timedelta(days=DAYS, hours=-3)


def _plant(engine: Engine) -> None:
    first = Scenario(
        days=DAYS,
        symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"),
        accuracy=0.62,
        model_version="v1",
        start_at=START,
        seed=11,
    )
    second = Scenario(
        days=DAYS - 12,
        symbols=("BTCUSDT", "ETHUSDT"),
        accuracy=0.45,
        model_version="v2",
        start_at=START + timedelta(days=12),
        seed=12,
    )
    rows = scenario_rows(first) + scenario_rows(second)
    for index, row in enumerate(rows):
        if index % 5 == 0:  # some signals are meant for 4h: their economics use 4h outcomes
            row["signal_timeframe"] = "4h"
    keys = {key for row in rows for key in row}
    rows = [{key: row.get(key) for key in keys} for row in rows]
    for start in range(0, len(rows), 5_000):
        insert_predictions(engine, rows[start : start + 5_000])
    assert rebuild_rollups(engine).status == "done"


@pytest.fixture
def planted(db_url: str) -> Iterator[Engine]:
    engine = create_engine(db_url)
    _plant(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def document(planted: Engine) -> dict[str, Any]:
    return report_content(planted, since=SINCE, until=UNTIL, now=NOW)


def _raw(engine: Engine, since: datetime = SINCE, until: datetime = UNTIL) -> pd.DataFrame:
    with engine.connect() as conn:
        frame = pd.read_sql(
            text("SELECT * FROM ml_predictions WHERE datetime >= :since AND datetime < :until"),
            conn,
            params={"since": since, "until": until},
        )
    frame["datetime"] = pd.to_datetime(frame["datetime"], utc=True)
    return frame


def _close(a: float | None, b: float | None, tolerance: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)


def test_the_shared_sections_equal_analyze(planted: Engine, document: dict[str, Any]) -> None:
    expected = to_jsonable(analyze(planted, since=SINCE, until=UNTIL).to_dict())
    for key in SHARED_KEYS:
        assert document[key] == expected[key], key
    assert document["empty"] is False
    assert document["overview"]["model_versions"] == ["v1", "v2"]


def test_daily_series_equal_a_raw_computation(planted: Engine, document: dict[str, Any]) -> None:
    raw = _raw(planted)
    raw["day"] = raw["datetime"].dt.strftime("%Y-%m-%d")
    daily = {(row["horizon"], row["day"]): row for row in document["daily"]}
    for horizon in ("15m", "4h"):
        scored = raw[raw[f"actual_direction_{horizon}"].notna()]
        for day, group in scored.groupby("day"):
            row = daily[(horizon, day)]
            correct = (group[f"direction_{horizon}"] == group[f"actual_direction_{horizon}"]).sum()
            assert row["n"] == len(group)
            assert _close(row["accuracy"], correct / len(group))
            calls = group[group[f"direction_{horizon}"] != "NEUTRAL"]
            hits = (calls[f"direction_{horizon}"] == calls[f"actual_direction_{horizon}"]).sum()
            assert _close(row["hit_rate"], hits / len(calls))
            ics = [
                stats.spearmanr(
                    part[f"predicted_return_{horizon}"], part[f"actual_return_{horizon}"]
                )[0]
                for _, part in group.groupby(["symbol", "model_version"])
                if len(part) >= 3
            ]
            assert row["ic_days"] == len(ics)
            assert _close(row["ic_mean"], float(np.mean(ics)), 1e-7)
    months = {(row["horizon"], row["month"]) for row in document["monthly_ic"]}
    assert months == {(h, "2026-10") for h in HORIZONS}


def test_ic_distribution_and_reliability_count_every_row(document: dict[str, Any]) -> None:
    for entry in document["ic_distribution"]:
        days = sum(r["ic_days"] for r in document["daily"] if r["horizon"] == entry["horizon"])
        assert entry["n"] == days
        assert sum(b["count"] for b in entry["bins"]) == days
    calibration = {row["horizon"]: row for row in document["calibration"]}
    for entry in document["reliability"]:
        bins = entry["bins"]
        total = sum(b["n"] for b in bins)
        assert total == calibration[entry["horizon"]]["n"]
        correct = sum(b["n"] * b["accuracy"] for b in bins if b["n"])
        assert _close(correct / total, calibration[entry["horizon"]]["accuracy"])
        for item in bins:
            if item["n"]:
                assert item["low"] <= item["avg_confidence"] <= item["high"]


def test_quintiles_and_signal_returns_equal_a_raw_computation(
    planted: Engine, document: dict[str, Any]
) -> None:
    raw = _raw(planted)
    entry = next(q for q in document["return_quintiles"] if q["horizon"] == "1h")
    pairs = raw[["datetime", "id", "predicted_return_1h", "actual_return_1h"]].dropna()
    pairs = pairs.sort_values(["datetime", "id"])
    buckets = pd.qcut(pairs["predicted_return_1h"].rank(method="first"), 5, labels=False)
    means = pairs.groupby(buckets)["actual_return_1h"].mean().to_numpy()
    assert entry["n"] == len(pairs)
    assert [q["n"] for q in entry["quintiles"]] == pairs.groupby(buckets).size().tolist()
    assert np.allclose([q["mean_actual"] for q in entry["quintiles"]], means, atol=1e-12)
    assert _close(entry["spread"], means[-1] - means[0])
    assert entry["spread"] > 0  # planted: predicted returns carry half the actual return

    calls = raw[raw["signal_type"].isin(["LONG", "SHORT"])].copy()
    primary = calls["signal_timeframe"]
    calls["actual"] = [
        row[f"actual_return_{h}"] for h, (_, row) in zip(primary, calls.iterrows(), strict=True)
    ]
    calls["actual_direction"] = [
        row[f"actual_direction_{h}"] for h, (_, row) in zip(primary, calls.iterrows(), strict=True)
    ]
    calls = calls[calls["actual"].notna()]
    calls["signed"] = np.where(calls["signal_type"] == "LONG", 1.0, -1.0) * calls["actual"]
    economics = document["signal_economics"]
    assert economics["sampled"] is False
    for item in economics["signals"]:
        mine = calls[calls["signal_type"] == item["signal_type"]]
        assert item["n"] == len(mine)
        hit = (mine["actual_direction"] == item["signal_type"]).mean()
        assert _close(item["hit_rate"], hit)
        assert _close(item["mean_signed_return"], mine["signed"].mean())
    calls["day"] = calls["datetime"].dt.strftime("%Y-%m-%d")
    daily = calls.groupby("day")["signed"].mean()
    assert _close(economics["total_return"], float(daily.sum()), 1e-9)
    assert [c["day"] for c in economics["cumulative"]] == list(daily.index)

    edges = np.asarray(CONFIDENCE_BIN_EDGES)
    number = np.clip(
        np.searchsorted(edges, calls["signal_confidence"], side="right") - 1, 0, len(edges) - 2
    )
    for k, item in enumerate(document["return_by_confidence"]):
        members = calls[number == k]
        assert item["n"] == len(members)
        if len(members):
            assert _close(item["mean_return"], members["signed"].mean())


def test_status_compares_with_the_previous_period(
    planted: Engine, document: dict[str, Any]
) -> None:
    length = UNTIL - SINCE
    previous = analyze(planted, since=SINCE - length, until=SINCE).to_dict()
    before = {row["horizon"]: row for row in previous["horizons"]}
    window = document["report"]["previous_window"]
    assert window["since"] == (SINCE - length).isoformat()
    assert window["until"] == SINCE.isoformat()
    for row in document["status"]:
        earlier = before[row["horizon"]]
        assert row["previous_n"] == earlier["n"]
        assert _close(row["accuracy_change"], row["accuracy"] - earlier["accuracy"])
        assert _close(row["previous_daily_ic_mean"], earlier["daily_ic_mean"])
        expected = (
            "above"
            if row["accuracy_low"] > row["base_rate"]
            else "below"
            if row["accuracy_high"] < row["base_rate"]
            else "within"
        )
        assert row["verdict"] == expected


def test_maturity_counts_what_is_due_at_the_report_time(planted: Engine) -> None:
    now = START + timedelta(days=DAYS - 1)  # the window's last hours are not due yet
    document = report_content(planted, days=2, now=now, monitoring=False)
    raw = _raw(planted, now - timedelta(days=2), now)
    for row in document["maturity"]:
        cutoff = now - HORIZON_DELTAS[row["horizon"]] - timedelta(minutes=15)
        assert row["predictions"] == len(raw)
        assert row["due"] == int((raw["datetime"] <= cutoff).sum())
        assert 0 < row["matured_share"] < 1
    assert document["selection"]["description"] == "in the last 2 days"


def test_symbols_versions_and_monitoring(planted: Engine, document: dict[str, Any]) -> None:
    table = {row["symbol"]: row for row in document["symbol_table"]}
    assert set(table) == {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
    raw = _raw(planted)
    for symbol, row in table.items():
        mine = raw[raw["symbol"] == symbol]
        cell = next(c for c in row["horizons"] if c["horizon"] == "1h")
        scored = mine[mine["actual_direction_1h"].notna()]
        assert cell["n"] == len(scored)
        assert _close(
            cell["accuracy"], (scored["direction_1h"] == scored["actual_direction_1h"]).mean()
        )
        assert cell["accuracy_low"] < cell["accuracy"] < cell["accuracy_high"]
    # SOLUSDT only has the accurate v1: it ranks best; the others mix in the weaker v2
    assert table["SOLUSDT"]["best"] and not table["SOLUSDT"]["worst"]
    assert sum(row["worst"] for row in table.values()) == 1

    versions = document["model_versions"]
    assert [v["model_version"] for v in versions["versions"]] == ["v1", "v2"]
    comparison = versions["comparison"]
    assert (comparison["version_a"], comparison["version_b"]) == ("v1", "v2")
    one_hour = next(h for h in comparison["horizons"] if h["horizon"] == "1h")
    assert one_hour["better"] == "A" and one_hour["p_value"] < 0.01
    assert one_hour["verdict"].startswith("A better at 1h")

    monitoring = document["monitoring"]
    assert monitoring["error"] is None
    assert monitoring["status"] in {"OK", "WARNING", "CRITICAL", "UNKNOWN"}
    assert sum(monitoring["counts"].values()) >= len(monitoring["results"])
    with planted.connect() as conn:  # the report never records alerts
        assert conn.execute(text("SELECT count(*) FROM ml_alerts")).scalar_one() == 0


def test_an_empty_or_immature_window_gives_a_report_that_says_so(planted: Engine) -> None:
    empty = report_content(planted, since="2025-01-01", until="2025-01-08", now=NOW)
    assert empty["empty"] is True
    assert empty["overview"]["predictions"] == 0
    for key in ("status", "daily", "symbol_table", "return_quintiles", "reliability"):
        assert empty[key] == []
    assert [row["matured_share"] for row in empty["maturity"]] == [None] * 4

    recent = report_content(planted, since=NOW - timedelta(hours=2), now=NOW, monitoring=False)
    twelve = next(row for row in recent["maturity"] if row["horizon"] == "12h")
    assert twelve["due"] == 0 and twelve["matured_share"] == 0
    status = next(row for row in recent["status"] if row["horizon"] == "12h")
    assert status["n"] == 0 and status["verdict"] == "unknown"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"days": 1e10}, "calendar"),
        ({"since": "2030-01-01"}, "not before now"),
        ({"days": -1}, "positive"),
        ({"since": "2026-10-05", "until": "2026-10-01"}, "before until"),
        ({"images": "gif"}, "svg or png"),
    ],
)
def test_bad_options_are_one_line_input_errors(
    planted: Engine, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        report_content(planted, now=NOW, **options)
