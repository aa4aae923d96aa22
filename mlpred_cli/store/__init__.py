"""Store: the only package that speaks SQL (internal; the public API is ``mlpred_cli``).

``source`` resolves a ``DatabaseSource``; ``database`` parses URLs and makes engines;
``migrations`` runs Alembic; ``tables`` and ``column_types`` define the schema and
``prediction_row`` the columns the writer fills; ``prediction_writes``, ``candle_writes``,
``importance_snapshots`` and ``outcome_updates`` write; ``prediction_queries`` (the shared
selection and aggregates), ``prediction_reads``, ``report_reads``, ``comparison_reads``,
``importance_reads`` and ``feature_vectors`` read; ``locks`` keeps one backfill at a time;
``driver_errors`` translates driver errors into ``mlpred_cli.errors``.
"""
