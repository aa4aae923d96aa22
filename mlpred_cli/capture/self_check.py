"""``mlpred log-test``: a synthetic end-to-end run through the real logger and database.

By default the run leaves the database as it found it: the synthetic rows are deleted by
their ``prediction_id`` once read back, and the logger journals into a temporary spool
directory that is removed afterwards, so no replay can bring them back. ``keep=True`` keeps
the rows (and uses the database's own spool directory, as an application's logger would).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpred_cli.capture.logger import MLPredictionLogger
from mlpred_cli.capture.spool_replay import writable_source
from mlpred_cli.capture.synthetic_market import (
    feature_window,
    last_closed_candle_open,
    random_walk_candles,
    raw_model_outputs,
)
from mlpred_cli.errors import InputError
from mlpred_cli.store.database import mask_url
from mlpred_cli.store.migrations import ensure_schema
from mlpred_cli.store.prediction_deletes import delete_predictions_by_id
from mlpred_cli.store.prediction_reads import read_predictions_by_id
from mlpred_cli.store.source import DatabaseSource, database_url, opened

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

CANDLE_INTERVAL = timedelta(minutes=15)
#: Upper bounds of a run's size: predictions per symbol, and candles per prediction.
MAX_COUNT = 100_000
MAX_CANDLES = 100_000
READ_BACK_COLUMNS = (
    "prediction_id",
    "symbol",
    "datetime",
    "signal_type",
    "signal_confidence",
    "predicted_return_15m",
    "direction_15m",
    "features_count",
    "inference_time_ms",
)


@dataclass(frozen=True)
class LogTestResult:
    """What a log-test run logged, what it read back, and how fast it went."""

    database: str
    logged: int
    saved_rows: list[dict[str, Any]]
    missing: list[str]
    overhead_p50_us: float
    overhead_p99_us: float
    mean_batch_ms: float | None
    rows_per_second: float
    stats: dict[str, object]
    kept: bool = True
    removed: int = 0

    @property
    def complete(self) -> bool:
        """True when every logged prediction was read back."""
        return not self.missing and len(self.saved_rows) == self.logged


def run_log_test(
    database: DatabaseSource = None,
    *,
    symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT", "SOLUSDT"),
    count: int = 3,
    candles: int = 300,
    seed: int | None = None,
    model_version: str = "log-test",
    lookback: int = 60,
    keep: bool = False,
) -> LogTestResult:
    """Log ``count`` synthetic predictions per symbol, flush, and read them back.

    ``database`` is any ``DatabaseSource``; an empty database is migrated first. An ``Engine``
    passed in is not disposed (the logger writes through its own engine on its URL). Unless
    ``keep``, the rows written are deleted again (``LogTestResult.removed``), also when the
    run fails half way, and nothing of the run stays in a spool directory.
    """
    if not symbols:
        raise InputError("give at least one symbol")
    if not 1 <= count <= MAX_COUNT:
        raise InputError(f"count must be between 1 and {MAX_COUNT:,}, got {count}")
    if not 1 <= candles <= MAX_CANDLES:
        raise InputError(f"candles must be between 1 and {MAX_CANDLES:,}, got {candles}")
    url = database_url(database)
    with opened(writable_source(database), migrated=False) as engine:
        ensure_schema(engine)
        ids: list[str] = []
        spool_dir = None if keep else Path(tempfile.mkdtemp(prefix="mlpred-log-test-"))
        try:
            result = _log_and_read_back(
                engine,
                mask_url(url),
                symbols=symbols,
                count=count,
                candles=candles,
                seed=seed,
                model_version=model_version,
                lookback=lookback,
                spool_dir=spool_dir,
                ids=ids,
            )
        finally:
            if spool_dir is not None:  # not kept: remove what the run wrote
                try:
                    removed = delete_predictions_by_id(engine, ids)
                finally:
                    shutil.rmtree(spool_dir, ignore_errors=True)
        if spool_dir is None:
            return result
        return replace(result, kept=False, removed=removed)


def _log_and_read_back(
    engine: Engine,
    database: str,
    *,
    symbols: Sequence[str],
    count: int,
    candles: int,
    seed: int | None,
    model_version: str,
    lookback: int,
    spool_dir: Path | None,
    ids: list[str],
) -> LogTestResult:
    """The run itself, on an engine ``run_log_test`` opened and migrated; every id logged is
    appended to ``ids`` as soon as it is known (for the caller to clean up)."""
    rng = np.random.default_rng(seed)
    end = last_closed_candle_open(datetime.now(UTC), CANDLE_INTERVAL)
    overheads_ns: list[int] = []
    logger = MLPredictionLogger(
        engine,
        model_version=model_version,
        batch_size=max(1, min(100, count * len(symbols))),
        flush_interval_s=0.2,
        auto_migrate=False,
        spool_dir=spool_dir,
    )
    started = time.perf_counter()
    try:
        for symbol in symbols:
            history = random_walk_candles(rng, candles + count - 1, end=end)
            for step in range(count):
                market = history.iloc[: candles + step]
                features = feature_window(rng, lookback)
                outputs = raw_model_outputs(rng)
                inference_ms = float(rng.uniform(2.0, 8.0))
                before = time.perf_counter_ns()
                prediction_id = logger.log_prediction_sync(
                    symbol=symbol,
                    features=features,
                    model_outputs=outputs,
                    market_data=market,
                    inference_time_ms=inference_ms,
                )
                overheads_ns.append(time.perf_counter_ns() - before)
                ids.append(prediction_id)
        logger.flush_sync(timeout=60)
        elapsed = time.perf_counter() - started
        stats = logger.stats()
    finally:
        logger.close_sync()
    saved = read_predictions_by_id(engine, ids, READ_BACK_COLUMNS)
    found = {str(row["prediction_id"]) for row in saved}
    overheads_us = np.array(overheads_ns) / 1000.0
    mean_batch_ms = stats.get("mean_batch_ms")
    return LogTestResult(
        database=database,
        logged=len(ids),
        saved_rows=saved,
        missing=[pid for pid in ids if pid not in found],
        overhead_p50_us=float(np.percentile(overheads_us, 50)),
        overhead_p99_us=float(np.percentile(overheads_us, 99)),
        mean_batch_ms=float(mean_batch_ms) if isinstance(mean_batch_ms, float) else None,
        rows_per_second=len(ids) / elapsed if elapsed > 0 else float("inf"),
        stats=stats,
    )
