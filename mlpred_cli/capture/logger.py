"""MLPredictionLogger: the public logging API a trading bot calls on every prediction.

``log_prediction`` validates and copies its input and queues it; statistics, indicators,
row building, rendering and database I/O all happen on the writer thread.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import math
import numbers
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np

from mlpred_cli.capture import shutdown_signals
from mlpred_cli.capture.batch_writer import BatchWriter, WriterOptions
from mlpred_cli.capture.console_panel import PredictionReporter
from mlpred_cli.capture.journal import FSYNC_POLICIES, FsyncPolicy, Journal
from mlpred_cli.capture.pending_prediction import PendingPrediction
from mlpred_cli.capture.prediction_ids import PredictionIds
from mlpred_cli.capture.spool import Spool
from mlpred_cli.capture.spool_keys import default_spool_dir, legacy_spool_dirs
from mlpred_cli.capture.writer_stats import CloseReport
from mlpred_cli.config import WriterSettings, log_level
from mlpred_cli.derive.attributions import as_attributions, name_positions
from mlpred_cli.derive.feature_stats import as_feature_array
from mlpred_cli.derive.importance_snapshot import build_snapshot
from mlpred_cli.derive.indicators import extract_market_data
from mlpred_cli.derive.raw_outputs import as_raw_outputs, validate_predictions
from mlpred_cli.errors import InputError
from mlpred_cli.store import source as database_source
from mlpred_cli.store.database import create_engine, mask_url
from mlpred_cli.store.source import DatabaseSource

MAX_SYMBOL_LENGTH = 20
MAX_MODEL_VERSION_LENGTH = 50
MODEL_VERSION_ENV = "MLPRED_MODEL_VERSION"
_PREDICTION_IDS = PredictionIds()


def _check_text(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{name} must be a non-empty string, got {value!r}")
    if len(value) > limit:
        raise InputError(f"{name} is longer than {limit} characters: {value!r}")
    if not value.isprintable():
        raise InputError(f"{name} must not contain control characters, got {value!r}")
    return value


def _check_inference_time(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise InputError(f"inference_time_ms must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise InputError(f"inference_time_ms must be a finite number >= 0, got {value!r}")
    return number


class MLPredictionLogger:
    """Logs predictions to PostgreSQL or SQLite through a batched background writer.

    Usable from asyncio (``await log_prediction``, ``async with``) and from threads
    (``log_prediction_sync``, ``with``). Pending rows are flushed at interpreter exit and on
    SIGTERM (see ``handle_signals``).

    Durability: with ``journal=True`` (the default) a prediction is in a local journal
    segment (``spool_dir``) before ``log_prediction`` returns, so a crash of the process loses
    nothing; ``fsync`` chooses what survives power loss: ``"none"`` (default; a crash of the
    machine can lose what the OS had not written), ``"interval"`` (at most ``fsync_interval_s``
    of predictions), ``"always"`` (nothing; one disk flush per call). ``journal=False`` keeps
    predictions in memory until written and loses the queue if the process dies.
    ``handle_signals`` installs a SIGTERM handler (where the application has none) that closes
    every logger within ``close_timeout_s`` and then lets the signal end the process as it
    would have.

    ``database_url`` is any ``DatabaseSource``: a URL string or ``URL``, a ``Path`` to a
    SQLite file, an ``Engine``, or None for the configured default. The background writer
    always owns its engine (it disposes it at close): for an ``Engine`` it makes its own from
    that engine's URL, so the caller's pool is never used or disposed by the writer thread.

    ``feature_names`` (optional) names the features of the vector in order, so
    ``log_prediction(attributions={name: value})`` can key attributions by name.
    """

    def __init__(
        self,
        database_url: DatabaseSource = None,
        *,
        model_version: str = "unknown",
        batch_size: int = WriterSettings.batch_size,
        flush_interval_s: float = WriterSettings.flush_interval_s,
        max_pending: int = WriterSettings.max_pending,
        store_features: bool = False,
        on_duplicate: Literal["mark", "skip"] = "mark",
        spool_dir: str | Path | None = None,
        max_batch_rows: int = WriterSettings.max_batch_rows,
        close_timeout_s: float = WriterSettings.close_timeout_s,
        spool_after_s: float = WriterSettings.spool_after_s,
        auto_migrate: bool = True,
        journal: bool = True,
        fsync: FsyncPolicy = "none",
        fsync_interval_s: float = WriterSettings.fsync_interval_s,
        write_timeout_s: float = WriterSettings.write_timeout_s,
        segment_bytes: int = WriterSettings.segment_bytes,
        handle_signals: bool = True,
        feature_names: Sequence[str] | None = None,
    ) -> None:
        self.model_version = _check_text("model_version", model_version, MAX_MODEL_VERSION_LENGTH)
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if not flush_interval_s > 0:
            raise InputError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        if max_pending < batch_size:
            raise InputError(f"max_pending ({max_pending}) must be >= batch_size ({batch_size})")
        if on_duplicate not in ("mark", "skip"):
            raise InputError(f"on_duplicate must be 'mark' or 'skip', got {on_duplicate!r}")
        if fsync not in FSYNC_POLICIES:
            raise InputError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, got {fsync!r}")
        for name, value in (
            ("close_timeout_s", close_timeout_s),
            ("fsync_interval_s", fsync_interval_s),
            ("write_timeout_s", write_timeout_s),
        ):
            if not value > 0:
                raise InputError(f"{name} must be > 0, got {value}")
        if segment_bytes < 4096:
            raise InputError(f"segment_bytes must be >= 4096, got {segment_bytes}")
        self._feature_positions = name_positions(feature_names)
        url = database_source.database_url(database_url)
        self.database_url = mask_url(url)
        self.spool_dir = Path(spool_dir) if spool_dir is not None else default_spool_dir(url)
        # what a logger keyed by an older spelling of this URL left behind is replayed too
        legacy = legacy_spool_dirs(url) if spool_dir is None else []
        self._close_timeout_s = close_timeout_s
        level = log_level()
        reporter = PredictionReporter(level)
        options = WriterOptions(
            batch_size=batch_size,
            flush_interval_s=flush_interval_s,
            max_pending=max_pending,
            max_batch_rows=max(max_batch_rows, batch_size),
            spool_after_s=spool_after_s,
            write_timeout_s=write_timeout_s,
            on_duplicate=on_duplicate,
            store_features=store_features,
            auto_migrate=auto_migrate,
            journal=journal,
        )
        journal_files = Journal(
            self.spool_dir,
            fsync=fsync,
            fsync_interval_s=fsync_interval_s,
            segment_bytes=segment_bytes,
        )
        self._writer = BatchWriter(
            create_engine(url),
            journal_files,
            Spool(self.spool_dir),
            options,
            reporter if reporter.active else None,
            legacy_spools=[Spool(directory) for directory in legacy],
        )
        atexit.register(self._close_at_exit)
        if handle_signals:
            shutdown_signals.register(self)

    # ------------------------------------------------------------------ logging

    def log_prediction_sync(
        self,
        *,
        symbol: str,
        features: Any,
        model_outputs: Any = None,
        predictions: Any = None,
        market_data: Any = None,
        inference_time_ms: float | None = None,
        model_version: str | None = None,
        attributions: Any = None,
    ) -> str:
        """Queue one prediction and return its ``prediction_id`` (a UUID string).

        ``features``: a 1-D vector or a 2-D window (lookback x features, last row = the
        vector). ``model_outputs``: the 20 raw outputs; ``predictions``: the bot's
        interpreted dict (wins over the raw outputs where both say something); at least one
        of the two is required. ``market_data``: an OHLCV DataFrame; its last candle's open
        time becomes the row's ``datetime`` (else the time of this call, UTC).
        ``attributions``: the bot's per-feature attributions (e.g. SHAP values) of the
        vector, stored in ``feature_attributions``: an array-like aligned with the vector,
        or a mapping of feature index or name (``feature_names``) to value; missing entries
        and NaN are stored as null, +-inf is rejected.
        Raises ``ValueError`` (``InputError``) naming the problem for invalid input.
        """
        _check_text("symbol", symbol, MAX_SYMBOL_LENGTH)
        version = (
            self.model_version
            if model_version is None
            else _check_text("model_version", model_version, MAX_MODEL_VERSION_LENGTH)
        )
        raw_outputs = as_raw_outputs(model_outputs)
        interpreted = validate_predictions(predictions)
        if raw_outputs is None and interpreted is None:
            raise InputError("give model_outputs (20 raw outputs) or predictions (a dict)")
        vector = as_feature_array(features)
        pending = PendingPrediction(
            prediction_id=_PREDICTION_IDS.next(),
            symbol=symbol,
            model_version=version,
            features=vector,
            raw_outputs=raw_outputs,
            predictions=interpreted,
            market=extract_market_data(market_data),
            inference_time_ms=_check_inference_time(inference_time_ms),
            logged_at=time.time(),
            attributions=None
            if attributions is None
            else as_attributions(attributions, vector.shape[-1], self._feature_positions),
        )
        self._writer.submit(pending)
        return str(pending.prediction_id)

    async def log_prediction(
        self,
        *,
        symbol: str,
        features: Any,
        model_outputs: Any = None,
        predictions: Any = None,
        market_data: Any = None,
        inference_time_ms: float | None = None,
        model_version: str | None = None,
        attributions: Any = None,
    ) -> str:
        """Async form of ``log_prediction_sync``; never waits for the database."""
        return self.log_prediction_sync(
            symbol=symbol,
            features=features,
            model_outputs=model_outputs,
            predictions=predictions,
            market_data=market_data,
            inference_time_ms=inference_time_ms,
            model_version=model_version,
            attributions=attributions,
        )

    def log_feature_importance(
        self,
        feature_names: Sequence[str],
        scores: Sequence[float] | np.ndarray,
        *,
        model_version: str | None = None,
        method: str = "model",
        horizon: str | None = None,
    ) -> None:
        """Queue one feature-importance snapshot (all features, ranked 1..n by score).

        ``calculated_at`` is now (UTC). Raises ``ValueError`` (``InputError``) when names and
        scores differ in length, a score is NaN, or a name is repeated.
        """
        version = (
            self.model_version
            if model_version is None
            else _check_text("model_version", model_version, MAX_MODEL_VERSION_LENGTH)
        )
        rows = build_snapshot(
            feature_names, scores, model_version=version, method=method, horizon=horizon
        )
        self._writer.submit_snapshot(rows)

    # ------------------------------------------------------------------ lifecycle

    def stats(self) -> dict[str, object]:
        """The writer's counters (each one is described in the README, "Durability")."""
        return self._writer.stats()

    def flush_sync(self, timeout: float | None = None) -> bool:
        """Block until every prediction logged so far is saved, dead-lettered, or on disk
        only (evicted from memory while the database was away).

        Returns False if ``timeout`` seconds passed first.
        """
        return self._writer.flush(timeout)

    async def flush(self, timeout: float | None = None) -> bool:
        """Async form of ``flush_sync``."""
        return await asyncio.to_thread(self._writer.flush, timeout)

    def close_sync(self, timeout: float | None = None) -> CloseReport:
        """Write what is pending within ``timeout`` seconds (default ``close_timeout_s``),
        keep the rest on disk, stop the writer. Returns what was saved, kept on disk and lost
        (a loss is also logged as an error)."""
        atexit.unregister(self._close_at_exit)
        shutdown_signals.unregister(self)
        return self._writer.close(self._close_timeout_s if timeout is None else timeout)

    async def close(self, timeout: float | None = None) -> CloseReport:
        """Async form of ``close_sync``."""
        return await asyncio.to_thread(self.close_sync, timeout)

    def _close_at_exit(self) -> None:
        try:
            self._writer.close(self._close_timeout_s)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, the journal keeps the rest
            logging.getLogger("mlpred").warning("close interrupted; unsaved rows stay on disk")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close_sync()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


class _EnvironmentLogger:
    """``ml_prediction_logger``: an MLPredictionLogger configured from the environment
    (``MLPRED_DATABASE_URL``, ``MLPRED_MODEL_VERSION``, ``LOG_LEVEL``) on first use."""

    def __init__(self) -> None:
        self._instance: MLPredictionLogger | None = None
        self._lock = threading.Lock()

    def get(self) -> MLPredictionLogger:
        """The shared logger, created on first call."""
        if self._instance is None:
            with self._lock:
                if self._instance is None:
                    version = os.environ.get(MODEL_VERSION_ENV, "unknown") or "unknown"
                    self._instance = MLPredictionLogger(model_version=version)
        return self._instance

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


ml_prediction_logger = _EnvironmentLogger()
