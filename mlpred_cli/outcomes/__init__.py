"""What actually happened after each prediction.

``candle_files``: import OHLCV candle files (CSV or Parquet) into ``market_candles``
(``import_candles``), chunk by chunk: ``candle_chunks`` reads and finds the columns,
``candle_rules`` judges each row and the declared or inferred interval. ``backfill``: fill
the actual returns, directions, accuracy and return errors of predictions whose horizons
have passed (``backfill_actuals``).
Both decide what to do and in what order; their SQL is in ``store/candle_writes.py``,
``store/outcome_updates.py`` and ``store/locks.py``.
"""
