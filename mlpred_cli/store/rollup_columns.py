"""The columns of ``ml_prediction_daily``: one row per (UTC day, symbol, model_version,
horizon) holding additive figures only, so any period's statistics are sums of rows.

Names only (no SQL): the model in ``store.tables``, the aggregation in ``store.rollup_sql``
and the analysis that sums the rows all read them from here.

- Row-level counts (``predictions``, ``with_outcome``, ``confidence_*`` and the
  ``signal_<type>*`` counts) are the same on each of a key's horizon rows.
- ``scored`` rows have a predicted and an actual direction; ``directional`` ones predicted
  LONG or SHORT; ``actual_<type>`` count the scored rows by actual direction.
- ``return_pairs`` rows have both a predicted and an actual return; the return sums, the
  absolute and squared errors (predicted - actual) are over them.
- ``calibration_*``, ``brier_sum`` and ``ece_<k>_*`` are over scored rows with a direction
  confidence; ``ece_<k>`` are ``CALIBRATION_BINS`` equal-width bins on [0, 1].
- ``bin_<k>_*`` are the ``CONFIDENCE_BIN_EDGES`` bins of ``signal_confidence``, each row
  counted on the row of its primary horizon (``signal_timeframe``, else the fallback).
- ``ic`` / ``ic_n``: the day's Spearman IC of predicted vs actual return over the key's
  ``return_pairs`` (``ic`` null below 3 pairs or for a constant side).
"""

from __future__ import annotations

from mlpred_cli.config import CALIBRATION_BINS, CONFIDENCE_BIN_EDGES, SIGNAL_TYPES

ROLLUP_TABLE = "ml_prediction_daily"
#: The rollups' watermark and tiers' boundary (one row, ``name = ROLLUP_STATE_NAME``).
ROLLUP_STATE_TABLE = "ml_rollup_state"
ROLLUP_STATE_NAME = "daily"
#: The days whose raw rows are archived (their rollups stay).
ARCHIVED_DAYS_TABLE = "ml_archived_days"

#: The primary key, in order; ``model_version`` is '' for rows without one.
KEY_COLUMNS: tuple[str, ...] = ("day", "symbol", "model_version", "horizon")

#: Lower-case signal types as they appear in column names.
SIGNAL_NAMES: tuple[str, ...] = tuple(kind.lower() for kind in SIGNAL_TYPES)

SIGNAL_BINS = len(CONFIDENCE_BIN_EDGES) - 1


def _count_columns() -> tuple[str, ...]:
    names = ["predictions", "with_outcome", "confidence_n"]
    for kind in SIGNAL_NAMES:
        names += [f"signal_{kind}", f"signal_{kind}_with_outcome", f"signal_{kind}_confidence_n"]
    names += ["scored", "correct", "directional", "directional_correct"]
    names += [f"actual_{kind}" for kind in SIGNAL_NAMES]
    for kind in SIGNAL_NAMES:
        names += [f"signal_{kind}_scored", f"signal_{kind}_correct"]
    names += ["return_pairs", "calibration_n", "calibration_correct"]
    for k in range(CALIBRATION_BINS):
        names += [f"ece_{k}_n", f"ece_{k}_correct"]
    for k in range(SIGNAL_BINS):
        names += [f"bin_{k}_n", f"bin_{k}_scored", f"bin_{k}_correct"]
        names += [f"bin_{k}_{kind}" for kind in SIGNAL_NAMES]
    names.append("ic_n")
    return tuple(names)


def _sum_columns() -> tuple[str, ...]:
    names = ["confidence_sum", *(f"signal_{kind}_confidence_sum" for kind in SIGNAL_NAMES)]
    names += [
        "predicted_sum",
        "actual_sum",
        "predicted_sq_sum",
        "actual_sq_sum",
        "cross_sum",
        "abs_error_sum",
        "squared_error_sum",
        "calibration_confidence_sum",
        "brier_sum",
    ]
    names += [f"ece_{k}_confidence_sum" for k in range(CALIBRATION_BINS)]
    names += [f"bin_{k}_confidence_sum" for k in range(SIGNAL_BINS)]
    return tuple(names)


#: Integer counts (not null, 0 by default).
COUNT_COLUMNS: tuple[str, ...] = _count_columns()
#: Floating sums (not null, 0 by default).
SUM_COLUMNS: tuple[str, ...] = _sum_columns()
#: Every additive column.
ADDITIVE_COLUMNS: tuple[str, ...] = COUNT_COLUMNS + SUM_COLUMNS
#: Every column of the table, key first.
ALL_COLUMNS: tuple[str, ...] = (*KEY_COLUMNS, *ADDITIVE_COLUMNS, "ic")

#: The columns an accuracy table by day, symbol or model version sums: covered by an index
#: (PostgreSQL ``INCLUDE``), so such a read is an index-only scan of narrow entries.
ACCURACY_INDEX_COLUMNS: tuple[str, ...] = (
    "predictions",
    "with_outcome",
    "confidence_n",
    "confidence_sum",
    "scored",
    "correct",
)

#: The coarser tiers over ``ml_prediction_daily`` (``store.rollup_tiers``): each row is the
#: sum of the daily rows of its key, the daily ICs as ``ic_sum`` / ``ic_sq_sum`` /
#: ``ic_days``. ``ml_prediction_monthly`` sums a calendar month per (symbol, model_version,
#: horizon); ``ml_prediction_daily_total`` sums every symbol of a day per (model_version,
#: horizon). Whole-history reads sum thousands of their rows instead of ~300,000 daily ones.
MONTHLY_TABLE = "ml_prediction_monthly"
DAILY_TOTAL_TABLE = "ml_prediction_daily_total"
MONTHLY_KEY_COLUMNS: tuple[str, ...] = ("month", "symbol", "model_version", "horizon")
DAILY_TOTAL_KEY_COLUMNS: tuple[str, ...] = ("day", "model_version", "horizon")
#: The daily ICs as additive figures in a tier row.
TIER_IC_COLUMNS: tuple[str, ...] = ("ic_sum", "ic_sq_sum", "ic_days")
