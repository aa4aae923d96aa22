"""Model-version comparison (A/B): side-by-side metrics per horizon and a significance test
of the accuracy difference.

Versions are compared on the paired rows: where both predicted the same symbol and candle
(``datetime``, the open time of a candle, so equal instants) often enough
(``MIN_PAIRED_PREDICTIONS``), the metrics are computed on those pairs and the test is
paired: McNemar's exact test on correctness and a bootstrap interval of the IC difference.
Outcome windows of one symbol less than a horizon apart overlap (a 12h outcome every 15
minutes), so each paired test also has an overlap-corrected form (``*_overlap`` fields: the
McNemar test with the overlap long-run variance, a circular block bootstrap) and each
accuracy an interval at its effective sample size; ``better`` follows the corrected test,
the naive figures stay in the fields they always had (``better_naive`` is their verdict).
With fewer pairs no winner is declared: the unpaired two-proportion z-test on all rows with
an outcome is still reported, marked ``confounded`` (what each version predicted, which
symbols and periods, differs), and each version's ``coverage`` says what that was.

Pure, apart from the entry point ``compare_versions`` (which reads through
``store.comparison_reads``). Which version is ``better`` is decided here; the verdict sentence
is written by ``render.verdicts``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlpred_cli.analysis.accuracy import accuracy_with_interval
from mlpred_cli.analysis.metrics import expected_calibration_error, information_coefficient
from mlpred_cli.analysis.overlap import OverlapLayout, overlap_proportion
from mlpred_cli.analysis.scoring import scored_mask, scored_rows
from mlpred_cli.analysis.significance import (
    block_bootstrap_ic_difference,
    bootstrap_ic_difference,
    mcnemar_exact,
    mcnemar_overlap,
    two_proportion_z_test,
)
from mlpred_cli.config import (
    COMPARE_ALPHA,
    HORIZON_DELTAS,
    MIN_PAIRED_PREDICTIONS,
    check_horizons,
)
from mlpred_cli.errors import InputError
from mlpred_cli.store.comparison_reads import read_version_rows
from mlpred_cli.store.prediction_queries import make_filter

if TYPE_CHECKING:
    from mlpred_cli.store.source import DatabaseSource

PAIR_KEY = ["symbol", "datetime"]

#: Per-version metrics of each horizon, in display order.
METRIC_NAMES: tuple[str, ...] = (
    "n",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "n_effective",
    "accuracy_overlap_low",
    "accuracy_overlap_high",
    "n_directional",
    "hit_rate",
    "hit_rate_low",
    "hit_rate_high",
    "ic",
    "mae",
    "calibration_error",
    "mean_confidence",
    "inference_ms_p50",
)


@dataclass
class HorizonComparison:
    """One horizon: metrics of A and B (``METRIC_NAMES``) and the test of B against A.

    ``test`` is ``mcnemar_exact`` (paired) or ``two_proportion_z`` (unpaired), None without
    outcomes on both sides. ``accuracy_difference`` is B - A as a fraction (on the pairs when
    paired); ``ic_difference`` is IC(B) - IC(A) with its paired bootstrap interval (no
    interval when unpaired). ``better`` is "A", "B" or None (no significant difference, or
    ``confounded``: too few pairs, so the unpaired figures are not a verdict). ``basis``
    says which rows the metrics are over: ``"paired"`` or ``"all rows"``.
    ``verdict`` is the sentence ``render.verdicts.horizon_verdict`` writes (empty until
    then).

    Overlap-corrected figures of the paired test (None when unpaired): ``p_value_overlap``
    and ``z_overlap`` (``significance.mcnemar_overlap``), ``discordant_effective`` and
    ``pairs_effective`` (the independent discordant pairs / pairs carrying the same
    information), ``ic_difference_low_overlap`` / ``_high_overlap`` (circular block
    bootstrap, blocks of ``block_length`` pairs); ``better`` is decided on
    ``p_value_overlap``, ``better_naive`` on ``p_value``.
    """

    horizon: str
    a: dict[str, Any]
    b: dict[str, Any]
    test: str | None = None
    pairs: int = 0
    a_only_correct: int | None = None
    b_only_correct: int | None = None
    z: float | None = None
    accuracy_difference: float | None = None
    p_value: float | None = None
    ic_difference: float | None = None
    ic_difference_low: float | None = None
    ic_difference_high: float | None = None
    better: str | None = None
    confounded: bool = False
    basis: str = "all rows"
    verdict: str = ""
    p_value_overlap: float | None = None
    z_overlap: float | None = None
    discordant_effective: float | None = None
    pairs_effective: float | None = None
    ic_difference_low_overlap: float | None = None
    ic_difference_high_overlap: float | None = None
    block_length: int | None = None
    better_naive: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``a`` and ``b`` nested)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class VersionCoverage:
    """What one version predicted in the window: how many rows, on which symbols, from
    when to when (UTC; None without rows)."""

    predictions: int
    symbols: list[str]
    first: datetime | None
    last: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, times as ISO 8601 text."""
        return {
            "predictions": self.predictions,
            "symbols": self.symbols,
            "first": None if self.first is None else self.first.isoformat(),
            "last": None if self.last is None else self.last.isoformat(),
        }


