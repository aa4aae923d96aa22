"""The one aggregation behind ``ml_prediction_daily``: SQL text that turns prediction rows
into rollup-shaped rows (one per UTC day, symbol, model_version and horizon, every column of
``store.rollup_columns``), for both backends.

The same SELECT fills the table (rebuild and the backfill's refresh of the keys it touched)
and, when the analysis reads a period, aggregates the raw rows the table does not hold (days
cut by the period's edges, days with rows newer than the rollups). Whatever the mix, the
analysis sums rows of one shape computed by one piece of SQL.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlpred_cli.config import (
    CALIBRATION_BINS,
    CONFIDENCE_BIN_EDGES,
    HORIZONS,
    PRIMARY_HORIZON_FALLBACK,
    SIGNAL_TYPES,
)
from mlpred_cli.store.rollup_columns import ALL_COLUMNS, KEY_COLUMNS

#: The equal-width calibration (ECE) bin edges, as ``analysis.metrics`` rounds them.
CALIBRATION_EDGES: tuple[float, ...] = tuple(
    round(k / CALIBRATION_BINS, 12) for k in range(CALIBRATION_BINS + 1)
)


def day_sql(dialect: str, column: str = "p.datetime") -> str:
    """SQL of the UTC calendar day of a stored timestamp, comparable with a ``Date`` column."""
    if dialect == "sqlite":
        return f"substr({column}, 1, 10)"  # naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'
    return f"CAST({column} AT TIME ZONE 'UTC' AS DATE)"


def _float(value: float) -> str:
    return f"CAST({value!r} AS DOUBLE PRECISION)"


def _count(condition: str, weight: str = "1") -> str:
    return f"SUM(CASE WHEN {condition} THEN {weight} ELSE 0 END)"


def _total(expression: str, condition: str, weight: str = "1") -> str:
    value = expression if weight == "1" else f"{weight} * ({expression})"
    return f"SUM(CASE WHEN {condition} THEN {value} ELSE {_float(0.0)} END)"


def _in_bin(value: str, edges: tuple[float, ...], k: int) -> str:
    """``value`` in bin k of ``edges``: [e_k, e_k+1), the last bin closed at its top."""
    upper = "<=" if k == len(edges) - 2 else "<"
    return f"{value} >= {_float(edges[k])} AND {value} {upper} {_float(edges[k + 1])}"


def _primary_is(horizon: str) -> str:
    """True for rows whose primary horizon is ``horizon`` (``signal_timeframe`` when it is a
    horizon, else ``PRIMARY_HORIZON_FALLBACK``)."""
    if horizon != PRIMARY_HORIZON_FALLBACK:
        return f"p.signal_timeframe = '{horizon}'"
    others = ", ".join(f"'{h}'" for h in HORIZONS if h != horizon)
    return f"(p.signal_timeframe IS NULL OR p.signal_timeframe NOT IN ({others}))"


#: The prediction columns the aggregation reads (``p.<name>``), besides ``datetime``,
#: ``symbol`` and ``model_version``: what a copy of rows must hold to be aggregated.
ROW_COLUMNS: tuple[str, ...] = (
    "signal_type",
    "signal_confidence",
    "signal_timeframe",
    *(
        f"{stem}_{horizon}"
        for horizon in HORIZONS
        for stem in ("predicted_return", "actual_return", "direction", "actual_direction")
    ),
    *(f"direction_{horizon}_confidence" for horizon in HORIZONS),
    *(f"accuracy_{horizon}" for horizon in HORIZONS),
)


def _horizon_aggregates(horizon: str, weight: str = "1") -> list[str]:
    """The additive columns of ``horizon``'s rows, in ``ADDITIVE_COLUMNS`` order by name,
    each row counted ``weight`` times (SQL: 1, or a signed column)."""
    pr, ar = f"p.predicted_return_{horizon}", f"p.actual_return_{horizon}"
    direction, actual = f"p.direction_{horizon}", f"p.actual_direction_{horizon}"
    confidence = f"p.direction_{horizon}_confidence"
    scored = f"({actual} IS NOT NULL AND {direction} IS NOT NULL)"
    correct = f"({scored} AND p.accuracy_{horizon} IS TRUE)"
    directional = f"({scored} AND {direction} IN ('LONG', 'SHORT'))"
    any_outcome = "(" + " OR ".join(f"p.actual_direction_{h} IS NOT NULL" for h in HORIZONS) + ")"
    pairs = f"({pr} IS NOT NULL AND {ar} IS NOT NULL)"
    calibrated = f"({scored} AND {confidence} IS NOT NULL)"
    hit = f"CASE WHEN p.accuracy_{horizon} IS TRUE THEN {_float(1.0)} ELSE {_float(0.0)} END"
    primary = _primary_is(horizon)
    sc = "p.signal_confidence"

    columns: dict[str, str] = {
        "predictions": "COUNT(*)" if weight == "1" else f"SUM({weight})",
        "with_outcome": _count(any_outcome, weight),
        "confidence_n": _count(f"{sc} IS NOT NULL", weight),
        "confidence_sum": _total(sc, f"{sc} IS NOT NULL", weight),
        "scored": _count(scored, weight),
        "correct": _count(correct, weight),
        "directional": _count(directional, weight),
        "directional_correct": _count(f"{directional} AND p.accuracy_{horizon} IS TRUE", weight),
        "return_pairs": _count(pairs, weight),
        "predicted_sum": _total(pr, pairs, weight),
        "actual_sum": _total(ar, pairs, weight),
        "predicted_sq_sum": _total(f"{pr} * {pr}", pairs, weight),
        "actual_sq_sum": _total(f"{ar} * {ar}", pairs, weight),
        "cross_sum": _total(f"{pr} * {ar}", pairs, weight),
        "abs_error_sum": _total(f"ABS({pr} - {ar})", pairs, weight),
        "squared_error_sum": _total(f"({pr} - {ar}) * ({pr} - {ar})", pairs, weight),
        "calibration_n": _count(calibrated, weight),
        "calibration_correct": _count(f"{calibrated} AND p.accuracy_{horizon} IS TRUE", weight),
        "calibration_confidence_sum": _total(confidence, calibrated, weight),
        "brier_sum": _total(f"({confidence} - {hit}) * ({confidence} - {hit})", calibrated, weight),
        "ic_n": _count(pairs, weight),
    }
    for kind in SIGNAL_TYPES:
        name, is_kind = kind.lower(), f"p.signal_type = '{kind}'"
        columns[f"signal_{name}"] = _count(is_kind, weight)
        columns[f"signal_{name}_with_outcome"] = _count(f"{is_kind} AND {any_outcome}", weight)
        columns[f"signal_{name}_confidence_n"] = _count(f"{is_kind} AND {sc} IS NOT NULL", weight)
        columns[f"signal_{name}_confidence_sum"] = _total(
            sc, f"{is_kind} AND {sc} IS NOT NULL", weight
        )
        columns[f"actual_{name}"] = _count(f"{scored} AND {actual} = '{kind}'", weight)
        columns[f"signal_{name}_scored"] = _count(f"{scored} AND {is_kind}", weight)
        columns[f"signal_{name}_correct"] = _count(f"{correct} AND {is_kind}", weight)
    for k in range(CALIBRATION_BINS):
        member = f"{calibrated} AND {_in_bin(confidence, CALIBRATION_EDGES, k)}"
        columns[f"ece_{k}_n"] = _count(member, weight)
        columns[f"ece_{k}_correct"] = _count(f"{member} AND p.accuracy_{horizon} IS TRUE", weight)
        columns[f"ece_{k}_confidence_sum"] = _total(confidence, member, weight)
    for k in range(len(CONFIDENCE_BIN_EDGES) - 1):
        member = f"{primary} AND {_in_bin(sc, CONFIDENCE_BIN_EDGES, k)}"
        columns[f"bin_{k}_n"] = _count(member, weight)
        columns[f"bin_{k}_scored"] = _count(f"{member} AND {scored}", weight)
        columns[f"bin_{k}_correct"] = _count(f"{member} AND {correct}", weight)
        columns[f"bin_{k}_confidence_sum"] = _total(sc, member, weight)
        for kind in SIGNAL_TYPES:
            columns[f"bin_{k}_{kind.lower()}"] = _count(
                f"{member} AND p.signal_type = '{kind}'", weight
            )
    return [f"{columns[name]} AS {name}" for name in ALL_COLUMNS if name in columns]


def _daily_ic(horizon: str, dialect: str, rows_from: str, where: str) -> str:
    """Per key, the Spearman IC of ``horizon``: Pearson correlation of average ranks (ties
    share the mean of their positions, as ``scipy.stats.spearmanr``); null below 3 pairs or
    when a side is constant."""
    pr, ar = f"p.predicted_return_{horizon}", f"p.actual_return_{horizon}"
    key = "d, s, v"
    half = _float(0.5)
    ranked = (
        f"SELECT {key}, "
        f"RANK() OVER (PARTITION BY {key} ORDER BY x) "
        f"+ (COUNT(*) OVER (PARTITION BY {key}, x) - 1) * {half} AS rx, "
        f"RANK() OVER (PARTITION BY {key} ORDER BY y) "
        f"+ (COUNT(*) OVER (PARTITION BY {key}, y) - 1) * {half} AS ry "
        f"FROM (SELECT {day_sql(dialect)} AS d, p.symbol AS s, "
        f"COALESCE(p.model_version, '') AS v, {pr} AS x, {ar} AS y FROM {rows_from} "
        f"WHERE ({where}) AND {pr} IS NOT NULL AND {ar} IS NOT NULL) pairs"
    )
    n = "COUNT(*)"
    covariance = f"({n} * SUM(rx * ry) - SUM(rx) * SUM(ry))"
    variance_x = f"({n} * SUM(rx * rx) - SUM(rx) * SUM(rx))"
    variance_y = f"({n} * SUM(ry * ry) - SUM(ry) * SUM(ry))"
    ic = (
        f"CASE WHEN {n} >= 3 AND {variance_x} > 0 AND {variance_y} > 0 "
        f"THEN {covariance} / SQRT({variance_x} * {variance_y}) END"
    )
    return (
        f"SELECT d AS day, s AS symbol, v AS model_version, '{horizon}' AS horizon, {ic} AS ic "
        f"FROM ({ranked}) r GROUP BY {key}"
    )


def additive_select(
    dialect: str,
    *,
    rows_from: str = "ml_predictions p",
    where: str = "1 = 1",
    weight: str = "1",
    horizon_where: Mapping[str, str] | None = None,
) -> str:
    """SELECT of the key and additive columns of rollup rows (``ALL_COLUMNS`` without
    ``ic``) over the rows ``p`` of ``rows_from`` that satisfy ``where``, each counted
    ``weight`` times (SQL of a number: a signed column sums changes); a horizon's rows are
    only those that also satisfy ``horizon_where[horizon]``, when given."""
    day = day_sql(dialect)
    group = f"{day}, p.symbol, COALESCE(p.model_version, '')"
    conditions = {
        horizon: where if horizon_where is None else f"({where}) AND {horizon_where[horizon]}"
        for horizon in HORIZONS
    }
    return " UNION ALL ".join(
        f"SELECT {day} AS day, p.symbol AS symbol, COALESCE(p.model_version, '') AS "
        f"model_version, '{horizon}' AS horizon, "
        f"{', '.join(_horizon_aggregates(horizon, weight))} "
        f"FROM {rows_from} WHERE {conditions[horizon]} GROUP BY {group}"
        for horizon in HORIZONS
    )


def ic_select(dialect: str, *, rows_from: str = "ml_predictions p", where: str = "1 = 1") -> str:
    """SELECT of (day, symbol, model_version, horizon, ic): each key's daily Spearman IC over
    the rows ``p`` of ``rows_from`` that satisfy ``where`` (keys without pairs left out)."""
    return " UNION ALL ".join(_daily_ic(h, dialect, rows_from, where) for h in HORIZONS)


def rollup_select(
    dialect: str, *, rows_from: str = "ml_predictions p", where: str = "1 = 1"
) -> str:
    """SELECT of rollup rows (``ALL_COLUMNS``) over the prediction rows ``p`` of ``rows_from``
    (a FROM clause, possibly joined) that satisfy ``where`` (SQL with bound parameters)."""
    aggregates = additive_select(dialect, rows_from=rows_from, where=where)
    ics = ic_select(dialect, rows_from=rows_from, where=where)
    join = " AND ".join(f"a.{name} = i.{name}" for name in KEY_COLUMNS)
    names = ", ".join(f"a.{name}" for name in ALL_COLUMNS if name != "ic")
    return f"SELECT {names}, i.ic AS ic FROM ({aggregates}) a LEFT JOIN ({ics}) i ON {join}"
