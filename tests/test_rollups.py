"""Daily rollups: figures summed from ``ml_prediction_daily`` (plus raw rows for cut days and
rows newer than the rollups) equal the raw computation, on random data and any window; the
backfill keeps them exact; a rebuild changes nothing."""

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
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from mlpred_cli.analysis.metrics import brier_score, expected_calibration_error
from mlpred_cli.analysis.prediction_views import accuracy_table, analyze, load_predictions
from mlpred_cli.analysis.scoring import correct_flags
from mlpred_cli.cli import app
from mlpred_cli.config import HORIZONS
from mlpred_cli.outcomes.backfill import backfill_actuals
from mlpred_cli.outcomes.rollups import rebuild_rollups
from mlpred_cli.store import outcome_updates, rollups
from mlpred_cli.store.prediction_queries import make_filter
from mlpred_cli.store.prediction_reads import read_accuracy_counts
from mlpred_cli.store.rollup_columns import ROLLUP_TABLE
from tests.factories import candle_row, insert_candles, insert_predictions, prediction_row

pytestmark = pytest.mark.both_layouts

START = datetime(2026, 3, 1, tzinfo=UTC)
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
VERSIONS = ("v1", "v2", None)
DIRECTIONS = ("LONG", "SHORT", "NEUTRAL", None)


def _random_row(rng: random.Random, moment: datetime) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "model_version": rng.choice(VERSIONS),
        "signal_type": rng.choice(("LONG", "SHORT", "NEUTRAL", "NEUTRAL", None)),
        "signal_confidence": rng.choice((None, 0.5, 0.6, 1.0, 0.0, round(rng.random(), 3))),
        "signal_timeframe": rng.choice((*HORIZONS, None, "1d")),
    }
    for horizon in HORIZONS:
        direction = rng.choice(DIRECTIONS)
        actual = rng.choice(DIRECTIONS)
        predicted = rng.choice((None, round(rng.gauss(0, 0.01), 3)))
        overrides[f"predicted_return_{horizon}"] = predicted
        overrides[f"direction_{horizon}"] = direction
        overrides[f"direction_{horizon}_confidence"] = rng.choice(
            (None, 0.1, 0.9, 1.0, round(rng.random(), 2))
        )
        overrides[f"actual_direction_{horizon}"] = actual
        overrides[f"actual_return_{horizon}"] = (
            None if actual is None else round(rng.gauss(0, 0.01), 3)
        )
        overrides[f"accuracy_{horizon}"] = (
            None if actual is None or direction is None else direction == actual
        )
    return prediction_row(rng.choice(SYMBOLS), moment, **overrides)


def _insert_random(engine: Engine, seed: int, count: int, days: int = 5) -> None:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        offset = rng.choice((0, rng.randrange(days * 96))) * 15  # some exactly on midnight
        rows.append(_random_row(rng, START + timedelta(minutes=offset)))
    insert_predictions(engine, rows)


def _windows(rng: random.Random) -> list[dict[str, Any]]:
    windows: list[dict[str, Any]] = [{}, {"symbol": "ETHUSDT"}, {"model_version": "v2"}]
    for _ in range(6):
        since = START + timedelta(minutes=15 * rng.randrange(-10, 5 * 96))
        until = since + timedelta(minutes=15 * rng.randrange(1, 4 * 96))
        windows.append({"since": since, "until": until, "symbol": rng.choice((None, *SYMBOLS))})
    windows.append({"since": START + timedelta(days=1), "until": START + timedelta(days=3)})
    windows.append({"since": START + timedelta(hours=30)})
    return windows