def version_coverage(frame: pd.DataFrame) -> VersionCoverage:
    """``VersionCoverage`` of one version's rows."""
    if frame.empty:
        return VersionCoverage(0, [], None, None)
    times = pd.to_datetime(frame["datetime"], utc=True)
    return VersionCoverage(
        predictions=len(frame),
        symbols=sorted(str(name) for name in frame["symbol"].unique()),
        first=times.min().to_pydatetime(),
        last=times.max().to_pydatetime(),
    )


def shared_candles(frame_a: pd.DataFrame, frame_b: pd.DataFrame) -> int:
    """How many (symbol, candle) both versions predicted, outcome or not."""
    keys_a = frame_a[PAIR_KEY].drop_duplicates()
    keys_b = frame_b[PAIR_KEY].drop_duplicates()
    return len(keys_a.merge(keys_b, on=PAIR_KEY))


@dataclass
class ModelComparison:
    """``compare-models`` A B: one ``HorizonComparison`` per horizon, what each version
    predicted (``coverage_a`` / ``coverage_b``) and how many candles both predicted
    (``shared_candles``)."""

    version_a: str
    version_b: str
    selection: str
    alpha: float
    horizons: list[HorizonComparison] = field(default_factory=list)
    coverage_a: VersionCoverage = field(default_factory=lambda: VersionCoverage(0, [], None, None))
    coverage_b: VersionCoverage = field(default_factory=lambda: VersionCoverage(0, [], None, None))
    shared_candles: int = 0
    min_pairs: int = MIN_PAIRED_PREDICTIONS

    @property
    def confounded(self) -> bool:
        """True when some horizon had too few pairs to name a winner."""
        return any(item.confounded for item in self.horizons)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``compare-models --format json``."""
        return {
            "version_a": self.version_a,
            "version_b": self.version_b,
            "selection": self.selection,
            "alpha": self.alpha,
            "min_pairs": self.min_pairs,
            "shared_candles": self.shared_candles,
            "coverage": {"a": self.coverage_a.to_dict(), "b": self.coverage_b.to_dict()},
            "horizons": [item.to_dict() for item in self.horizons],
        }

    def tests(self) -> list[dict[str, Any]]:
        """One row per horizon: the test used, its figures and the verdict."""
        names = (
            "horizon",
            "test",
            "pairs",
            "a_only_correct",
            "b_only_correct",
            "z",
            "accuracy_difference",
            "p_value",
            "ic_difference",
            "ic_difference_low",
            "ic_difference_high",
            "better",
            "confounded",
            "basis",
            "verdict",
            "p_value_overlap",
            "z_overlap",
            "discordant_effective",
            "pairs_effective",
            "ic_difference_low_overlap",
            "ic_difference_high_overlap",
            "block_length",
            "better_naive",
        )
        return [{name: getattr(item, name) for name in names} for item in self.horizons]

    def flat(self) -> list[dict[str, Any]]:
        """One flat row per horizon (``a_*``, ``b_*`` metrics and the test) for CSV."""
        rows = []
        for item, test in zip(self.horizons, self.tests(), strict=True):
            row: dict[str, Any] = {"horizon": item.horizon}
            row.update({f"a_{name}": item.a[name] for name in METRIC_NAMES})
            row.update({f"b_{name}": item.b[name] for name in METRIC_NAMES})
            row.update({k: v for k, v in test.items() if k != "horizon"})
            rows.append(row)
        return rows


def _columns(horizons: tuple[str, ...]) -> list[str]:
    names = ["id", "symbol", "datetime", "model_version", "inference_time_ms"]
    for horizon in horizons:
        names += [
            f"predicted_return_{horizon}",
            f"direction_{horizon}",
            f"direction_{horizon}_confidence",
            f"actual_return_{horizon}",
            f"actual_direction_{horizon}",
            f"accuracy_{horizon}",
        ]
    return names


def _float(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _times(rows: pd.DataFrame) -> np.ndarray:
    """The rows' candle times as UTC datetime64 (what ``OverlapLayout`` takes)."""
    times = pd.to_datetime(rows["datetime"], utc=True).dt.tz_localize(None)
    return np.asarray(times.to_numpy(dtype="datetime64[us]"))


