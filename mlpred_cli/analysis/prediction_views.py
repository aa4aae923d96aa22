"""The analysis API a notebook (and the CLI) calls: each function takes a database URL or an
engine plus the selection options, and returns a DataFrame or an ``AnalysisReport``.

Selection options everywhere: ``symbol``, ``model_version``, and either ``days`` (the last N
days up to now) or ``since``/``until`` (ISO 8601 text or datetimes; naive means UTC; since
inclusive, until exclusive).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from mlpred_cli.analysis.accuracy import accuracy_columns, add_accuracy_columns
from mlpred_cli.analysis.report import AnalysisReport, build_report
from mlpred_cli.config import DEFAULT_ANALYZE_DAYS, HORIZONS
from mlpred_cli.errors import InputError
from mlpred_cli.store.database import connection_errors, create_engine
from mlpred_cli.store.migrations import require_schema
from mlpred_cli.store.prediction_queries import (
    accuracy_groups,
    check_horizons,
    latest_predictions,
    make_filter,
    read_frame,
    select_predictions,
)

DatabaseSource = str | Engine | None
TimeValue = str | datetime | None

#: The ``ml_predictions`` columns ``high_confidence`` and ``recent_predictions`` return.
PREDICTION_VIEW_COLUMNS: tuple[str, ...] = (
    "prediction_id",
    "symbol",
    "datetime",
    "model_version",
    "signal_type",
    "signal_confidence",
    "signal_timeframe",
    "close_price",
    *(
        f"{stem}_{h}{suffix}"
        for h in HORIZONS
        for stem, suffix in (
            ("predicted_return", ""),
            ("direction", ""),
            ("direction", "_confidence"),
            ("actual_return", ""),
            ("actual_direction", ""),
            ("accuracy", ""),
        )
    ),
    "actuals_filled_at",
    "inference_time_ms",
)

EXPORT_SUFFIXES = (".csv", ".parquet")


@contextmanager
def connect(source: DatabaseSource) -> Iterator[Engine]:
    """An engine for a URL (``None``: the configured default), checked to be migrated; an
    engine passed in is used as is and not disposed."""
    if isinstance(source, Engine):
        yield source
        return
    engine = create_engine(source)
    try:
        require_schema(engine)
        yield engine
    finally:
        engine.dispose()


def _positive_int(value: int, option: str) -> int:
    if value < 1:
        raise InputError(f"{option} must be at least 1, got {value}")
    return value


def load_predictions(
    database_url: DatabaseSource = None,
    *,
    symbol: str | None = None,
    model_version: str | None = None,
    days: float | None = None,
    since: TimeValue = None,
    until: TimeValue = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Predictions of the selection, oldest first, one row each.

    ``columns`` picks ``ml_predictions`` columns (default: all but the JSON payloads).
    ``datetime`` columns are ``datetime64[UTC]``; ``prediction_id`` is text; unknown
    values are NaN/None.
    """
    selection = make_filter(
        symbol=symbol, model_version=model_version, days=days, since=since, until=until
    )
    with connect(database_url) as engine, connection_errors(engine.url):
        return read_frame(engine, select_predictions(selection, columns))


def accuracy_table(
    database_url: DatabaseSource = None,
    *,
    by: str = "symbol",
    horizons: Sequence[str] | None = None,
    min_count: int = 0,
    symbol: str | None = None,
    model_version: str | None = None,
    days: float | None = None,
    since: TimeValue = None,
    until: TimeValue = None,
) -> pd.DataFrame:
    """Accuracy per group (``by``: symbol, model_version, signal_type or day = UTC date).

    Columns: ``by``, ``total`` (predictions), ``n_outcomes`` (rows with any outcome),
    ``avg_confidence`` (mean signal_confidence over all rows), and per horizon ``n_h`` (rows
    with an actual direction), ``accuracy_h`` (share of those with direction = actual
    direction) and its 95 % Wilson interval ``accuracy_h_low``/``accuracy_h_high`` (None
    when ``n_h`` is 0). Groups with fewer than ``min_count`` predictions are left out;
    ordered by total, largest first.
    """
    chosen = check_horizons(horizons)
    if min_count < 0:
        raise InputError(f"--min-count must not be negative, got {min_count}")
    selection = make_filter(
        symbol=symbol, model_version=model_version, days=days, since=since, until=until
    )
    statement = accuracy_groups(selection, by, chosen, min_count)
    with connect(database_url) as engine, connection_errors(engine.url):
        counts = read_frame(engine, statement)
    return add_accuracy_columns(counts, chosen)[accuracy_columns(by, chosen)]


