"""Loading stored feature vectors in bulk for feature-importance scoring.

Feature vectors come from ``features_array`` (stored by the logger with
``store_features=True``): a JSON list, or a list of lists (a window) whose last row is the
vector. SQL functions compiled per dialect turn each into a 1-D JSON text in the database;
the texts are streamed out (COPY on PostgreSQL) and parsed in one bulk pass with numpy. Each
line carries the row's outcome, prediction, epoch-ms time and (hex-encoded, so no separator
can appear in it) symbol ahead of the vector.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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


class symbol_hex(FunctionElement[str]):  # noqa: N801
    """The symbol's UTF-8 bytes as hex text (upper case on SQLite, lower on PostgreSQL)."""

    type = sa.String()
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


@compiles(symbol_hex, "postgresql")
def _symbol_hex_pg(element: symbol_hex, compiler: SQLCompiler, **kw: Any) -> str:
    return f"encode(convert_to({_column(element, compiler, **kw)}, 'UTF8'), 'hex')"


@compiles(symbol_hex)
def _symbol_hex_sqlite(element: symbol_hex, compiler: SQLCompiler, **kw: Any) -> str:
    return f"hex({_column(element, compiler, **kw)})"


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


#: Scalar columns ahead of the vector on each line: outcome, prediction, time, symbol.
LEADING_COLUMNS = 4


def _empty() -> np.ndarray:
    return np.zeros(0)


@dataclass(frozen=True)
class FeatureMatrix:
    """Feature vectors and the realized return of each prediction.

    ``features`` is float64 of shape (features, predictions) - one row per feature - with
    NaN for null/non-finite values; ``actual_returns`` are fractions (0.01 = +1 %).
    ``skipped`` counts predictions with features and an outcome that were left out because
    their vector had another length. Per prediction (same order as the columns of
    ``features``): ``times`` its reference time as float seconds since the Unix epoch (UTC,
    from ``timestamp``), ``symbols`` its symbol (str array), ``predicted_returns`` its
    ``predicted_return_<horizon>`` (NaN when null). Left out, these three are filled with
    NaN / "" (NaN / "" / NaN) for every prediction.
    """

    features: np.ndarray
    actual_returns: np.ndarray
    skipped: int = 0
    times: np.ndarray = field(default_factory=_empty)
    symbols: np.ndarray = field(default_factory=_empty)
    predicted_returns: np.ndarray = field(default_factory=_empty)

    def __post_init__(self) -> None:
        n = self.actual_returns.size
        if self.times.size != n:
            object.__setattr__(self, "times", np.full(n, np.nan))
        if self.symbols.size != n:
            object.__setattr__(self, "symbols", np.full(n, "", dtype=object).astype(str))
        if self.predicted_returns.size != n:
            object.__setattr__(self, "predicted_returns", np.full(n, np.nan))


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
            P[f"predicted_return_{horizon}"].label("predicted_return"),
            P.timestamp.label("timestamp"),
            symbol_hex(P.symbol).label("symbol"),
            detoasted_json(P.features_array).label("vector"),
        )
        .where(*_candidates(selection, horizon))
        .offset(0)
        .subquery()
    )
    return sa.select(
        inner.c.actual_return,
        inner.c.predicted_return,
        inner.c.timestamp,
        inner.c.symbol,
        feature_vector_json(inner.c.vector),
    ).where(is_json_array(inner.c.vector), feature_vector_length(inner.c.vector) == width)


def copy_text_blocks(conn: Connection, statement: sa.Select[Any]) -> Iterator[bytes]:
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
    """The rows as ``return<TAB>predicted<TAB>ms<TAB>symbol-hex<TAB>vector`` lines, in
    blocks (SQLite keeps reading while a worker parses the previous block)."""
    result = conn.execute(statement)
    while rows := result.fetchmany(SQLITE_BLOCK_ROWS):
        yield "".join(
            f"{actual!r}\t{'' if predicted is None else repr(predicted)}\t{ms}\t{symbol}\t"
            f"{one_line_json(vector)}\n"
            for actual, predicted, ms, symbol, vector in rows
        ).encode()


def one_line_json(vector: str) -> str:
    """Stored JSON text on one line: text with line breaks or tabs (written by hand, not by
    the logger) is re-serialised."""
    if "\n" in vector or "\t" in vector or "\r" in vector:
        return json.dumps(json.loads(vector))
    return vector