def _window(horizon: str) -> float:
    return HORIZON_DELTAS[horizon].total_seconds()


def version_metrics(
    frame: pd.DataFrame, horizon: str, inference_p50: float | None
) -> dict[str, Any]:
    """Metrics of one version at one horizon over its rows (``frame``: all its rows); the
    accuracy also with its interval at the overlap-corrected effective ``n``."""
    rows = scored_rows(frame, horizon)
    n = len(rows)
    correct = int(rows["correct"].sum())
    overlap = overlap_proportion(
        rows["correct"].to_numpy(float), _times(rows), _window(horizon), rows["symbol"].to_numpy()
    )
    directional = rows[rows[f"direction_{horizon}"].isin(["LONG", "SHORT"])]
    confidence = rows[f"direction_{horizon}_confidence"].to_numpy(float)
    error = (rows[f"predicted_return_{horizon}"] - rows[f"actual_return_{horizon}"]).abs()
    return {
        "n": n,
        **accuracy_with_interval(correct, n),
        "n_effective": overlap.n_effective,
        "accuracy_overlap_low": overlap.low,
        "accuracy_overlap_high": overlap.high,
        "n_directional": len(directional),
        **accuracy_with_interval(int(directional["correct"].sum()), len(directional), "hit_rate"),
        "ic": information_coefficient(
            rows[f"predicted_return_{horizon}"].to_numpy(float),
            rows[f"actual_return_{horizon}"].to_numpy(float),
        ).ic,
        "mae": _float(error.mean()) if error.notna().any() else None,
        "calibration_error": expected_calibration_error(
            confidence, rows["correct"].to_numpy(float)
        ),
        "mean_confidence": _float(np.nanmean(confidence))
        if np.isfinite(confidence).any()
        else None,
        "inference_ms_p50": inference_p50,
    }


def _pairs(frame_a: pd.DataFrame, frame_b: pd.DataFrame, horizon: str) -> pd.DataFrame:
    """Rows of A and B with an outcome on the same symbol and candle (the newest row of each
    version per candle), suffixed ``_a`` / ``_b``."""
    keep = [*PAIR_KEY, "correct", f"predicted_return_{horizon}", f"actual_return_{horizon}"]
    side_a = scored_rows(frame_a, horizon)[keep].drop_duplicates(PAIR_KEY, keep="last")
    side_b = scored_rows(frame_b, horizon)[keep].drop_duplicates(PAIR_KEY, keep="last")
    return side_a.merge(side_b, on=PAIR_KEY, suffixes=("_a", "_b"))


