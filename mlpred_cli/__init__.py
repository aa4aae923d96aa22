"""mlpred: log every prediction of an ML trading model and measure how good it really is."""

from mlpred_cli.__about__ import __version__
from mlpred_cli.backfill import BackfillReport, backfill_actuals
from mlpred_cli.candles import ImportReport, import_candles, read_candle_file
from mlpred_cli.errors import (
    ConfigError,
    DatabaseUnavailable,
    InputError,
    MlpredError,
    SchemaNotReady,
)

__all__ = [
    "BackfillReport",
    "ConfigError",
    "DatabaseUnavailable",
    "ImportReport",
    "InputError",
    "MlpredError",
    "SchemaNotReady",
    "__version__",
    "backfill_actuals",
    "import_candles",
    "read_candle_file",
]