def analyze(
    database_url: DatabaseSource = None,
    *,
    symbol: str | None = None,
    model_version: str | None = None,
    days: float | None = None,
    since: TimeValue = None,
    until: TimeValue = None,
    export: str | Path | None = None,
) -> AnalysisReport:
    """The full analysis of a selection (default: the last ``DEFAULT_ANALYZE_DAYS`` days).

    See ``AnalysisReport``; ``report.empty`` is True when nothing matched, and
    ``report.to_dict()`` is the JSON document of ``mlpred analyze --format json``.
    With ``export`` (a .csv or .parquet path) the selection's rows are also written there.
    """
    target = None if export is None else check_export_path(Path(export))
    if days is None and since is None and until is None:
        days = DEFAULT_ANALYZE_DAYS
    selection = make_filter(
        symbol=symbol, model_version=model_version, days=days, since=since, until=until
    )
    with (
        connect(database_url) as engine,
        connection_errors(engine.url),
        engine.connect() as conn,
    ):
        report = build_report(conn, selection)
        if target is not None:
            write_frame(read_frame(conn, select_predictions(selection)), target)
    return report


def high_confidence(
    database_url: DatabaseSource = None,
    *,
    min_confidence: float = 0.8,
    limit: int = 100,
    include_neutral: bool = False,
    symbol: str | None = None,
    model_version: str | None = None,
    days: float | None = None,
    since: TimeValue = None,
    until: TimeValue = None,
) -> pd.DataFrame:
    """Newest predictions with ``signal_confidence > min_confidence`` (NEUTRAL signals only
    with ``include_neutral``), at most ``limit``, with their realized outcomes where known
    (None/NaN until backfilled). Columns: ``PREDICTION_VIEW_COLUMNS``."""
    if not 0.0 <= min_confidence <= 1.0:
        raise InputError(f"--min-confidence must be within [0, 1], got {min_confidence:g}")
    selection = make_filter(
        symbol=symbol, model_version=model_version, days=days, since=since, until=until
    )
    statement = latest_predictions(
        selection,
        PREDICTION_VIEW_COLUMNS,
        limit=_positive_int(limit, "--limit"),
        min_confidence=min_confidence,
        include_neutral=include_neutral,
    )
    with connect(database_url) as engine, connection_errors(engine.url):
        return read_frame(engine, statement)


def recent_predictions(
    database_url: DatabaseSource = None,
    *,
    hours: float | None = None,
    limit: int = 50,
    symbol: str | None = None,
    model_version: str | None = None,
    days: float | None = None,
    since: TimeValue = None,
    until: TimeValue = None,
) -> pd.DataFrame:
    """The newest predictions of the last ``hours`` (default 1 when no other window is
    given), newest first, at most ``limit``. Columns: ``PREDICTION_VIEW_COLUMNS``."""
    if hours is None and days is None and since is None and until is None:
        hours = 1.0
    selection = make_filter(
        symbol=symbol,
        model_version=model_version,
        days=days,
        hours=hours,
        since=since,
        until=until,
    )
    statement = latest_predictions(
        selection, PREDICTION_VIEW_COLUMNS, limit=_positive_int(limit, "--limit")
    )
    with connect(database_url) as engine, connection_errors(engine.url):
        return read_frame(engine, statement)


def check_export_path(path: Path) -> Path:
    """Raise ``InputError`` unless ``path`` ends in .csv or .parquet and its folder exists."""
    if path.suffix.lower() not in EXPORT_SUFFIXES:
        raise InputError(f"--export: {path} must end in .csv or .parquet")
    if not path.parent.resolve().is_dir():
        raise InputError(f"--export: folder {path.parent} does not exist")
    return path


def export_predictions(
    path: str | Path,
    database_url: DatabaseSource = None,
    *,
    symbol: str | None = None,
    model_version: str | None = None,
    days: float | None = None,
    since: TimeValue = None,
    until: TimeValue = None,
) -> int:
    """Write the selection's predictions (all columns but the JSON payloads) to a .csv or
    .parquet file; times stay UTC. Returns the number of rows written."""
    target = check_export_path(Path(path))
    frame = load_predictions(
        database_url,
        symbol=symbol,
        model_version=model_version,
        days=days,
        since=since,
        until=until,
    )
    write_frame(frame, target)
    return len(frame)


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Write a frame as Parquet (``.parquet``) or CSV (anything else), without the index."""
    if path.suffix.lower() == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def frame_records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """DataFrame rows as dicts with ``None`` for NaN/NaT (for the JSON/CSV renderer)."""
    plain = frame.astype(object).where(frame.notna(), None)
    return [
        {str(key): value for key, value in record.items()} for record in plain.to_dict("records")
    ]
