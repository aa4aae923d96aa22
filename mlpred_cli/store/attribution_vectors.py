"""Loading stored feature attributions in bulk (e.g. for SHAP feature importance).

Attributions come from ``feature_attributions``: the JSON list a bot passed to
``log_prediction(..., attributions=...)``, aligned with the feature vector, with ``null``
where a value was not given. As in ``store.feature_vectors``, each value is turned into JSON
text in the database, streamed out (COPY on PostgreSQL) and parsed in one bulk pass.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from mlpred_cli.config import HORIZONS
from mlpred_cli.errors import InputError
from mlpred_cli.store.database import is_sqlite
from mlpred_cli.store.feature_vectors import (
    SQLITE_BLOCK_ROWS,
    WORKER_THREADS,
    copy_text_blocks,
    feature_vector_json,
    feature_vector_length,
    is_json_array,
    one_line_json,
)
from mlpred_cli.store.prediction_queries import PredictionFilter
from mlpred_cli.store.tables import predictions_table

P = predictions_table.c

#: Scalar columns read before the vector on each line: timestamp, predicted, actual return.
_LEADING = 3


# ---------------------------------------------------------------- loading


@dataclass(frozen=True)
class AttributionMatrix:
    """Attribution vectors of predictions, with what each prediction said and what happened.

    ``attributions`` is float64 of shape (features, predictions) - one row per feature,
    column ``j`` the vector of prediction ``j`` - with NaN for null/non-finite values.
    ``timestamps`` are the predictions' ``timestamp`` (int64 epoch milliseconds, UTC);
    ``predicted_returns`` / ``actual_returns`` are ``predicted_return_<horizon>`` /
    ``actual_return_<horizon>`` as fractions (0.01 = +1 %), NaN where null (not matured).
    ``skipped`` counts predictions with attributions that were left out because their
    vector had another length than ``width``.
    """

    attributions: np.ndarray
    timestamps: np.ndarray
    predicted_returns: np.ndarray
    actual_returns: np.ndarray
    width: int
    skipped: int = 0

    @property
    def count(self) -> int:
        """Number of predictions (columns of ``attributions``)."""
        return int(self.timestamps.size)


def _check_horizon(horizon: str) -> None:
    if horizon not in HORIZONS:
        raise InputError(f"unknown horizon {horizon!r}; one of {', '.join(HORIZONS)}")


def _candidates(
    selection: PredictionFilter, horizon: str, matured_only: bool
) -> list[ColumnElement[bool]]:
    clauses = [*selection.clauses(), P.feature_attributions.isnot(None)]
    if matured_only:
        clauses.append(P[f"actual_return_{horizon}"].isnot(None))
    return clauses


def attribution_lengths(
    conn: Connection,
    selection: PredictionFilter,
    horizon: str = HORIZONS[0],
    *,
    matured_only: bool = False,
) -> dict[int, int]:
    """Attribution-vector length -> number of the selection's predictions with a vector of
    that length (only those with ``actual_return_<horizon>`` when ``matured_only``)."""
    _check_horizon(horizon)
    column = P.feature_attributions
    length = feature_vector_length(column).label("length")
    statement = (
        sa.select(length, sa.func.count().label("count"))
        .where(*_candidates(selection, horizon, matured_only), is_json_array(column))
        .group_by(length)
    )
    return {int(k): int(v) for k, v in conn.execute(statement).all() if k is not None}


def _vector_select(
    selection: PredictionFilter, horizon: str, width: int, matured_only: bool
) -> sa.Select[Any]:
    column = P.feature_attributions
    return (
        sa.select(
            P.timestamp,
            P[f"predicted_return_{horizon}"],
            P[f"actual_return_{horizon}"],
            feature_vector_json(column),
        )
        .where(
            *_candidates(selection, horizon, matured_only),
            is_json_array(column),
            feature_vector_length(column) == width,
        )
        .order_by(P.timestamp, P.id)
    )


def _scalar(value: Any) -> str:
    return "null" if value is None else repr(value)


def _blocks_sqlite(conn: Connection, statement: sa.Select[Any]) -> Iterator[bytes]:
    result = conn.execute(statement)
    while rows := result.fetchmany(SQLITE_BLOCK_ROWS):
        yield "".join(
            f"{moment}\t{_scalar(predicted)}\t{_scalar(actual)}\t{one_line_json(vector)}\n"
            for moment, predicted, actual, vector in rows
        ).encode()


def parse_attribution_lines(lines: bytes, width: int) -> np.ndarray:
    """Parse ``timestamp<TAB>predicted<TAB>actual<TAB>[v0, ...]`` lines into a float64 array
    (n, 3 + width). JSON ``null``, SQL ``\\N`` and non-finite values become NaN."""
    if not lines.strip():
        return np.zeros((0, _LEADING + width))
    flat = lines.replace(b"\t", b",").replace(b"[", b"").replace(b"]", b"")
    frame = pd.read_csv(
        io.BytesIO(flat),
        header=None,
        names=range(_LEADING + width),
        skipinitialspace=True,
        na_values=["null", "\\N"],
        keep_default_na=False,
        dtype=np.float64,
        engine="c",
    )
    values = frame.to_numpy(dtype=np.float64, copy=True)
    values[~np.isfinite(values)] = np.nan
    return values


def _read_width(
    conn: Connection, selection: PredictionFilter, horizon: str, width: int, matured_only: bool
) -> np.ndarray:
    statement = _vector_select(selection, horizon, width, matured_only)
    blocks = (
        _blocks_sqlite(conn, statement) if is_sqlite(conn) else copy_text_blocks(conn, statement)
    )
    with ThreadPoolExecutor(WORKER_THREADS) as pool:
        parts = [
            part.result()
            for part in [pool.submit(parse_attribution_lines, block, width) for block in blocks]
        ]
    if not parts:
        return np.zeros((0, _LEADING + width))
    return np.concatenate(parts)


def load_attribution_matrix(
    conn: Connection,
    selection: PredictionFilter,
    horizon: str,
    width: int | None = None,
    *,
    matured_only: bool = False,
) -> AttributionMatrix:
    """The attribution vectors of the selection's predictions that have them, oldest first,
    with their timestamps and ``predicted_return_<horizon>`` / ``actual_return_<horizon>``.

    ``width`` fixes the vector length (default: the most common one; the longer on a tie);
    vectors of another length are skipped and counted in ``skipped``. ``matured_only``
    keeps only predictions whose ``actual_return_<horizon>`` is known. No prediction with
    attributions: an empty matrix of shape (width or 0, 0). Raises InputError for an
    unknown horizon or a width < 1.
    """
    _check_horizon(horizon)
    if width is not None and width < 1:
        raise InputError(f"width must be >= 1, got {width}")
    lengths = attribution_lengths(conn, selection, horizon, matured_only=matured_only)
    total = sum(lengths.values())
    chosen = width
    if chosen is None and lengths:
        chosen = max(lengths, key=lambda k: (lengths[k], k))
    if chosen is None or chosen not in lengths:
        size = chosen or 0
        return AttributionMatrix(
            np.zeros((size, 0)), np.zeros(0, np.int64), np.zeros(0), np.zeros(0), size, total
        )
    values = _read_width(conn, selection, horizon, chosen, matured_only)
    return AttributionMatrix(
        attributions=values[:, _LEADING:].T.copy(),
        timestamps=values[:, 0].astype(np.int64),
        predicted_returns=values[:, 1].copy(),
        actual_returns=values[:, 2].copy(),
        width=chosen,
        skipped=total - values.shape[0],
    )
