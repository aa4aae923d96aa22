"""mlpred: log every prediction of an ML trading model and measure how good it really is.

The public API, by job (everything else is internal and may change):

- **log**: ``MLPredictionLogger`` (``await logger.log_prediction(...)``), the environment-
  configured ``ml_prediction_logger``, ``CloseReport`` (what ``close()`` returns),
  ``run_log_test`` (a self-check), the spool directory (``spool_status``, ``replay_spool``,
  ``export_spool``) and the helpers the logger uses on its input
  (``feature_hash``, ``compute_indicators``, ``extract_market_data``, ``interpret_raw_outputs``).
- **outcomes**: ``import_candles`` / ``read_candle_file``, ``backfill_actuals`` and
  ``rebuild_rollups`` (the daily rollups the backfill keeps).
- **history**: ``archive_predictions`` / ``restore_archive`` / ``read_archived_predictions``
  (Parquet), ``partition_database`` / ``ensure_partitions_for`` / ``partitions_of``.
- **analysis**: ``load_predictions``, ``accuracy_table``, ``analyze``, ``high_confidence``,
  ``recent_predictions``, ``export_predictions``.
- **models**: ``compare_models``, ``compute_feature_importance``, ``compute_importance`` (any
  method: spearman_ic, shap_mean_abs, linear_surrogate), ``show_feature_importance``,
  ``overlap_proportion`` (a share with its naive and overlap-corrected interval).
- **monitor**: ``run_check`` (what ``mlpred check`` runs; a ``CheckReport`` of
  ``CheckResult`` with a ``Severity``), ``MonitorSettings`` (its tunables) and
  ``list_alerts`` (the alert state).
- **report** (extra ``mlpred[report]``): ``report_content`` (every figure of ``mlpred
  report`` as one JSON-ready document), ``render_html`` (that document as the self-contained
  HTML page) and ``write_report`` (atomic files, ``latest.html``).
- **dashboard** (extra ``mlpred[web]``): ``serve`` (what ``mlpred serve`` runs) and
  ``dashboard_view`` (the document an ``/api/...`` route serves, without a server).
- **admin**: ``DatabaseSource`` (a URL string, a ``Path`` or an ``Engine``), ``engine_for``,
  ``init_database`` and the exceptions (every one an ``MlpredError``).

Names are imported on first use, so ``import mlpred_cli`` (and the ``mlpred`` command's
start-up) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mlpred_cli.__about__ import __version__

#: Public name -> the internal module that defines it, grouped by job.
_EXPORTS: dict[str, str] = {
    # log
    "MLPredictionLogger": "mlpred_cli.capture.logger",
    "ml_prediction_logger": "mlpred_cli.capture.logger",
    "LogTestResult": "mlpred_cli.capture.self_check",
    "run_log_test": "mlpred_cli.capture.self_check",
    "CloseReport": "mlpred_cli.capture.writer_stats",
    "ReplayResult": "mlpred_cli.capture.spool_replay",
    "SpoolStatus": "mlpred_cli.capture.spool_replay",
    "replay_spool": "mlpred_cli.capture.spool_replay",
    "spool_status": "mlpred_cli.capture.spool_replay",
    "export_spool": "mlpred_cli.capture.spool_replay",
    "feature_hash": "mlpred_cli.derive.feature_stats",
    "format_feature_hash": "mlpred_cli.derive.feature_stats",
    "MarketArrays": "mlpred_cli.derive.indicators",
    "compute_indicators": "mlpred_cli.derive.indicators",
    "extract_market_data": "mlpred_cli.derive.indicators",
    "interpret_raw_outputs": "mlpred_cli.derive.raw_outputs",
    # outcomes
    "ImportReport": "mlpred_cli.outcomes.candle_files",
    "import_candles": "mlpred_cli.outcomes.candle_files",
    "read_candle_file": "mlpred_cli.outcomes.candle_files",
    "BackfillReport": "mlpred_cli.outcomes.backfill",
    "backfill_actuals": "mlpred_cli.outcomes.backfill",
    "RollupRebuildReport": "mlpred_cli.outcomes.rollups",
    "rebuild_rollups": "mlpred_cli.outcomes.rollups",
    # history
    "ArchiveReport": "mlpred_cli.history.archive",
    "RestoreReport": "mlpred_cli.history.archive",
    "archive_predictions": "mlpred_cli.history.archive",
    "restore_archive": "mlpred_cli.history.archive",
    "read_archived_predictions": "mlpred_cli.history.archived_rows",
    "PartitionReport": "mlpred_cli.history.partitioning",
    "partition_database": "mlpred_cli.history.partitioning",
    "ensure_partitions_for": "mlpred_cli.history.partitioning",
    "partitions_of": "mlpred_cli.history.partitioning",
    # analysis
    "AnalysisReport": "mlpred_cli.analysis.report",
    "accuracy_table": "mlpred_cli.analysis.prediction_views",
    "analyze": "mlpred_cli.analysis.prediction_views",
    "export_predictions": "mlpred_cli.analysis.prediction_views",
    "high_confidence": "mlpred_cli.analysis.prediction_views",
    "load_predictions": "mlpred_cli.analysis.prediction_views",
    "recent_predictions": "mlpred_cli.analysis.prediction_views",
    # models
    "ModelComparison": "mlpred_cli.analysis.compare",
    "compare_models": "mlpred_cli.render.model_views",
    "ImportanceResult": "mlpred_cli.analysis.feature_importance",
    "ImportanceView": "mlpred_cli.analysis.feature_importance",
    "compute_feature_importance": "mlpred_cli.analysis.feature_importance",
    "compute_importance": "mlpred_cli.analysis.importance_methods",
    "overlap_proportion": "mlpred_cli.analysis.overlap",
    "show_feature_importance": "mlpred_cli.render.model_views",
    # monitor
    "run_check": "mlpred_cli.monitor.check",
    "CheckReport": "mlpred_cli.monitor.results",
    "CheckResult": "mlpred_cli.monitor.results",
    "Severity": "mlpred_cli.monitor.results",
    "MonitorSettings": "mlpred_cli.monitor.settings",
    "list_alerts": "mlpred_cli.monitor.alert_state",
    "report_content": "mlpred_cli.report.content",
    "render_html": "mlpred_cli.report.html",
    "write_report": "mlpred_cli.report.files",
    "dashboard_view": "mlpred_cli.web.live",
    "serve": "mlpred_cli.web.server",
    # admin
    "DatabaseSource": "mlpred_cli.store.source",
    "engine_for": "mlpred_cli.store.source",
    "init_database": "mlpred_cli.store.source",
    "ConfigError": "mlpred_cli.errors",
    "DatabaseError": "mlpred_cli.errors",
    "DatabaseUnavailable": "mlpred_cli.errors",
    "InputError": "mlpred_cli.errors",
    "LoggerClosed": "mlpred_cli.errors",
    "MlpredError": "mlpred_cli.errors",
    "NotEnoughData": "mlpred_cli.errors",
    "RowRejected": "mlpred_cli.errors",
    "SchemaNotReady": "mlpred_cli.errors",
}

__all__ = [
    "__version__",
    # log
    "MLPredictionLogger",
    "ml_prediction_logger",
    "LogTestResult",
    "run_log_test",
    "CloseReport",
    "ReplayResult",
    "SpoolStatus",
    "replay_spool",
    "spool_status",
    "export_spool",
    "feature_hash",
    "format_feature_hash",
    "MarketArrays",
    "compute_indicators",
    "extract_market_data",
    "interpret_raw_outputs",
    # outcomes
    "ImportReport",
    "import_candles",
    "read_candle_file",
    "BackfillReport",
    "backfill_actuals",
    "RollupRebuildReport",
    "rebuild_rollups",
    # history
    "ArchiveReport",
    "RestoreReport",
    "archive_predictions",
    "restore_archive",
    "read_archived_predictions",
    "PartitionReport",
    "partition_database",
    "ensure_partitions_for",
    "partitions_of",
    # analysis
    "AnalysisReport",
    "accuracy_table",
    "analyze",
    "export_predictions",
    "high_confidence",
    "load_predictions",
    "recent_predictions",
    # models
    "ModelComparison",
    "compare_models",
    "ImportanceResult",
    "ImportanceView",
    "compute_feature_importance",
    "compute_importance",
    "overlap_proportion",
    "show_feature_importance",
    # monitor
    "run_check",
    "CheckReport",
    "CheckResult",
    "Severity",
    "MonitorSettings",
    "list_alerts",
    # report
    "report_content",
    "render_html",
    "write_report",
    # dashboard
    "dashboard_view",
    "serve",
    # admin
    "DatabaseSource",
    "engine_for",
    "init_database",
    "ConfigError",
    "DatabaseError",
    "DatabaseUnavailable",
    "InputError",
    "LoggerClosed",
    "MlpredError",
    "NotEnoughData",
    "RowRejected",
    "SchemaNotReady",
]

if TYPE_CHECKING:
    from mlpred_cli.analysis.compare import ModelComparison
    from mlpred_cli.analysis.feature_importance import (
        ImportanceResult,
        ImportanceView,
        compute_feature_importance,
    )
    from mlpred_cli.analysis.importance_methods import compute_importance
    from mlpred_cli.analysis.overlap import overlap_proportion
    from mlpred_cli.analysis.prediction_views import (
        accuracy_table,
        analyze,
        export_predictions,
        high_confidence,
        load_predictions,
        recent_predictions,
    )
    from mlpred_cli.analysis.report import AnalysisReport
    from mlpred_cli.capture.logger import MLPredictionLogger, ml_prediction_logger
    from mlpred_cli.capture.self_check import LogTestResult, run_log_test
    from mlpred_cli.capture.spool_replay import (
        ReplayResult,
        SpoolStatus,
        export_spool,
        replay_spool,
        spool_status,
    )
    from mlpred_cli.capture.writer_stats import CloseReport
    from mlpred_cli.derive.feature_stats import feature_hash, format_feature_hash
    from mlpred_cli.derive.indicators import MarketArrays, compute_indicators, extract_market_data
    from mlpred_cli.derive.raw_outputs import interpret_raw_outputs
    from mlpred_cli.errors import (
        ConfigError,
        DatabaseError,
        DatabaseUnavailable,
        InputError,
        LoggerClosed,
        MlpredError,
        NotEnoughData,
        RowRejected,
        SchemaNotReady,
    )
    from mlpred_cli.history.archive import (
        ArchiveReport,
        RestoreReport,
        archive_predictions,
        restore_archive,
    )
    from mlpred_cli.history.archived_rows import read_archived_predictions
    from mlpred_cli.history.partitioning import (
        PartitionReport,
        ensure_partitions_for,
        partition_database,
        partitions_of,
    )
    from mlpred_cli.monitor.alert_state import list_alerts
    from mlpred_cli.monitor.check import run_check
    from mlpred_cli.monitor.results import CheckReport, CheckResult, Severity
    from mlpred_cli.monitor.settings import MonitorSettings
    from mlpred_cli.outcomes.backfill import BackfillReport, backfill_actuals
    from mlpred_cli.outcomes.candle_files import ImportReport, import_candles, read_candle_file
    from mlpred_cli.outcomes.rollups import RollupRebuildReport, rebuild_rollups
    from mlpred_cli.render.model_views import compare_models, show_feature_importance
    from mlpred_cli.report.content import report_content
    from mlpred_cli.report.files import write_report
    from mlpred_cli.report.html import render_html
    from mlpred_cli.store.source import DatabaseSource, engine_for, init_database
    from mlpred_cli.web.live import dashboard_view
    from mlpred_cli.web.server import serve


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mlpred_cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
