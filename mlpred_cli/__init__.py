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
from mlpred_cli.backfill import BackfillReport, backfill_actuals
from mlpred_cli.candles import ImportReport, import_candles, read_candle_file
from mlpred_cli.errors import (
    ConfigError,
    DatabaseUnavailable,
    InputError,
    MlpredError,
    SchemaNotReady,
)
from mlpred_cli.feature_importance import (
    ImportanceResult,
    ImportanceView,
    NotEnoughData,
    compute_feature_importance,
    show_feature_importance,
)
from mlpred_cli.features import feature_hash, format_feature_hash
from mlpred_cli.indicators import MarketArrays, compute_indicators, extract_market_data
from mlpred_cli.interpret import interpret_raw_outputs
from mlpred_cli.logger import MLPredictionLogger, ml_prediction_logger
from mlpred_cli.logtest import LogTestResult, run_log_test
from mlpred_cli.spool_ops import ReplayResult, replay_spool, spool_status

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