def _on_pairs(frame: pd.DataFrame, pairs: pd.DataFrame, horizon: str) -> pd.DataFrame:
    """A version's rows of the pairs: its newest scored row per paired candle, the row
    ``_pairs`` took (so the metrics' ``n`` is the number of pairs)."""
    scored = frame[scored_mask(frame, horizon)]
    keys = pd.MultiIndex.from_frame(pairs[PAIR_KEY])
    on_pairs = scored[pd.MultiIndex.from_frame(scored[PAIR_KEY]).isin(keys)]
    return on_pairs.drop_duplicates(PAIR_KEY, keep="last")


def compare_horizon(
    frame_a: pd.DataFrame,
    frame_b: pd.DataFrame,
    horizon: str,
    *,
    alpha: float = COMPARE_ALPHA,
    min_pairs: int = MIN_PAIRED_PREDICTIONS,
    inference_p50: tuple[float | None, float | None] = (None, None),
    seed: int | None = None,
    ic_interval: bool = True,
) -> HorizonComparison:
    """Compare two versions' rows at one horizon (see ``HorizonComparison``): on their
    paired rows when there are ``min_pairs``, else unpaired and ``confounded`` (no winner).
    Without ``ic_interval`` the paired IC difference has no bootstrap interval (the costly
    part)."""
    result = HorizonComparison(
        horizon,
        version_metrics(frame_a, horizon, inference_p50[0]),
        version_metrics(frame_b, horizon, inference_p50[1]),
    )
    pairs = _pairs(frame_a, frame_b, horizon)
    result.pairs = len(pairs)
    if len(pairs) >= min_pairs:
        result.basis = "paired"
        result.a = version_metrics(_on_pairs(frame_a, pairs, horizon), horizon, inference_p50[0])
        result.b = version_metrics(_on_pairs(frame_b, pairs, horizon), horizon, inference_p50[1])
        result.test = "mcnemar_exact"
        a_only = int(((pairs["correct_a"] == 1) & (pairs["correct_b"] == 0)).sum())
        b_only = int(((pairs["correct_a"] == 0) & (pairs["correct_b"] == 1)).sum())
        mcnemar = mcnemar_exact(a_only, b_only)
        result.a_only_correct, result.b_only_correct = a_only, b_only
        result.accuracy_difference = (b_only - a_only) / len(pairs)
        result.p_value = mcnemar.p_value
        times, symbols = _times(pairs), pairs["symbol"].to_numpy()
        layout = OverlapLayout(times, _window(horizon), symbols)
        corrected = mcnemar_overlap(pairs["correct_a"], pairs["correct_b"], layout)
        result.p_value_overlap, result.z_overlap = corrected.p_value, corrected.z
        result.discordant_effective = corrected.discordant_effective
        if a_only + b_only:
            share = corrected.discordant_effective / (a_only + b_only)
            result.pairs_effective = len(pairs) * share
        else:
            result.pairs_effective = float(len(pairs))
        predicted_a = pairs[f"predicted_return_{horizon}_a"]
        predicted_b = pairs[f"predicted_return_{horizon}_b"]
        actual = pairs[f"actual_return_{horizon}_a"]
        if ic_interval:
            extra = {} if seed is None else {"seed": seed}
            interval = bootstrap_ic_difference(
                predicted_a.to_numpy(float),
                predicted_b.to_numpy(float),
                actual.to_numpy(float),
                **extra,
            )
            result.ic_difference = interval.difference
            result.ic_difference_low, result.ic_difference_high = interval.low, interval.high
            blocks = block_bootstrap_ic_difference(
                predicted_a.to_numpy(float),
                predicted_b.to_numpy(float),
                actual.to_numpy(float),
                times,
                _window(horizon),
                symbols,
                **extra,
            )
            result.ic_difference_low_overlap = blocks.low
            result.ic_difference_high_overlap = blocks.high
            result.block_length = blocks.block_length
        else:
            known = predicted_a.notna() & predicted_b.notna() & actual.notna()
            ic_a = information_coefficient(predicted_a[known], actual[known]).ic
            ic_b = information_coefficient(predicted_b[known], actual[known]).ic
            result.ic_difference = None if ic_a is None or ic_b is None else ic_b - ic_a
    elif result.a["n"] and result.b["n"]:
        result.test = "two_proportion_z"
        correct_a = int(scored_rows(frame_a, horizon)["correct"].sum())
        correct_b = int(scored_rows(frame_b, horizon)["correct"].sum())
        ztest = two_proportion_z_test(correct_a, result.a["n"], correct_b, result.b["n"])
        result.accuracy_difference, result.z, result.p_value = (
            ztest.difference,
            ztest.z,
            ztest.p_value,
        )
        if result.a["ic"] is not None and result.b["ic"] is not None:
            result.ic_difference = result.b["ic"] - result.a["ic"]
        result.confounded = True
        return result  # a difference of what each version predicted is no verdict
    result.better = better_version(result.accuracy_difference, result.p_value_overlap, alpha)
    result.better_naive = better_version(result.accuracy_difference, result.p_value, alpha)
    return result


