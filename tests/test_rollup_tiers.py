"""The coarser rollup tiers (``ml_prediction_monthly``, ``ml_prediction_daily_total``): every
tier row is the sum of its daily rows after rebuilds, backfills and the migration that
creates them, and whole-history reads that use them equal the raw computation across months,
with rows above the watermark in some of them."""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from scipy import stats
from sqlalchemy import event
from sqlalchemy.engine import Engine

from mlpred_cli.analysis.prediction_views import accuracy_table
from mlpred_cli.config import HORIZONS
from mlpred_cli.outcomes.backfill import backfill_actuals
from mlpred_cli.outcomes.rollups import rebuild_rollups
from mlpred_cli.store import outcome_updates, rollup_reads, rollups
from mlpred_cli.store.migrations import downgrade, upgrade_to_head
from mlpred_cli.store.prediction_queries import make_filter
from mlpred_cli.store.prediction_reads import read_accuracy_counts
from mlpred_cli.store.rollup_columns import (
    ADDITIVE_COLUMNS,
    COUNT_COLUMNS,
    DAILY_TOTAL_KEY_COLUMNS,
    DAILY_TOTAL_TABLE,
    MONTHLY_KEY_COLUMNS,
    MONTHLY_TABLE,
    ROLLUP_TABLE,
)
from mlpred_cli.store.rollup_deltas import group_average_ranks, spearman_by_group
from mlpred_cli.store.rollup_tiers import TIER_LAG_DAYS, advance_tiers, tiers_before
from tests import test_rollups as rollup_tests
from tests.factories import insert_predictions
from tests.test_rollups import _assert_counts_equal, _random_row

pytestmark = pytest.mark.both_layouts

START = datetime(2026, 1, 20, tzinfo=UTC)  # 70 days: the end of January to the end of March
DAYS = 70
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
INTEGERS = (*COUNT_COLUMNS, "ic_days")


def _frame(engine: Engine, table: str) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(sa.text(f"SELECT * FROM {table}"))
        frame = pd.DataFrame([tuple(row) for row in result], columns=list(result.keys()))
    for key in ("day", "month"):
        if key in frame:
            frame[key] = frame[key].map(lambda v: v if isinstance(v, str) else v.isoformat())
    return frame


def _before(engine: Engine) -> date | None:
    with engine.connect() as conn:
        return tiers_before(conn)


def _expected_tiers(engine: Engine) -> dict[str, pd.DataFrame]:
    """Each tier computed in pandas from the daily rows before the tiers' boundary."""
    daily = _frame(engine, ROLLUP_TABLE)
    before = _before(engine)
    assert before is not None
    daily = daily[daily["day"] < before.isoformat()]
    ic = daily["ic"].astype(float)
    daily = daily.assign(
        month=daily["day"].str[:7] + "-01",
        ic_sum=ic.fillna(0.0),
        ic_sq_sum=(ic * ic).fillna(0.0),
        ic_days=ic.notna().astype("int64"),
    )
    values = [*ADDITIVE_COLUMNS, "ic_sum", "ic_sq_sum", "ic_days"]
    return {
        table: daily.groupby(list(keys))[values].sum().reset_index()
        for table, keys in (
            (MONTHLY_TABLE, MONTHLY_KEY_COLUMNS),
            (DAILY_TOTAL_TABLE, DAILY_TOTAL_KEY_COLUMNS),
        )
    }


def _assert_tiers_match_daily(engine: Engine) -> None:
    for table, expected in _expected_tiers(engine).items():
        keys = list(MONTHLY_KEY_COLUMNS if table == MONTHLY_TABLE else DAILY_TOTAL_KEY_COLUMNS)
        stored = _frame(engine, table).sort_values(keys).reset_index(drop=True)
        expected = expected.sort_values(keys).reset_index(drop=True)
        assert len(stored) == len(expected), table
        assert stored[keys].values.tolist() == expected[keys].values.tolist(), table
        for name in expected.columns.drop(keys):
            left, right = stored[name].tolist(), expected[name].tolist()
            if name in INTEGERS:
                assert [int(v) for v in left] == [int(v) for v in right], (table, name)
            else:
                for a, b in zip(left, right, strict=True):
                    assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12), (table, name)


def _insert_random(engine: Engine, seed: int, count: int) -> None:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        moment = START + timedelta(minutes=15 * rng.randrange(DAYS * 96))
        rows.append(_random_row(rng, moment))
    insert_predictions(engine, rows)


