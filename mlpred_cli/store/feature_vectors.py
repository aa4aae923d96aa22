"""Loading stored feature vectors in bulk for feature-importance scoring.

Feature vectors come from ``features_array`` (stored by the logger with
``store_features=True``): a JSON list, or a list of lists (a window) whose last row is the
vector. SQL functions compiled per dialect turn each into a 1-D JSON text in the database;
the texts are streamed out (COPY on PostgreSQL) and parsed in one bulk pass with numpy.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from mlpred_cli.errors import DatabaseUnavailable
from mlpred_cli.store.database import is_sqlite, mask_url
from mlpred_cli.store.prediction_queries import PredictionFilter
from mlpred_cli.store.tables import predictions_table

P = predictions_table.c


# ---------------------------------------------------------------- SQL: the feature vector


class detoasted_json(FunctionElement[Any]):  # noqa: N801  (SQL function naming)
    """``features_array`` read once: on PostgreSQL a type-preserving copy
    (``jsonb_strip_nulls`` keeps array nulls), so later uses do not fetch the TOASTed value
    again; on SQLite the JSON text itself."""

    inherit_cache = True


class feature_vector_json(FunctionElement[str]):  # noqa: N801
    """The JSON text of one feature vector (a window's last row)."""

    type = sa.String()
    inherit_cache = True


class feature_vector_length(FunctionElement[int]):  # noqa: N801
    """Number of features in the vector."""

    type = sa.Integer()
    inherit_cache = True


class is_json_array(FunctionElement[bool]):  # noqa: N801
    """True when the value is a JSON array (not JSON null, not an object)."""

    type = sa.Boolean()
    inherit_cache = True


def _column(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(next(iter(element.clauses)), **kw)


def _pg_vector(column: str) -> str:
    return (
        f"(CASE WHEN jsonb_typeof({column} -> 0) = 'array' THEN {column} -> -1 ELSE {column} END)"
    )


def _sqlite_vector(column: str) -> str:
    # The stored text as is (a window's last row re-serialised by json_extract).
    return (
        f"(CASE WHEN json_type({column}, '$[0]') = 'array' "
        f"THEN json_extract({column}, '$[#-1]') ELSE {column} END)"
    )


@compiles(detoasted_json, "postgresql")
def _detoasted_pg(element: detoasted_json, compiler: SQLCompiler, **kw: Any) -> str:
    return f"jsonb_strip_nulls({_column(element, compiler, **kw)})"


@compiles(detoasted_json)
def _detoasted_sqlite(element: detoasted_json, compiler: SQLCompiler, **kw: Any) -> str:
    return _column(element, compiler, **kw)


@compiles(feature_vector_json, "postgresql")
def _vector_json_pg(element: feature_vector_json, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{_pg_vector(_column(element, compiler, **kw))}::text"


@compiles(feature_vector_json)
def _vector_json_sqlite(element: feature_vector_json, compiler: SQLCompiler, **kw: Any) -> str:
    return _sqlite_vector(_column(element, compiler, **kw))


@compiles(feature_vector_length, "postgresql")
def _vector_length_pg(element: feature_vector_length, compiler: SQLCompiler, **kw: Any) -> str:
    return f"jsonb_array_length({_pg_vector(_column(element, compiler, **kw))})"


@compiles(feature_vector_length)
def _vector_length_sqlite(element: feature_vector_length, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_array_length({_sqlite_vector(_column(element, compiler, **kw))})"


@compiles(is_json_array, "postgresql")
def _is_array_pg(element: is_json_array, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(jsonb_typeof({_column(element, compiler, **kw)}) = 'array')"


@compiles(is_json_array)
def _is_array_sqlite(element: is_json_array, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(json_type({_column(element, compiler, **kw)}) = 'array')"


# ---------------------------------------------------------------- loading

#: Bytes of COPY output handed to one parser thread at a time.
PARSE_BLOCK_BYTES = 16 * 1024 * 1024
#: Rows per parse block on SQLite.
SQLITE_BLOCK_ROWS = 5_000
#: Threads that parse text and rank features (pandas and numpy release the GIL).
WORKER_THREADS = 2


@dataclass(frozen=True)
class FeatureMatrix:
    """Feature vectors and the realized return of each prediction.

    ``features`` is float64 of shape (features, predictions) - one row per feature - with
    NaN for null/non-finite values; ``actual_returns`` are fractions (0.01 = +1 %).
    ``skipped`` counts predictions with features and an outcome that were left out because
    their vector had another length.
    """

    features: np.ndarray
    actual_returns: np.ndarray
    skipped: int = 0


def _candidates(selection: PredictionFilter, horizon: str) -> list[ColumnElement[bool]]:
    return [
        *selection.clauses(),
        P.features_array.isnot(None),
        P[f"actual_return_{horizon}"].isnot(None),
    ]


def _width_hints(
    conn: Connection, selection: PredictionFilter, horizon: str
) -> tuple[int, int | None]:
    """(candidate predictions, most common ``features_count`` among them); cheap, since it
    does not read the JSON."""
    statement = (
        sa.select(P.features_count, sa.func.count().label("count"))
        .where(*_candidates(selection, horizon))
        .group_by(P.features_count)
    )
    counts = {k: int(v) for k, v in conn.execute(statement).all()}
    known = {int(k): v for k, v in counts.items() if k is not None}
    common = max(known, key=lambda k: (known[k], k)) if known else None
    return sum(counts.values()), common


def vector_lengths(conn: Connection, selection: PredictionFilter, horizon: str) -> dict[int, int]:
    """Feature-vector length -> number of predictions with that vector and an outcome (reads
    every JSON value; used when ``features_count`` does not describe the stored vectors)."""
    inner = (
        sa.select(detoasted_json(P.features_array).label("vector"))
        .where(*_candidates(selection, horizon))
        .offset(0)
        .subquery()
    )
    length = feature_vector_length(inner.c.vector).label("length")
    statement = (
        sa.select(length, sa.func.count().label("count"))
        .where(is_json_array(inner.c.vector))
        .group_by(length)
    )
    return {int(k): int(v) for k, v in conn.execute(statement).all() if k is not None}


def _vector_select(selection: PredictionFilter, horizon: str, width: int) -> sa.Select[Any]:
    # OFFSET 0 keeps the subquery, so PostgreSQL reads each JSON value once.
    inner = (
        sa.select(
            P[f"actual_return_{horizon}"].label("actual_return"),
            detoasted_json(P.features_array).label("vector"),
        )
        .where(*_candidates(selection, horizon))
        .offset(0)
        .subquery()
    )
    return sa.select(inner.c.actual_return, feature_vector_json(inner.c.vector)).where(
        is_json_array(inner.c.vector), feature_vector_length(inner.c.vector) == width
    )


def _copy_blocks_postgresql(conn: Connection, statement: sa.Select[Any]) -> Iterator[bytes]:
    """COPY the rows out as tab-separated text in blocks of whole lines (no Python object
    per row)."""
    compiled = statement.compile(dialect=conn.dialect)
    # Plain values (aware datetimes, text) that psycopg binds into the COPY statement itself.
    values = compiled.construct_params()
    raw = conn.connection.driver_connection
    if raw is None:  # a pooled connection that was invalidated under us
        raise DatabaseUnavailable(f"lost connection to {mask_url(conn.engine.url)}")
    pending: list[bytes] = []
    size = 0
    with raw.cursor() as cursor, cursor.copy(f"COPY ({compiled.string}) TO STDOUT", values) as copy:
        for chunk in copy:
            pending.append(bytes(chunk))
            size += len(chunk)
            if size >= PARSE_BLOCK_BYTES:
                block = b"".join(pending)
                cut = block.rfind(b"\n") + 1
                yield block[:cut]
                pending, size = [block[cut:]], len(block) - cut
    rest = b"".join(pending)
    if rest:
        yield rest


def _blocks_sqlite(conn: Connection, statement: sa.Select[Any]) -> Iterator[bytes]:
    """The rows as ``return<TAB>vector`` lines, in blocks (SQLite keeps reading while a
    worker parses the previous block)."""
    result = conn.execute(statement)
    while rows := result.fetchmany(SQLITE_BLOCK_ROWS):
        yield "".join(f"{actual!r}\t{_one_line(vector)}\n" for actual, vector in rows).encode()


def _one_line(vector: str) -> str:
    """Stored JSON text on one line: text with line breaks or tabs (written by hand, not by
    the logger) is re-serialised."""
    if "\n" in vector or "\t" in vector or "\r" in vector:
        return json.dumps(json.loads(vector))
    return vector


def parse_vectors(lines: bytes, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``return<TAB>[v0, v1, ...]`` lines into (returns, features (n, width)).

    JSON ``null`` and non-finite values become NaN. One C-level pass (pandas' CSV parser).
    """
    if not lines.strip():
        return np.zeros(0), np.zeros((0, width))
    flat = lines.replace(b"\t", b",").replace(b"[", b"").replace(b"]", b"")
    frame = pd.read_csv(
        io.BytesIO(flat),
        header=None,
        names=range(width + 1),
        skipinitialspace=True,
        na_values=["null"],
        dtype=np.float64,
        engine="c",
    )
    values = frame.to_numpy(dtype=np.float64, copy=True)
    values[~np.isfinite(values)] = np.nan
    return values[:, 0].copy(), values[:, 1:]


def _read_width(
    conn: Connection, selection: PredictionFilter, horizon: str, width: int
) -> tuple[np.ndarray, np.ndarray]:
    statement = _vector_select(selection, horizon, width)
    blocks = (
        _blocks_sqlite(conn, statement)
        if is_sqlite(conn)
        else _copy_blocks_postgresql(conn, statement)
    )
    # Blocks are parsed on worker threads while the database produces the next ones.
    with ThreadPoolExecutor(WORKER_THREADS) as pool:
        parts = [part.result() for part in [pool.submit(parse_vectors, b, width) for b in blocks]]
    if not parts:
        return np.zeros(0), np.zeros((width, 0))
    returns = np.concatenate([part[0] for part in parts])
    features = np.concatenate([part[1] for part in parts]).T.copy()
    return returns, features


def load_feature_matrix(
    conn: Connection,
    selection: PredictionFilter,
    horizon: str,
    width: int | None = None,
) -> FeatureMatrix:
    """The feature vectors and ``actual_return_<horizon>`` of the selection's predictions that
    have both. ``width`` fixes the vector length (default: the most common one); vectors of
    another length are skipped and counted."""
    candidates, hint = _width_hints(conn, selection, horizon)
    if candidates == 0:
        return FeatureMatrix(np.zeros((width or 0, 0)), np.zeros(0))
    chosen = width if width is not None else hint
    returns, features = (
        _read_width(conn, selection, horizon, chosen) if chosen else (np.zeros(0), None)
    )
    if width is None and returns.size * 2 < candidates:
        # features_count does not describe the stored vectors: find their real lengths.
        lengths = vector_lengths(conn, selection, horizon)
        if lengths:
            chosen = max(lengths, key=lambda k: (lengths[k], k))
            returns, features = _read_width(conn, selection, horizon, chosen)
    if features is None:
        features = np.zeros((chosen or 0, 0))
    finite = np.isfinite(returns)
    return FeatureMatrix(features[:, finite], returns[finite], candidates - int(finite.sum()))
