"""The analysis API a notebook (and the CLI) calls: each function takes a ``DatabaseSource``
(a URL, a ``pathlib.Path`` to a SQLite file, an engine, or None for the configured default)
plus the selection options, and returns a DataFrame or an ``AnalysisReport``. Thin entry
points: options are checked here, ``store`` reads, ``analysis`` composes.

Selection options everywhere: ``symbol``, ``model_version``, and either ``days`` (the last N
days up to now) or ``since``/``until`` (ISO 8601 text or datetimes; naive means UTC; since
inclusive, until exclusive).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd

from mlpred_cli import config
from mlpred_cli.analysis.accuracy import accuracy_columns, add_accuracy_columns
from mlpred_cli.analysis.overlap_figures import group_overlap_columns
from mlpred_cli.analysis.report import AnalysisReport, build_report
from mlpred_cli.analysis.rollup_figures import (
    ACCURACY_GROUPS,
    SIGNAL_ACCURACY_COLUMNS,
    accuracy_counts,
)
from mlpred_cli.config import DEFAULT_ANALYZE_DAYS, HORIZONS, check_horizons
from mlpred_cli.errors import InputError
from mlpred_cli.store.overlap_reads import read_accuracy_inputs
from mlpred_cli.store.prediction_queries import PredictionFilter, make_filter
from mlpred_cli.store.prediction_reads import read_latest_predictions, read_predictions
from mlpred_cli.store.report_reads import read_report_data
from mlpred_cli.store.rollup_columns import ACCURACY_INDEX_COLUMNS
from mlpred_cli.store.source import DatabaseSource

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
#: ``recent_predictions``' window when none is given.
RECENT_HOURS = 1.0


def _positive_int(value: int, name: str) -> int:
    if value < 1:
        raise InputError(f"{name} must be at least 1, got {value}")
    return value


def load_predictions(
    database: DatabaseSource = None,
    *,
    symbol: str | None = None,
    model_version: str | None = None,
    days: float | None = None,
    since: TimeValue = None,
    until: TimeValue = None,
    columns: Sequence[str] | None = None,
    archive: str | Path | None = None,
) -> pd.DataFrame:
    """Predictions of the selection, oldest first, one row each.

    ``columns`` picks ``ml_predictions`` columns (default: all but the JSON payloads).
    ``datetime`` columns are ``datetime64[UTC]``; ``prediction_id`` is text; unknown
    values are NaN/None. ``archive`` (the directory ``archive_predictions`` wrote to) adds
    the selection's archived rows, so a notebook sees one history; a row both archived and
    in the database (a restored day) appears once, from the database.
    """
    selection = make_filter(
        symbol=symbol, model_version=model_version, days=days, since=since, until=until
    )
    frame = read_predictions(database, selection, columns)
    if archive is None:
        return frame
    from mlpred_cli.history.archived_rows import read_archived_predictions

    wanted = list(columns) if columns is not None else list(frame.columns)
    key = [name for name in ("prediction_id",) if name not in wanted]
    archived = read_archived_predictions(Path(archive), selection, [*wanted, *key])
    if archived.empty:
        return frame
    parts = [part for part in (frame, archived[[*wanted, *key]]) if not part.empty]
    merged = pd.concat(parts, ignore_index=True)
    if "prediction_id" in merged.columns:
        in_database = set(frame["prediction_id"]) if "prediction_id" in frame else set()
        if not in_database and key:  # database rows did not carry the id: read it
            ids = read_predictions(database, selection, ["prediction_id"])["prediction_id"]
            in_database = set(ids)
        from_archive = len(frame)
        duplicate = merged.index >= from_archive
        duplicate &= merged["prediction_id"].isin(in_database).to_numpy()
        merged = merged[~duplicate]
    order = [name for name in ("datetime", "id") if name in merged.columns]
    if order:
        merged = merged.sort_values(order, kind="stable")
    return merged[wanted].reset_index(drop=True)


def accuracy_table(
    database: DatabaseSource = None,
    *,
    by: str = "symbol",
    horizons: Sequence[str] | None = None,
    min_count: int = 0,
    symbol: str | None = None,
    model_version: str | None = None,
    days: float | None = None,
    since: TimeValue = None,
    until: TimeValue = None,
    overlap: bool = True,
) -> pd.DataFrame:
    """Accuracy per group (``by``: symbol, model_version, signal_type or day = UTC date).

    Columns: ``by``, ``total`` (predictions), ``n_outcomes`` (rows with any outcome),
    ``avg_confidence`` (mean signal_confidence over all rows), and per horizon ``n_h`` (rows
    with an actual direction), ``accuracy_h`` (share of those with direction = actual
    direction) and its 95 % Wilson interval ``accuracy_h_low``/``accuracy_h_high`` (None
    when ``n_h`` is 0), which treats the rows as independent; and the interval corrected for
    overlapping outcome windows (``analysis.overlap``): ``accuracy_h_overlap_low`` /
    ``_high`` at the effective sample size ``n_h_effective``. The corrected figures need the
    raw rows: they are None with ``overlap=False``, above ``OVERLAP_MAX_ROWS`` rows with an
    outcome, and for groups whose rows are archived. Groups with fewer than ``min_count``
    predictions are left out;
    ordered by total, largest first (``day``: by date, oldest first). Whole days come from
    the daily rollups, the rest from raw rows (the same figures as counting raw rows).
    """
    chosen = check_horizons(horizons)
    if min_count < 0:
        raise InputError(f"min_count must not be negative, got {min_count}")
    selection = make_filter(
        symbol=symbol, model_version=model_version, days=days, since=since, until=until
    )
    if by not in ACCURACY_GROUPS:
        raise InputError(f"cannot group by {by!r}: use one of {', '.join(ACCURACY_GROUPS)}")
    columns = SIGNAL_ACCURACY_COLUMNS if by == "signal_type" else ACCURACY_INDEX_COLUMNS
    rollups, rows = read_accuracy_inputs(
        database, selection, by, columns, chosen, config.OVERLAP_MAX_ROWS if overlap else -1
    )
    counts = accuracy_counts(rollups.frame, by, chosen, min_count)
    table = group_overlap_columns(add_accuracy_columns(counts, chosen), rows, by, chosen)
    return table[accuracy_columns(by, chosen)]


def analyze(
    database: DatabaseSource = None,
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
    data = read_report_data(database, selection, with_rows=target is not None)
    report = build_report(data)
    if target is not None and data.rows is not None:
        write_frame(data.rows, target)
    return report


def high_confidence(
    database: DatabaseSource = None,
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
        raise InputError(f"min_confidence must be within [0, 1], got {min_confidence:g}")
    selection = make_filter(
        symbol=symbol, model_version=model_version, days=days, since=since, until=until
    )
    return read_latest_predictions(
        database,
        selection,
        PREDICTION_VIEW_COLUMNS,
        limit=_positive_int(limit, "limit"),
        min_confidence=min_confidence,
        include_neutral=include_neutral,
    )


def recent_predictions(
    database: DatabaseSource = None,
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
    selection = recent_selection(
        symbol=symbol, model_version=model_version, hours=hours, days=days, since=since,
        until=until,
    )  # fmt: skip
    return read_latest_predictions(
        database, selection, PREDICTION_VIEW_COLUMNS, limit=_positive_int(limit, "limit")
    )


def recent_selection(
    *,
    symbol: str | None = None,
    model_version: str | None = None,
    hours: float | None = None,
    days: float | None = None,
    since: TimeValue = None,
    until: TimeValue = None,
) -> PredictionFilter:
    """The selection of ``recent_predictions``: the last ``RECENT_HOURS`` when no window is
    given."""
    if hours is None and days is None and since is None and until is None:
        hours = RECENT_HOURS
    return make_filter(
        symbol=symbol, model_version=model_version, days=days, hours=hours, since=since,
        until=until,
    )  # fmt: skip


def describe_selection(
    *,
    symbol: str | None = None,
    model_version: str | None = None,
    days: float | None = None,
    since: TimeValue = None,
    until: TimeValue = None,
) -> str:
    """The wording of a selection (``for BTCUSDT in the last 7 days``), for the line that
    says it matched nothing. Raises ``InputError`` like the query would."""
    return make_filter(
        symbol=symbol, model_version=model_version, days=days, since=since, until=until
    ).describe()


def check_export_path(path: Path, name: str = "export") -> Path:
    """Raise ``InputError`` (labelled with the parameter ``name``) unless ``path`` ends in
    .csv or .parquet and its folder exists."""
    if path.suffix.lower() not in EXPORT_SUFFIXES:
        raise InputError(f"{name}: {path} must end in .csv or .parquet")
    if not path.parent.resolve().is_dir():
        raise InputError(f"{name}: folder {path.parent} does not exist")
    return path


def export_predictions(
    path: str | Path,
    database: DatabaseSource = None,
    *,
    symbol: str | None = None,
    model_version: str | None = None,
    days: float | None = None,
    since: TimeValue = None,
    until: TimeValue = None,
) -> int:
    """Write the selection's predictions (all columns but the JSON payloads) to a .csv or
    .parquet file; times stay UTC. Returns the number of rows written."""
    target = check_export_path(Path(path), "path")
    frame = load_predictions(
        database,
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
