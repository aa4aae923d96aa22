"""Analysis of logged predictions: metric functions and the notebook API."""

from mlpred_cli.analysis.prediction_views import (
    accuracy_table,
    analyze,
    export_predictions,
    high_confidence,
    load_predictions,
    recent_predictions,
)
from mlpred_cli.analysis.report import AnalysisReport

__all__ = [
    "AnalysisReport",
    "accuracy_table",
    "analyze",
    "export_predictions",
    "high_confidence",
    "load_predictions",
    "recent_predictions",
]