@dataclass(frozen=True)
class ParsedBlock:
    """One block of parsed lines: per row its outcome, prediction, epoch-ms time and hex
    symbol, and the vectors (rows, width)."""

    returns: np.ndarray
    predicted: np.ndarray
    milliseconds: np.ndarray
    symbol_hex: np.ndarray
    vectors: np.ndarray


def parse_vectors(lines: bytes, width: int) -> ParsedBlock:
    """Parse ``return<TAB>predicted<TAB>ms<TAB>symbol-hex<TAB>[v0, v1, ...]`` lines.

    JSON ``null``, an empty field, ``\\N`` (COPY's null) and non-finite values become NaN.
    One C-level pass (pandas' CSV parser).
    """
    if not lines.strip():
        nothing = np.zeros(0)
        return ParsedBlock(
            nothing, nothing, nothing, np.zeros(0, dtype=object), np.zeros((0, width))
        )
    flat = lines.replace(b"\t", b",").replace(b"[", b"").replace(b"]", b"")
    dtypes: dict[int, Any] = dict.fromkeys(range(width + LEADING_COLUMNS), np.float64)
    dtypes[3] = str
    frame = pd.read_csv(
        io.BytesIO(flat),
        header=None,
        names=range(width + LEADING_COLUMNS),
        skipinitialspace=True,
        na_values=["null", "\\N"],
        dtype=dtypes,
        engine="c",
    )
    symbols = frame.iloc[:, 3].fillna("").to_numpy(dtype=object)  # "" (empty symbol) reads NaN
    values = frame.drop(columns=frame.columns[3]).to_numpy(dtype=np.float64, copy=True)
    values[~np.isfinite(values)] = np.nan
    return ParsedBlock(
        values[:, 0].copy(), values[:, 1].copy(), values[:, 2].copy(), symbols, values[:, 3:]
    )


def decode_symbols(hex_symbols: np.ndarray) -> np.ndarray:
    """Hex-encoded UTF-8 symbols back to a str array (each distinct value decoded once)."""
    if hex_symbols.size == 0:
        return np.zeros(0, dtype=str)
    distinct, codes = np.unique(hex_symbols.astype(str), return_inverse=True)
    decoded = np.array([bytes.fromhex(value).decode() for value in distinct], dtype=str)
    return np.asarray(decoded[codes.reshape(-1)])


def _read_width(
    conn: Connection, selection: PredictionFilter, horizon: str, width: int
) -> FeatureMatrix:
    """Every candidate with a vector of ``width`` (non-finite outcomes included)."""
    statement = _vector_select(selection, horizon, width)
    blocks = (
        _blocks_sqlite(conn, statement) if is_sqlite(conn) else copy_text_blocks(conn, statement)
    )
    # Blocks are parsed on worker threads while the database produces the next ones.
    with ThreadPoolExecutor(WORKER_THREADS) as pool:
        parts = [part.result() for part in [pool.submit(parse_vectors, b, width) for b in blocks]]
    if not parts:
        return FeatureMatrix(np.zeros((width, 0)), np.zeros(0))
    return FeatureMatrix(
        np.concatenate([part.vectors for part in parts]).T.copy(),
        np.concatenate([part.returns for part in parts]),
        times=np.concatenate([part.milliseconds for part in parts]) / 1000.0,
        symbols=decode_symbols(np.concatenate([part.symbol_hex for part in parts])),
        predicted_returns=np.concatenate([part.predicted for part in parts]),
    )


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
    read = _read_width(conn, selection, horizon, chosen) if chosen else None
    found = 0 if read is None else read.actual_returns.size
    if width is None and found * 2 < candidates:
        # features_count does not describe the stored vectors: find their real lengths.
        lengths = vector_lengths(conn, selection, horizon)
        if lengths:
            chosen = max(lengths, key=lambda k: (lengths[k], k))
            read = _read_width(conn, selection, horizon, chosen)
    if read is None:
        return FeatureMatrix(np.zeros((chosen or 0, 0)), np.zeros(0), candidates)
    finite = np.isfinite(read.actual_returns)
    return FeatureMatrix(
        read.features[:, finite],
        read.actual_returns[finite],
        candidates - int(finite.sum()),
        times=read.times[finite],
        symbols=read.symbols[finite],
        predicted_returns=read.predicted_returns[finite],
    )
