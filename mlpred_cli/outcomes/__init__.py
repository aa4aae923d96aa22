"""What actually happened after each prediction.

``candle_files``: read and validate OHLCV candle files (CSV or Parquet) and upsert them into
``market_candles`` (``import_candles``). ``backfill``: fill the actual returns, directions,
accuracy and return errors of predictions whose horizons have passed (``backfill_actuals``).
Both decide what to do and in what order; their SQL is in ``store/candle_writes.py``,
``store/outcome_updates.py`` and ``store/locks.py``.
"""
