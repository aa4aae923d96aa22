"""mlpred: log every prediction of an ML trading model and measure how good it really is."""

from mlpred_cli.__about__ import __version__
from mlpred_cli.errors import (
    ConfigError,
    DatabaseUnavailable,
    InputError,
    MlpredError,
    SchemaNotReady,
)

__all__ = [
    "ConfigError",
    "DatabaseUnavailable",
    "InputError",
    "MlpredError",
    "SchemaNotReady",
    "__version__",
]
