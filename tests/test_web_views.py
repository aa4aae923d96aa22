"""The dashboard's figures against direct counts of the planted rows, on both backends:
predictions per hour, the window's edges, matured shares and the daily series' axis."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time, timedelta

import pytest
import sqlalchemy as sa

from mlpred_cli.config import HORIZON_DELTAS, HORIZONS
from mlpred_cli.store.database import create_engine
from mlpred_cli.web.filters import DashboardFilter
from mlpred_cli.web.live import LiveData, dashboard_view
from tests.web_support import plant, read_only

pytestmark = pytest.mark.timeout(120)

CANDLE = timedelta(minutes=15)


def _rows(url: str) -> list[tuple[datetime, int, str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT datetime, timestamp, model_version FROM ml_predictions")
            )
            return [
                (moment if moment.tzinfo else moment.replace(tzinfo=UTC), stamp, version)
                for moment, stamp, version in (
                    (
                        row[0]
                        if isinstance(row[0], datetime)
                        else datetime.fromisoformat(str(row[0])),
                        int(row[1]),
                        row[2],
                    )
                    for row in found
                )
            ]
    finally:
        engine.dispose()


def test_figures_match_direct_counts(db_url: str) -> None:
    plant(db_url, days=3)
    rows = _rows(db_url)
    engine = read_only(db_url)
    try:
        live = LiveData(engine)
        overview = live.view("overview", DashboardFilter(days=2))
        reading = live.reading
        assert reading is not None
        now = reading.polled_at
    finally:
        engine.dispose()

    # predictions per hour: the last 48 hours by each row's timestamp, zero-filled
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=47)
    hours = Counter(stamp // 3_600_000 * 3_600 for moment, stamp, _ in rows
                    if first <= moment <= now)  # fmt: skip
    chart = dict(zip(overview["per_hour"]["t"], overview["per_hour"]["count"], strict=True))
    assert len(chart) == 48
    assert {t: n for t, n in chart.items() if n} == dict(hours)
    assert max(chart.values()) > 10  # several symbols and versions per hour, not one slot

    # the window: today so far and yesterday (whole UTC days)
    midnight = datetime.combine(now.date(), time(), tzinfo=UTC) - timedelta(days=1)
    in_window = [row for row in rows if midnight <= row[0] <= now]
    assert overview["predictions"] == len(in_window)
    assert overview["window"]["since"] == midnight.isoformat()
    for card in overview["horizons"]:
        due = sum(
            1
            for moment, _, _ in in_window
            if moment + HORIZON_DELTAS[card["horizon"]] + CANDLE <= now
        )
        assert card["due"] == due
        assert card["matured_share"] == pytest.approx(due / len(in_window))
    assert [card["horizon"] for card in overview["horizons"]] == list(HORIZONS)


def test_daily_series_covers_every_day_of_the_window(db_url: str) -> None:
    plant(db_url, days=3, versions=("v1",))
    document = dashboard_view(db_url, "timeseries", horizon="4h", days=5)
    (series,) = document["series"]
    assert series["horizon"] == "4h"
    assert len(series["t"]) == 5
    assert all(b - a == 86_400 for a, b in zip(series["t"], series["t"][1:], strict=False))
    # planted 3 days: the first days of the window are empty, the last ones scored
    assert series["n"][0] == 0 and series["accuracy"][0] is None
    assert series["n"][-2] > 0 and series["accuracy"][-2] is not None
    for value, low, high in zip(
        series["accuracy"], series["accuracy_low"], series["accuracy_high"], strict=True
    ):
        assert value is None or low <= value <= high
