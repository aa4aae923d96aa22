"""Capture: logging predictions as they are made, without ever slowing the caller down.

``logger`` (``MLPredictionLogger``) validates and copies its input into a
``pending_prediction`` and appends it to the queue of the ``batch_writer`` thread, which builds
whole batches of rows (``prediction_rows``, with ``derive``'s statistics, indicators and
interpretation) and writes them through ``store``. What the database cannot take waits in the
``spool`` on disk (``spool_replay`` is the replay outside the logger); ``console_panel`` is the
writer's live panel on stderr; ``self_check`` (``mlpred log-test``) runs the whole path end to
end on ``synthetic_market`` data.
"""
