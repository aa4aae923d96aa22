"""Pure functions over prediction frames and aggregates -> result dataclasses.

No SQL here: ``store`` reads (``store.report_reads``, ``store.prediction_reads``,
``store.comparison_reads``, ``store.importance_reads``) and these modules compose. The thin
entry points that take a ``DatabaseSource`` (``prediction_views``, ``compare.compare_versions``,
``feature_importance.compute_feature_importance`` / ``importance_snapshot_view``) only call
store reads and the pure functions. Text (verdicts, sparklines) is ``render``'s.
"""
