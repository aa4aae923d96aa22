"""The freshness and quality checks on real databases: a symbol or model version that stops
logging is flagged and an active one is not; outcome lag is flagged when the backfill stops
and not while it keeps up; quality shares and inference percentiles equal numpy's on the
same rows; an empty lookback or window is UNKNOWN."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlpred_cli.config import HORIZON_DELTAS, HORIZONS
from mlpred_cli.monitor.freshness import freshness_checks, freshness_results
from mlpred_cli.monitor.quality import quality_checks
from mlpred_cli.monitor.results import CheckResult, Scope, Severity
from mlpred_cli.monitor.settings import DEFAULT_SETTINGS
from mlpred_cli.store.liveness_reads import (
    last_seen,
    liveness,
    newest_outcomes,
    quality_figures,
    read_liveness,
    read_quality,
)
from mlpred_cli.store.prediction_queries import PredictionFilter, make_filter
from mlpred_cli.store.tables import predictions_table
from tests.factories import insert_predictions, prediction_row

pytestmark = pytest.mark.both_layouts

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CANDLE = timedelta(minutes=15)
SETTINGS = DEFAULT_SETTINGS  # 15-minute candles, stale after 4 / 16 candles, lag 3 h / 12 h
EVERYTHING = PredictionFilter()


def _series(
    symbol: str,
    first: datetime,
    last: datetime,
    *,
    model_version: str | None = "v2",
    filled_through: datetime | None = None,
) -> list[dict[str, Any]]:
    """A prediction every candle from ``first`` to ``last``; each horizon's outcome filled
    where it is due at NOW and the row is not newer than ``filled_through``."""
    rows = []
    moment = first
    while moment <= last:
        outcomes: dict[str, Any] = {}
        for horizon in HORIZONS:
            due = moment + HORIZON_DELTAS[horizon] + CANDLE <= NOW
            filled = due and filled_through is not None and moment <= filled_through
            outcomes[f"actual_direction_{horizon}"] = "LONG" if filled else None
            outcomes[f"actual_return_{horizon}"] = 0.01 if filled else None
        rows.append(prediction_row(symbol, moment, model_version=model_version, **outcomes))
        moment += CANDLE
    return rows


def _by_scope(results: list[CheckResult], metric: str) -> dict[Scope, CheckResult]:
    return {result.scope: result for result in results if result.metric == metric}


def _freshness(engine: Engine) -> list[CheckResult]:
    snapshot = read_liveness(
        engine, EVERYTHING, now=NOW, lookback=SETTINGS.freshness_lookback, candle_interval=CANDLE
    )
    return freshness_results(snapshot, SETTINGS)


def test_stopped_symbols_and_model_versions_are_flagged(engine: Engine) -> None:
    day_ago = NOW - timedelta(days=1)
    insert_predictions(engine, _series("BTCUSDT", day_ago, NOW - CANDLE, filled_through=NOW))
    insert_predictions(engine, _series("ETHUSDT", day_ago, NOW - timedelta(hours=3)))
    insert_predictions(
        engine, _series("XRPUSDT", day_ago, NOW - timedelta(hours=10), model_version="v1")
    )
    insert_predictions(engine, [prediction_row("DOGEUSDT", NOW - timedelta(days=5))])
    stale = _by_scope(_freshness(engine), "stale_minutes")

    btc = stale[Scope(symbol="BTCUSDT")]
    assert btc.severity is Severity.OK and btc.value == 0.0
    eth = stale[Scope(symbol="ETHUSDT")]
    assert eth.severity is Severity.WARNING
    assert eth.value == pytest.approx(165.0)  # 3 h since its candle opened, less one candle
    assert eth.threshold == 60.0
    assert eth.message == "ETHUSDT: no prediction for 2.8 h (limit 60 min): is the bot down?"
    xrp = stale[Scope(symbol="XRPUSDT")]
    assert xrp.severity is Severity.CRITICAL and xrp.threshold == 240.0
    assert Scope(symbol="DOGEUSDT") not in stale  # outside the two-day lookback

    assert stale[Scope(model_version="v2")].severity is Severity.OK
    v1 = stale[Scope(model_version="v1")]
    # v2 still logs, so v1 stopping looks like a rollout: flagged, but not critical
    assert v1.severity is Severity.WARNING
    assert "while v2 still logs" in v1.message


def test_a_lone_model_version_that_stops_is_critical(engine: Engine) -> None:
    rows = _series("BTCUSDT", NOW - timedelta(days=1), NOW - timedelta(hours=6), model_version="v1")
    insert_predictions(engine, rows)
    insert_predictions(
        engine, [prediction_row("ETHUSDT", NOW - timedelta(hours=6), model_version=None)]
    )
    stale = _by_scope(_freshness(engine), "stale_minutes")
    assert stale[Scope(model_version="v1")].severity is Severity.CRITICAL
    assert stale[Scope(model_version="")].severity is Severity.CRITICAL  # logged without one
    with engine.connect() as conn:
        seen = last_seen(conn, "model_version", NOW - timedelta(days=2), EVERYTHING)
        pinned = last_seen(
            conn, "symbol", NOW - timedelta(days=2), PredictionFilter(symbol="ETHUSDT")
        )
    assert seen == {"v1": NOW - timedelta(hours=6), None: NOW - timedelta(hours=6)}
    assert pinned == {"ETHUSDT": NOW - timedelta(hours=6)}


def test_outcome_lag_is_ok_while_the_backfill_keeps_up(engine: Engine) -> None:
    rows = _series("BTCUSDT", NOW - timedelta(days=1), NOW - CANDLE, filled_through=NOW)
    insert_predictions(engine, rows)
    lag = _by_scope(_freshness(engine), "outcome_lag_minutes")
    for horizon in HORIZONS:
        assert lag[Scope(horizon=horizon)].severity is Severity.OK
        assert lag[Scope(horizon=horizon)].value == 0.0
    with engine.connect() as conn:
        frontier = newest_outcomes(
            conn, EVERYTHING, timedelta(days=2), now=NOW, candle_interval=CANDLE
        )
    assert frontier == {h: NOW - HORIZON_DELTAS[h] - CANDLE for h in HORIZONS}


def test_outcome_lag_is_flagged_when_the_backfill_stops(engine: Engine) -> None:
    stopped = NOW - timedelta(hours=8)
    rows = _series("BTCUSDT", NOW - timedelta(days=1), NOW - CANDLE, filled_through=stopped)
    insert_predictions(engine, rows)
    lag = _by_scope(_freshness(engine), "outcome_lag_minutes")
    fifteen = lag[Scope(horizon="15m")]
    assert fifteen.severity is Severity.WARNING
    assert fifteen.value == pytest.approx(7.5 * 60)  # due through NOW - 30 min, filled - 8 h
    assert fifteen.message.endswith("the backfill cron may be down")
    assert lag[Scope(horizon="1h")].value == pytest.approx(6.75 * 60)
    assert lag[Scope(horizon="12h")].severity is Severity.OK  # not due past the stop yet


def test_outcome_lag_without_any_outcome_counts_from_the_oldest_prediction(
    engine: Engine,
) -> None:
    insert_predictions(engine, _series("BTCUSDT", NOW - timedelta(days=1), NOW - CANDLE))
    lag = _by_scope(_freshness(engine), "outcome_lag_minutes")
    assert lag[Scope(horizon="15m")].severity is Severity.CRITICAL
    assert lag[Scope(horizon="15m")].value == pytest.approx(23.5 * 60)
    assert lag[Scope(horizon="12h")].severity is Severity.WARNING
    assert lag[Scope(horizon="12h")].value == pytest.approx(11.75 * 60)


def test_freshness_from_separate_reads_agrees_with_the_snapshot(engine: Engine) -> None:
    stopped = NOW - timedelta(hours=8)
    insert_predictions(
        engine, _series("BTCUSDT", NOW - timedelta(days=1), NOW - CANDLE, filled_through=stopped)
    )
    insert_predictions(
        engine, _series("ETHUSDT", NOW - timedelta(days=1), NOW - timedelta(hours=5))
    )
    since = NOW - SETTINGS.freshness_lookback
    with engine.connect() as conn:
        separate = freshness_checks(
            last_seen(conn, "symbol", since, EVERYTHING),
            last_seen(conn, "model_version", since, EVERYTHING),
            newest_outcomes(conn, EVERYTHING, SETTINGS.freshness_lookback, now=NOW),
            now=NOW,
            settings=SETTINGS,
        )
    together = _freshness(engine)
    assert [(r.fingerprint, r.severity, r.value) for r in separate] == [
        (r.fingerprint, r.severity, r.value) for r in together
    ]
    assert {r.severity for r in separate} == {Severity.OK, Severity.WARNING, Severity.CRITICAL}


def test_a_new_deployment_is_not_blamed_on_the_backfill(engine: Engine) -> None:
    insert_predictions(engine, _series("BTCUSDT", NOW - timedelta(hours=1), NOW - CANDLE))
    lag = _by_scope(_freshness(engine), "outcome_lag_minutes")
    assert all(result.severity is Severity.OK for result in lag.values())
    assert lag[Scope(horizon="4h")].message == "4h: no outcome due yet"


def test_nothing_ever_logged_is_unknown_and_a_long_silence_is_critical(engine: Engine) -> None:
    results = _freshness(engine)
    assert {result.severity for result in results} == {Severity.UNKNOWN}
    assert len(results) == 1 + len(HORIZONS)
    # Predictions that stopped before the lookback: the bot is down, not "unknown".
    insert_predictions(engine, [prediction_row("BTCUSDT", NOW - timedelta(days=5))])
    results = _freshness(engine)
    stale, *lags = results
    assert stale.severity is Severity.CRITICAL and stale.value == 5 * 24 * 60
    assert "(newest 2026-11-26 12:00)" in stale.message and "bot down" in stale.message
    assert {result.severity for result in lags} == {Severity.UNKNOWN}


# ---------------------------------------------------------------- quality


def _quality_rows(count: int, seed: int) -> list[dict[str, Any]]:
    generator = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        nan = int(generator.random() < 0.03)
        inf = int(generator.random() < 0.02)
        timing = None if generator.random() < 0.1 else float(generator.lognormal(3.0, 1.0))
        rows.append(
            prediction_row(
                "BTCUSDT",
                NOW - timedelta(minutes=index),
                nan_count=nan * 3,
                inf_count=inf,
                is_duplicate=bool(generator.random() < 0.3),
                inference_time_ms=timing,
            )
        )
    return rows


def test_quality_figures_match_numpy(engine: Engine) -> None:
    rows = _quality_rows(2_000, seed=7)
    insert_predictions(engine, rows)
    window = make_filter(days=1, now=NOW)
    figures = read_quality(engine, window)
    in_window = [row for row in rows if row["datetime"] >= window.since]
    times = np.array([r["inference_time_ms"] for r in in_window if r["inference_time_ms"]])
    assert figures.rows == len(in_window) == 1_441
    assert figures.nan_inf_rows == sum(1 for r in in_window if r["nan_count"] or r["inf_count"])
    assert figures.duplicate_rows == sum(1 for r in in_window if r["is_duplicate"])
    assert figures.timed_rows == figures.sampled_rows == times.size
    # percentile_cont and numpy's default both interpolate linearly: equal up to rounding
    expected = np.percentile(times, [50, 95, 99])
    got = [figures.inference_p50_ms, figures.inference_p95_ms, figures.inference_p99_ms]
    assert got == pytest.approx(expected, rel=1e-9)

    results = {r.metric: r for r in quality_checks(figures, window, SETTINGS)}
    nan_share = results["nan_inf_share"]
    assert nan_share.value == pytest.approx(figures.nan_inf_rows / figures.rows)
    assert nan_share.severity is Severity.WARNING  # ~5 % of rows: above 1 %, below 10 %
    assert nan_share.n == figures.rows
    assert results["duplicate_share"].severity is Severity.CRITICAL  # ~30 % > 25 %
    assert results["inference_p95_ms"].severity is Severity.OK  # e^(3 + 1.645) ~ 104 ms
    assert results["inference_p95_ms"].n == times.size
    strict = replace(SETTINGS, inference_p95_warning_ms=50.0, inference_p95_critical_ms=80.0)
    p95 = {r.metric: r for r in quality_checks(figures, window, strict)}["inference_p95_ms"]
    assert p95.severity is Severity.CRITICAL and p95.threshold == 80.0


@pytest.mark.sqlite_only
def test_sqlite_samples_inference_times_evenly_by_id(engine: Engine) -> None:
    insert_predictions(engine, _quality_rows(1_000, seed=11))
    with engine.connect() as conn:
        figures = quality_figures(conn, EVERYTHING, max_sample_rows=100)
        table = predictions_table.c
        ids_and_times = conn.execute(
            sa.select(table.id, table.inference_time_ms).where(table.inference_time_ms.isnot(None))
        ).all()
    step = int(np.ceil(len(ids_and_times) / 100))
    sample = np.array([time for row_id, time in ids_and_times if row_id % step == 0])
    assert figures.timed_rows == len(ids_and_times)
    assert figures.sampled_rows == sample.size
    assert 80 <= sample.size <= 110
    assert figures.inference_p95_ms == pytest.approx(np.percentile(sample, 95), rel=1e-12)


def test_an_empty_window_is_unknown(engine: Engine) -> None:
    insert_predictions(engine, [prediction_row("BTCUSDT", NOW - timedelta(days=3))])
    window = make_filter(symbol="BTCUSDT", days=1, now=NOW)
    with engine.connect() as conn:
        figures = quality_figures(conn, window)
    assert figures.rows == 0 and figures.inference_p95_ms is None
    results = quality_checks(figures, window, SETTINGS)
    assert [r.severity for r in results] == [Severity.UNKNOWN] * 3
    assert {r.scope for r in results} == {Scope(symbol="BTCUSDT")}


def test_quality_without_inference_times_is_unknown_for_the_p95(engine: Engine) -> None:
    insert_predictions(engine, [prediction_row("BTCUSDT", NOW, inference_time_ms=None)])
    with engine.connect() as conn:
        snapshot = liveness(conn, EVERYTHING, now=NOW, lookback=timedelta(days=2))
        figures = quality_figures(conn, EVERYTHING)
    assert snapshot.symbols == {"BTCUSDT": NOW}
    results = {r.metric: r for r in quality_checks(figures, EVERYTHING, SETTINGS)}
    assert results["nan_inf_share"].severity is Severity.OK
    assert results["inference_p95_ms"].severity is Severity.UNKNOWN
    assert results["inference_p95_ms"].message.endswith("no inference times logged")