def _tier_windows(rng: random.Random) -> list[dict[str, Any]]:
    windows: list[dict[str, Any]] = [
        {},
        {"symbol": "ETHUSDT"},
        {"model_version": "v1"},
        {"since": datetime(2026, 2, 1, tzinfo=UTC)},  # from a month's first instant
        {"until": datetime(2026, 3, 1, tzinfo=UTC)},
        {"since": datetime(2026, 2, 1, tzinfo=UTC), "until": datetime(2026, 3, 1, tzinfo=UTC)},
        {"since": datetime(2026, 1, 31, 23, 45, tzinfo=UTC), "symbol": "BTCUSDT"},
        # cut months whose days outside the window hold nothing: before and after the data
        {"since": datetime(2026, 1, 5, tzinfo=UTC), "until": datetime(2026, 4, 12, tzinfo=UTC)},
        {"since": datetime(2026, 1, 5, 6, tzinfo=UTC), "until": datetime(2026, 3, 20, tzinfo=UTC)},
    ]
    for _ in range(3):
        since = START + timedelta(minutes=15 * rng.randrange(-20, DAYS * 96))
        until = since + timedelta(minutes=15 * rng.randrange(1, DAYS * 96))
        windows.append({"since": since, "until": until, "symbol": rng.choice((None, *SYMBOLS))})
    return windows


@pytest.mark.parametrize(
    "rebuilt_at",
    [datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 3, 10, 12, tzinfo=UTC)],
    ids=["all-in-tiers", "boundary-in-march"],
)
def test_whole_history_reads_from_the_tiers_equal_raw_counts(
    engine: Engine, rebuilt_at: datetime
) -> None:
    _insert_random(engine, seed=11, count=900)
    assert rebuild_rollups(engine, now=rebuilt_at).status == "done"
    assert _before(engine) == rebuilt_at.date() - timedelta(days=TIER_LAG_DAYS)
    _assert_tiers_match_daily(engine)
    _insert_random(engine, seed=12, count=12)  # above the watermark, in a few days of each month
    statements: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _seen(*args: Any) -> None:
        statements.append(args[2])

    rng = random.Random(5)
    groupings = ("symbol", "model_version", "signal_type", "day")
    for index, window in enumerate(_tier_windows(rng)):
        selection = make_filter(**window)
        # two groupings per window, in turn: every grouping meets every kind of window
        for by in (groupings[index % 4], groupings[(index + 1) % 4]):
            raw = read_accuracy_counts(engine, selection, by, HORIZONS)
            fast = accuracy_table(engine, by=by, overlap=False, **window)
            expected = raw.drop(columns=[f"correct_{h}" for h in HORIZONS])
            _assert_counts_equal(fast[list(expected.columns)], expected, by)
    event.remove(engine, "before_cursor_execute", _seen)
    assert any(MONTHLY_TABLE in text for text in statements)
    assert any(DAILY_TOTAL_TABLE in text for text in statements)


def _market(engine: Engine, hours: int) -> None:
    rollup_tests._market(engine, ("BTCUSDT", "ETHUSDT"), hours, start=START, seed=2)


def _pending(engine: Engine, seed: int, first: int, last: int) -> None:
    """Predictions every 15 minutes from candle ``first`` to ``last``, without outcomes."""
    rollup_tests._logged(engine, seed, first, last, start=START)