def better_version(difference: float | None, p_value: float | None, alpha: float) -> str | None:
    """ "B" when B's accuracy is significantly higher (``p_value < alpha``), "A" when lower,
    None when untested or not significant."""
    if difference is None or p_value is None or not p_value < alpha or difference == 0:
        return None
    return "B" if difference > 0 else "A"


def compare_versions(
    database: DatabaseSource,
    version_a: str,
    version_b: str,
    *,
    days: float | None = 30.0,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    horizons: list[str] | None = None,
    symbol: str | None = None,
    alpha: float = COMPARE_ALPHA,
    min_pairs: int = MIN_PAIRED_PREDICTIONS,
    seed: int | None = None,
    now: datetime | None = None,
    ic_interval: bool = True,
) -> ModelComparison:
    """Compare model ``version_b`` against ``version_a`` (in ``database``: a URL, a path, an
    engine, or None for the configured default) over the last ``days`` days
    (or ``since`` / ``until``, with ``days=None``; optionally one ``symbol``) at each horizon
    (default: all). Times are UTC.

    Raises ``InputError`` for an unknown version (naming the versions that exist), equal
    versions or bad options. Versions are compared on their paired rows; with fewer than
    ``min_pairs`` pairs at a horizon no winner is named there (``confounded``).
    ``seed`` overrides the bootstrap seed (default: fixed).
    The ``verdict`` sentences are left empty (``render.verdicts.with_verdicts`` fills them).
    ``ic_interval=False`` skips the bootstrap of the paired IC difference.
    """
    if version_a == version_b:
        raise InputError("compare two different model versions")
    if not 0 < alpha < 1:
        raise InputError(f"alpha must be within (0, 1), got {alpha:g}")
    chosen = check_horizons(horizons)
    selection = make_filter(symbol=symbol, days=days, since=since, until=until, now=now)
    frame = read_version_rows(database, selection, (version_a, version_b), _columns(chosen))
    frame_a = frame[frame["model_version"] == version_a]
    frame_b = frame[frame["model_version"] == version_b]
    comparison = ModelComparison(
        version_a,
        version_b,
        selection.describe(),
        alpha,
        coverage_a=version_coverage(frame_a),
        coverage_b=version_coverage(frame_b),
        shared_candles=shared_candles(frame_a, frame_b),
        min_pairs=min_pairs,
    )
    p50 = (_median(frame_a["inference_time_ms"]), _median(frame_b["inference_time_ms"]))
    for horizon in chosen:
        comparison.horizons.append(
            compare_horizon(
                frame_a,
                frame_b,
                horizon,
                alpha=alpha,
                min_pairs=min_pairs,
                inference_p50=p50,
                seed=seed,
                ic_interval=ic_interval,
            )
        )
    return comparison


def _median(values: pd.Series) -> float | None:
    known = values.dropna().to_numpy(float)
    return float(np.median(known)) if known.size else None