def _sorted(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    key = frame[by].map(lambda v: "~none" if v is None or v != v else str(v))
    return frame.assign(_key=key).sort_values("_key").drop(columns="_key").reset_index(drop=True)


def _assert_counts_equal(fast: pd.DataFrame, raw: pd.DataFrame, by: str) -> None:
    fast, raw = _sorted(fast, by), _sorted(raw, by)
    assert len(fast) == len(raw)
    assert [None if v != v else v for v in fast[by]] == [None if v != v else v for v in raw[by]]
    for name in raw.columns:
        if name == by:
            continue
        for a, b in zip(fast[name], raw[name], strict=True):
            if b is None or (isinstance(b, float) and math.isnan(b)):
                assert a is None or (isinstance(a, float) and math.isnan(a)), name
            else:
                assert a == pytest.approx(float(b), abs=1e-9), name


def test_accuracy_from_rollups_equals_raw_counts_on_random_data(engine: Engine) -> None:
    _insert_random(engine, seed=7, count=600)
    assert rebuild_rollups(engine).status == "done"
    _insert_random(engine, seed=8, count=80)  # above the watermark: read from raw rows
    rng = random.Random(3)
    for window in _windows(rng):
        selection = make_filter(**window)
        for by in ("symbol", "model_version", "signal_type", "day"):
            raw = read_accuracy_counts(engine, selection, by, HORIZONS)
            fast = accuracy_table(engine, by=by, overlap=False, **window)
            expected = raw.drop(columns=[f"correct_{h}" for h in HORIZONS])
            fast_counts = fast[list(expected.columns)]
            _assert_counts_equal(fast_counts, expected, by)
            for horizon in HORIZONS:  # accuracy = correct / n of the raw counts
                for (_, f), (_, r) in zip(
                    _sorted(fast, by).iterrows(), _sorted(raw, by).iterrows(), strict=True
                ):
                    if r[f"n_{horizon}"]:
                        share = r[f"correct_{horizon}"] / r[f"n_{horizon}"]
                        assert f[f"accuracy_{horizon}"] == pytest.approx(share, abs=1e-12)


def _spearman(frame: pd.DataFrame, horizon: str) -> float | None:
    x = frame[f"predicted_return_{horizon}"].to_numpy(float)
    y = frame[f"actual_return_{horizon}"].to_numpy(float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(stats.spearmanr(x, y).statistic)


def test_analyze_sections_equal_the_raw_computation(engine: Engine) -> None:
    _insert_random(engine, seed=11, count=700)
    rebuild_rollups(engine)
    _insert_random(engine, seed=12, count=50)
    for window in _windows(random.Random(5))[:7]:
        if "since" not in window:  # analyze defaults to the last 30 days
            window = {**window, "since": START - timedelta(hours=5)}
        report = analyze(engine, **window)
        rows = load_predictions(engine, **window)
        if rows.empty:
            assert report.empty
            continue
        rows["day"] = rows["datetime"].dt.strftime("%Y-%m-%d")
        rows["version"] = rows["model_version"].fillna("")
        for entry, calibration in zip(report.horizons, report.calibration, strict=True):
            horizon = entry["horizon"]
            correct = correct_flags(rows, horizon)
            confidence = rows[f"direction_{horizon}_confidence"].to_numpy(float)
            scored = np.isfinite(correct)
            assert entry["n"] == int(scored.sum())
            ece = expected_calibration_error(confidence, correct)
            brier = brier_score(confidence, correct)
            for got, want in ((calibration["ece"], ece), (calibration["brier"], brier)):
                assert (got is None and want is None) or got == pytest.approx(want, abs=1e-9)
            both = rows[[f"predicted_return_{horizon}", f"actual_return_{horizon}"]].dropna()
            error = both.iloc[:, 0] - both.iloc[:, 1]
            if len(both):
                assert entry["mae"] == pytest.approx(float(error.abs().mean()), abs=1e-12)
            if len(both) >= 3 and both.iloc[:, 0].std() > 0 and both.iloc[:, 1].std() > 0:
                pearson = float(np.corrcoef(both.iloc[:, 0], both.iloc[:, 1])[0, 1])
                assert entry["pearson_ic"] == pytest.approx(pearson, abs=1e-9)
            daily = [
                ic
                for _, group in rows.groupby(["day", "symbol", "version"])
                if (ic := _spearman(group, horizon)) is not None
            ]
            assert entry["daily_ic_days"] == len(daily)
            if daily:
                assert entry["daily_ic_mean"] == pytest.approx(float(np.mean(daily)), abs=1e-9)
            if len(daily) >= 2 and np.std(daily) > 0:
                t = np.mean(daily) / (np.std(daily, ddof=1) / math.sqrt(len(daily)))
                assert entry["daily_ic_t"] == pytest.approx(float(t), abs=1e-9)
        counted = {row["signal_type"]: row["count"] for row in report.signals}
        for kind in ("LONG", "SHORT", "NEUTRAL"):
            assert counted[kind] == int((rows["signal_type"] == kind).sum())
        assert sum(row["count"] for row in report.confidence_bins) == int(
            rows["signal_confidence"].between(0, 1).sum()
        )


def _rollup_table(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(sa.text(f"SELECT * FROM {ROLLUP_TABLE}"))
        frame = pd.DataFrame(result.all(), columns=list(result.keys()))
    frame["day"] = frame["day"].map(lambda v: v if isinstance(v, str) else v.isoformat())
    return frame.sort_values(["day", "symbol", "model_version", "horizon"]).reset_index(drop=True)


def _assert_same_table(first: pd.DataFrame, second: pd.DataFrame) -> None:
    assert list(first.columns) == list(second.columns)
    assert len(first) == len(second)
    for name in first.columns:
        left, right = first[name].tolist(), second[name].tolist()
        for a, b in zip(left, right, strict=True):
            if isinstance(a, float) or isinstance(b, float):
                if a is None or b is None or math.isnan(a) or math.isnan(b):
                    assert (a is None or math.isnan(a)) and (b is None or math.isnan(b)), name
                else:
                    assert a == pytest.approx(b, rel=1e-12, abs=1e-15), name
            else:
                assert a == b, name


def _market(
    engine: Engine, symbols: tuple[str, ...], hours: int, start: datetime = START, seed: int = 1
) -> None:
    rng = random.Random(seed)
    rows = []
    for symbol in symbols:
        price = 100.0
        for step in range(hours * 4):
            price *= 1 + rng.gauss(0, 0.004)
            rows.append(candle_row(symbol, start + timedelta(minutes=15 * step), price))
    insert_candles(engine, rows)


def _logged(engine: Engine, seed: int, first: int, last: int, start: datetime = START) -> None:
    """Predictions every 15 minutes from candle ``first`` to ``last`` without outcomes."""
    rng = random.Random(seed)
    rows = []
    for step in range(first, last):
        for symbol in ("BTCUSDT", "ETHUSDT"):
            row = _random_row(rng, start + timedelta(minutes=15 * step))
            row["symbol"] = symbol
            for horizon in HORIZONS:
                for stem in ("actual_return", "actual_direction", "accuracy"):
                    row[f"{stem}_{horizon}"] = None
            row["close_price"] = None  # entry price from the candle
            rows.append(row)
    insert_predictions(engine, rows)


@pytest.mark.parametrize(
    ("by_day", "deltas"),
    [(False, True), (False, False), (True, True)],
    ids=["deltas", "by-key", "by-day"],
)
def test_backfill_keeps_rollups_equal_to_a_rebuild(
    engine: Engine, by_day: bool, deltas: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # deltas: the backfill adds the changed rows' sums; by-key: it recomputes the touched
    # keys from their rows; by-day: it recomputes their whole days
    monkeypatch.setattr(outcome_updates, "ROLLUP_DELTAS", deltas)
    if by_day:  # every refresh recomputes whole days (what many touched keys do)
        monkeypatch.setattr(rollups, "REFRESH_BY_DAY_KEYS", 0)
    _market(engine, ("BTCUSDT", "ETHUSDT"), hours=60)
    _logged(engine, 1, 0, 60)
    backfill_actuals(engine, now=START + timedelta(hours=8))  # some horizons still pending
    _logged(engine, 2, 60, 120)  # a later day's predictions arrive
    backfill_actuals(engine, now=START + timedelta(hours=20))
    backfill_actuals(engine, now=START + timedelta(hours=40))
    _logged(engine, 3, 120, 130)  # logged after the last backfill: above the watermark
    kept = _rollup_table(engine)
    assert len(kept) > 0
    assert int(kept["scored"].sum()) > 0
    window: dict[str, Any] = {"since": START, "until": START + timedelta(days=3)}
    before = accuracy_table(engine, by="day", **window)
    rebuild_rollups(engine)
    rebuilt = _rollup_table(engine)
    # the rebuild also takes in the rows above the old watermark: compare the old keys
    merged = rebuilt.merge(kept[["day", "symbol", "model_version", "horizon"]], how="inner")
    assert len(merged) == len(kept)
    unchanged = rebuilt[
        rebuilt["day"].isin(kept["day"]) & (rebuilt["day"] < rebuilt["day"].max())
    ].reset_index(drop=True)
    expected = kept[kept["day"] < rebuilt["day"].max()].reset_index(drop=True)
    _assert_same_table(unchanged, expected)
    after = accuracy_table(engine, by="day", **window)
    pd.testing.assert_frame_equal(before, after)
    rebuild_rollups(engine)
    _assert_same_table(_rollup_table(engine), rebuilt)
    _logged(engine, 4, 130, 140)  # newer rows, then a rebuild of the last day only
    rebuild_rollups(engine, since=START + timedelta(days=1))
    partial = _rollup_table(engine)
    rebuild_rollups(engine)
    _assert_same_table(partial, _rollup_table(engine))


def test_rollups_of_archived_days_survive_a_rebuild(engine: Engine) -> None:
    _insert_random(engine, seed=21, count=300, days=4)
    rebuild_rollups(engine)
    window: dict[str, Any] = {"since": START, "until": START + timedelta(days=4)}
    before = accuracy_table(engine, by="day", **window)
    archived_day = date(2026, 3, 2)
    with engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM ml_predictions WHERE datetime >= :a AND datetime < :b").bindparams(
                sa.bindparam("a", type_=sa.DateTime(timezone=True)),
                sa.bindparam("b", type_=sa.DateTime(timezone=True)),
            ),
            {"a": START + timedelta(days=1), "b": START + timedelta(days=2)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO ml_archived_days (day, predictions, location, checksum, archived_at)"
                " VALUES (:day, 1, 'x', 'y', :now)"
            ).bindparams(sa.bindparam("now", type_=sa.DateTime(timezone=True))),
            {"day": archived_day, "now": START},
        )
    rebuild_rollups(engine)
    after = accuracy_table(engine, by="day", **window)
    corrected = [c for c in before.columns if "effective" in c or "overlap" in c]
    pd.testing.assert_frame_equal(before.drop(columns=corrected), after.drop(columns=corrected))
    # The overlap-corrected intervals need the rows: gone for the archived day only.
    gone = after["day"] == archived_day.isoformat()
    assert gone.sum() == 1
    assert after.loc[gone, corrected].isna().all().all()
    pd.testing.assert_frame_equal(before.loc[~gone, corrected], after.loc[~gone, corrected])
    assert before.loc[gone, corrected].notna().any().any()
    report = analyze(engine, **window)
    assert report.sources["archived_days"] == ["2026-03-02"]
    assert any("archived" in note for note in report.sources["notes"])


def test_rollup_rebuild_command(db_url: str) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--db", db_url, "rollup", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "rollup rebuild (all history): 0 days" in result.output
    bad = runner.invoke(app, ["--db", db_url, "rollup", "rebuild", "--since", "yesterday"])
    assert bad.exit_code == 2
    assert "since" in bad.output and "Traceback" not in bad.output