@pytest.mark.parametrize(
    ("by_day", "deltas"),
    [(False, True), (False, False), (True, True)],
    ids=["deltas", "by-key", "by-day"],
)
def test_backfills_and_rebuilds_keep_the_tiers_equal_to_the_daily_rows(
    engine: Engine, by_day: bool, deltas: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # deltas: the backfill adds the changed rows' sums; by-key: it recomputes the touched
    # keys from their rows; by-day: it recomputes their whole days
    monkeypatch.setattr(outcome_updates, "ROLLUP_DELTAS", deltas)
    if by_day:  # every refresh recomputes whole days
        monkeypatch.setattr(rollups, "REFRESH_BY_DAY_KEYS", 0)
    _market(engine, hours=60)
    _pending(engine, 1, 0, 60)
    assert rebuild_rollups(engine, now=START).status == "done"  # no day in the tiers yet
    assert _before(engine) == (START - timedelta(days=TIER_LAG_DAYS)).date()
    backfill_actuals(engine, now=START + timedelta(hours=8))
    _pending(engine, 2, 60, 140)  # across midnight, above the watermark
    backfill_actuals(engine, now=START + timedelta(hours=20))
    backfill_actuals(engine, now=START + timedelta(hours=40))
    _assert_tiers_match_daily(engine)
    # a later run moves the boundary past the first day: its rows enter the tiers once
    backfill_actuals(engine, now=START + timedelta(days=3))
    assert _before(engine) == (START + timedelta(days=1)).date()
    _assert_tiers_match_daily(engine)
    assert len(_frame(engine, MONTHLY_TABLE)) > 0
    # rows logged late into that day, then filled: the change reaches the tiers
    _pending(engine, 3, 10, 30)
    backfill_actuals(engine, now=START + timedelta(days=3))
    _assert_tiers_match_daily(engine)
    before = accuracy_table(engine, by="symbol", overlap=False)
    rebuild_rollups(engine, since=START, now=START + timedelta(days=3))
    _assert_tiers_match_daily(engine)
    pd.testing.assert_frame_equal(before, accuracy_table(engine, by="symbol", overlap=False))


def test_the_migration_adds_empty_tiers_the_next_backfill_fills(engine: Engine) -> None:
    _insert_random(engine, seed=31, count=400)
    assert rebuild_rollups(engine).status == "done"
    expected = accuracy_table(engine, by="symbol", overlap=False)
    downgrade(engine, "0006")
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert MONTHLY_TABLE not in tables and DAILY_TOTAL_TABLE not in tables
    upgrade_to_head(engine)
    assert _before(engine) is None and len(_frame(engine, MONTHLY_TABLE)) == 0
    pd.testing.assert_frame_equal(expected, accuracy_table(engine, by="symbol", overlap=False))
    backfill_actuals(engine)  # nothing to fill; it sets the boundary and fills the tiers
    assert _before(engine) is not None
    _assert_tiers_match_daily(engine)
    assert len(_frame(engine, MONTHLY_TABLE)) > 0
    pd.testing.assert_frame_equal(expected, accuracy_table(engine, by="symbol", overlap=False))


def test_group_spearman_equals_scipy_per_group() -> None:
    rng = np.random.default_rng(4)
    groups, xs, ys, expected = [], [], [], {}
    for group in rng.permutation(40):  # ids out of order, rows of a group interleaved below
        size = int(rng.choice((1, 2, 3, 5, 20, 60)))
        x = np.round(rng.normal(size=size), 1)  # rounded: ties
        y = np.full(size, 0.5) if group % 7 == 0 else np.round(rng.normal(size=size), 1)
        groups += [int(group)] * size
        xs.append(x)
        ys.append(y)
        if size >= 3 and len(set(x)) > 1 and len(set(y)) > 1:
            expected[int(group)] = stats.spearmanr(x, y)[0]
    order = rng.permutation(len(groups))
    ids, ics = spearman_by_group(
        np.asarray(groups)[order], np.concatenate(xs)[order], np.concatenate(ys)[order]
    )
    found = {int(i): float(v) for i, v in zip(ids, ics, strict=True) if not np.isnan(v)}
    assert sorted(ids.tolist()) == list(range(40))
    assert found.keys() == expected.keys() and len(found) > 20
    for key, value in expected.items():
        assert found[key] == pytest.approx(value, abs=1e-12), key


def test_group_ranks_tie_nan_with_nan_and_zero_with_minus_zero() -> None:
    # PostgreSQL stores NaN in a double column, sorts it above every number and equal to
    # itself: the SQL ranks tie NaNs, as pandas' rank with NaNs at the bottom does
    values = np.array([1.0, np.nan, 0.0, np.nan, -0.0, 2.0, np.nan, 5.0])
    groups = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    expected = pd.Series(values).groupby(groups).rank(method="average", na_option="bottom")
    np.testing.assert_array_equal(group_average_ranks(groups, values), expected.to_numpy())


def test_a_boundary_moved_during_a_read_is_not_counted_twice(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _insert_random(engine, seed=41, count=600)
    assert rebuild_rollups(engine, now=datetime(2026, 3, 10, tzinfo=UTC)).status == "done"
    expected = read_accuracy_counts(engine, make_filter(), "symbol", HORIZONS)
    inner = rollup_reads._stored_parts
    moved: list[bool] = []

    def moving(*args: Any) -> Any:
        if not moved:  # a backfill commits a boundary move after this read took the boundary
            moved.append(True)
            with engine.begin() as conn:
                assert advance_tiers(conn, datetime(2026, 3, 20, tzinfo=UTC))
        return inner(*args)

    monkeypatch.setattr(rollup_reads, "_stored_parts", moving)
    fast = accuracy_table(engine, by="symbol", overlap=False)
    assert moved
    expected = expected.drop(columns=[f"correct_{h}" for h in HORIZONS])
    _assert_counts_equal(fast[list(expected.columns)], expected, "symbol")


@pytest.mark.postgres_only
def test_a_rebuild_leaves_the_rollup_tables_vacuumed(engine: Engine) -> None:
    # VACUUM sets the visibility map, so whole-history reads answer from the covering
    # indexes alone (index-only scans); autovacuum would run only minutes later
    _market(engine, hours=30)
    _pending(engine, 1, 0, 30)
    assert rebuild_rollups(engine, now=START + timedelta(days=3)).status == "done"
    with engine.connect() as conn:
        vacuumed = dict(
            conn.exec_driver_sql(
                "SELECT relname, last_vacuum IS NOT NULL AND last_analyze IS NOT NULL "
                "FROM pg_stat_user_tables WHERE relname LIKE 'ml_prediction_%%'"
            ).all()
        )
    assert vacuumed[ROLLUP_TABLE] and vacuumed[MONTHLY_TABLE] and vacuumed[DAILY_TOTAL_TABLE]
