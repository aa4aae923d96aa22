"""Derive: numpy computations that turn a prediction's inputs into ``ml_predictions`` columns.

Feature statistics and the feature hash (``feature_stats``), indicators from OHLCV candles
(``indicators``, ``market_time``), the interpretation of the model's raw outputs
(``raw_outputs``), feature-importance snapshots (``importance_snapshot``) and the conversion of
arrays to database values (``finite_values``). Pure functions over arrays: no I/O, and of the
store only the column names (``store.prediction_row``).
"""
