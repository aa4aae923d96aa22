"""mlpred: log every prediction of an ML trading model and measure how good it really is."""

from mlpred_cli.__about__ import __version__
from mlpred_cli.analysis import (
    AnalysisReport,
    accuracy_table,
    analyze,
    export_predictions,
    high_confidence,
    load_predictions,
    recent_predictions,
)
from mlpred_cli.analysis.compare import ModelComparison, compare_models
from mlpred_cli.analysis.feature_importance import (
    ImportanceResult,
    ImportanceView,
    compute_feature_importance,
    show_feature_importance,
)
from mlpred_cli.capture.logger import MLPredictionLogger, ml_prediction_logger
from mlpred_cli.capture.self_check import LogTestResult, run_log_test
from mlpred_cli.capture.spool_replay import ReplayResult, replay_spool, spool_status
from mlpred_cli.derive.feature_stats import feature_hash, format_feature_hash
from mlpred_cli.derive.indicators import MarketArrays, compute_indicators, extract_market_data
from mlpred_cli.derive.raw_outputs import interpret_raw_outputs
from mlpred_cli.errors import (
    ConfigError,
    DatabaseUnavailable,
    InputError,
    MlpredError,
    NotEnoughData,
    SchemaNotReady,
)
from mlpred_cli.outcomes.backfill import BackfillReport, backfill_actuals
from mlpred_cli.outcomes.candle_files import ImportReport, import_candles, read_candle_file

__all__ = [
    "AnalysisReport",
    "BackfillReport",
    "ConfigError",
    "DatabaseUnavailable",
    "ImportReport",
    "ImportanceResult",
    "ImportanceView",
    "InputError",
    "LogTestResult",
    "MLPredictionLogger",
    "MarketArrays",
    "MlpredError",
    "ModelComparison",
    "NotEnoughData",
    "ReplayResult",
    "SchemaNotReady",
    "__version__",
    "accuracy_table",
    "analyze",
    "backfill_actuals",
    "compare_models",
    "compute_feature_importance",
    "compute_indicators",
    "export_predictions",
    "extract_market_data",
    "feature_hash",
    "format_feature_hash",
    "high_confidence",
    "import_candles",
    "interpret_raw_outputs",
    "load_predictions",
    "ml_prediction_logger",
    "read_candle_file",
    "recent_predictions",
    "replay_spool",
    "run_log_test",
    "show_feature_importance",
    "spool_status",
]
