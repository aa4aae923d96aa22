"""Statistics that stay honest when outcome windows overlap.

A 12h prediction made every 15 minutes shares 47/48 of its outcome window with the next one,
so neighbouring outcomes are strongly correlated and a Wilson interval that treats them as
independent is several times too narrow. Here the variance of a mean is estimated with a
HAC (heteroskedasticity and autocorrelation consistent) long-run variance whose kernel is
the overlap itself: two rows of the same symbol whose outcome windows overlap (their
reference times less than one horizon apart) count with weight 1 (Hansen and Hodrick's
estimator for overlapping returns), rows further apart or of different symbols with weight 0.
Should that estimate not be positive (it is not guaranteed to be), the Bartlett (Newey-West)
weight ``1 - |dt| / horizon`` is used instead, which always is. Irregular spacing, gaps and
several rows at one time are handled because the weights depend on time, not on row lags.

The estimate becomes an *effective sample size* ``n_eff = n * var0 / long_run_variance``
(capped to ``[1, n]``): the number of independent rows that would carry the same
information. Intervals and tests are then the usual ones at ``n_eff``: Wilson for a
proportion, the Spearman t-test for an IC (its long-run variance taken on the IC's influence
function, so a smooth prediction series and an overlapping outcome series both count), on
degrees of freedom no more than the outcomes' own effective number (a HAC estimate from few
independent windows is too optimistic; this halves the false discoveries among 240
persistent noise features at 12h, see tests/test_importance_significance.py).

Every sum is a prefix-sum over rows sorted by (symbol, time): O(n log n) whatever the
horizon, and 2-D inputs (many series on the same rows, e.g. 240 features) share one sort.
Pure numpy; unknown results are ``None``, never NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from mlpred_cli.analysis.metrics import wilson_interval
from mlpred_cli.config import INTERVAL_CONFIDENCE
from mlpred_cli.errors import InputError

#: Kernel names ``OverlapLayout.long_run_sums`` reports.
OVERLAP_KERNEL = "overlap"
BARTLETT_KERNEL = "bartlett"


def _seconds(times: npt.ArrayLike) -> np.ndarray:
    """Times as float seconds: datetime64 (any unit, tz-naive = UTC), pandas timestamps, or
    numbers already in seconds."""
    values = np.asarray(times)
    if values.dtype.kind == "M":
        if np.isnat(values).any():
            raise InputError("every row needs a time")
        return np.asarray(values.astype("datetime64[us]").astype(np.int64) / 1e6, dtype=float)
    if values.dtype == object:
        import pandas as pd

        converted = pd.to_datetime(pd.Series(values), utc=True).dt.tz_convert(None)
        return _seconds(converted.to_numpy(dtype="datetime64[us]"))
    return np.asarray(values, dtype=float)


class OverlapLayout:
    """Rows sorted once by (group, time), with the start of each row's overlap window.

    ``times``: each row's reference time; ``groups``: each row's symbol (rows of different
    groups never overlap; None means one group); ``window_seconds``: the horizon (rows less
    than that apart overlap). Every row must have a finite time.
    """

    def __init__(
        self,
        times: npt.ArrayLike,
        window_seconds: float,
        groups: npt.ArrayLike | None = None,
    ) -> None:
        seconds = _seconds(times)
        if seconds.ndim != 1:
            raise InputError("times must be one-dimensional")
        if not np.isfinite(seconds).all():
            raise InputError("every row needs a time")
        if not (window_seconds > 0 and math.isfinite(window_seconds)):
            raise InputError(
                f"the overlap window must be a positive duration, got {window_seconds}"
            )
        n = seconds.size
        if groups is None:
            codes = np.zeros(n, dtype=np.int64)
        else:
            labels = np.asarray(groups)
            if labels.shape != seconds.shape:
                raise InputError("times and groups must have the same length")
            if labels.dtype.kind in "iu":  # already codes
                codes = labels.astype(np.int64)
            else:
                codes = np.unique(labels.astype(str), return_inverse=True)[1].astype(np.int64)
        self.n = n
        self.window = float(window_seconds)
        self.order = np.lexsort((seconds, codes))
        sorted_codes = codes[self.order]
        self._group_codes = sorted_codes
        sorted_seconds = seconds[self.order]
        # Times in horizons since the group's first row: small numbers for the Bartlett sums.
        first = np.zeros(n)
        if n:
            starts_of_group = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
            group_number = np.cumsum(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]) - 1
            first = sorted_seconds[starts_of_group][group_number]
        self.units = (sorted_seconds - first) / self.window
        # Integer microseconds for the window search, so that rows exactly one horizon apart
        # (which share nothing) never overlap by rounding.
        offset = np.rint((sorted_seconds - first) * 1e6).astype(np.int64)
        window_us = max(1, round(self.window * 1e6))
        span = int(offset.max()) + 2 * window_us + 1 if n else 1
        key = sorted_codes * span + offset
        #: For each sorted row j, the first sorted row i of its group with t_j - t_i < window.
        self.window_start = np.searchsorted(key, key - window_us, side="right")

    @property
    def overlaps(self) -> bool:
        """True when at least two rows overlap (one row's window reaches back to another)."""
        return bool(np.any(self.window_start < np.arange(self.n)))

    def _sorted(self, values: np.ndarray) -> np.ndarray:
        return values[..., self.order]

    def long_run_sums(self, residuals: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray, str]:
        """For residual series (1-D, or 2-D with one series per row, aligned with ``times``):
        ``(lag0, long_run, kernel)``: the sum of squares, and the kernel-weighted sum over all
        overlapping pairs ``sum_i sum_j w_ij e_i e_j`` with the overlap kernel; series whose
        overlap sum is not positive get the Bartlett sum instead (``kernel`` says which was
        used when every series used the same, else ``"mixed"``)."""
        values = np.asarray(residuals, dtype=float)
        if values.shape[-1] != self.n:
            raise InputError("residuals and times must have the same length")
        e = self._sorted(values)
        lag0 = np.einsum("...i,...i->...", e, e)
        zero = np.zeros((*e.shape[:-1], 1))
        prefix = np.concatenate((zero, np.cumsum(e, axis=-1)), axis=-1)
        inside = prefix[..., :-1] - np.take(prefix, self.window_start, axis=-1)
        overlap = lag0 + 2.0 * np.einsum("...i,...i->...", e, inside)
        weighted = np.concatenate((zero, np.cumsum(e * self.units, axis=-1)), axis=-1)
        inside_weighted = weighted[..., :-1] - np.take(weighted, self.window_start, axis=-1)
        bartlett_inside = (1.0 - self.units) * inside + inside_weighted
        bartlett = lag0 + 2.0 * np.einsum("...i,...i->...", e, bartlett_inside)
        # Rounding can leave a tiny negative Bartlett sum for a near-constant series.
        bartlett = np.maximum(bartlett, 0.0)
        usable = overlap > 1e-12 * np.maximum(lag0, 1e-300)
        long_run = np.where(usable, overlap, bartlett)
        if np.all(usable):
            kernel = OVERLAP_KERNEL
        elif not np.any(usable):
            kernel = BARTLETT_KERNEL
        else:
            kernel = "mixed"
        return np.asarray(lag0), np.asarray(long_run), kernel

    def blocks(self) -> int:
        """How many horizon-long blocks (per group, counted from its first row) hold a row:
        the effective size when nothing can be estimated from the values."""
        if self.n == 0:
            return 0
        # Rows are sorted by (group, time), so (group, block) is sorted too: count changes.
        block = np.floor(self.units).astype(np.int64)
        codes = self._group_codes
        changes = (codes[1:] != codes[:-1]) | (block[1:] != block[:-1])
        return 1 + int(np.count_nonzero(changes))

    def effective_sizes(self, residuals: npt.ArrayLike) -> np.ndarray:
        """The effective sample size of the mean of each residual series: ``n * lag0 /
        long_run``, capped to ``[1, n]``. A constant series (all rows right, say) shows no
        dependence to estimate: it gets ``blocks()``, the number of horizon-long blocks
        with a row, as if the rows of a block were one outcome."""
        lag0, long_run, _ = self.long_run_sums(residuals)
        constant = lag0 <= 0
        blocks = float(self.blocks())
        with np.errstate(divide="ignore", invalid="ignore"):
            size = np.where(long_run > 0, self.n * lag0 / long_run, blocks)
        size = np.where(constant, blocks, size)
        return np.asarray(np.clip(size, min(1.0, self.n), float(self.n)))


@dataclass(frozen=True)
class OverlapInterval:
    """A proportion with its naive and its overlap-corrected Wilson interval.

    ``n`` rows, ``share`` the proportion, ``n_effective`` the effective sample size the
    corrected interval ``(low, high)`` is built at (with the t quantile on
    ``min(n_effective, blocks) - 1`` degrees of freedom when rows overlap, since
    ``n_effective`` is then estimated);
    ``naive_low``/``naive_high`` the Wilson interval at ``n``. Unknown values are None (no rows)."""

    n: int
    share: float | None
    n_effective: float | None
    low: float | None
    high: float | None
    naive_low: float | None
    naive_high: float | None


def wilson_at(
    share: float,
    n_effective: float,
    confidence: float = INTERVAL_CONFIDENCE,
    degrees: float | None = None,
) -> tuple[float, float]:
    """Wilson score interval of ``share`` at a (possibly fractional) sample size; with
    ``degrees``, the Student t quantile on that many degrees of freedom instead of the
    normal one (for a sample size that is itself estimated)."""
    if n_effective <= 0:
        raise InputError(f"sample size must be positive, got {n_effective}")
    tail = 0.5 + confidence / 2
    z = float(stats.norm.ppf(tail) if degrees is None else stats.t.ppf(tail, max(degrees, 1.0)))
    z2_n = z * z / n_effective
    centre = (share + z2_n / 2) / (1 + z2_n)
    half = z / (1 + z2_n) * math.sqrt(share * (1 - share) / n_effective + z2_n / (4 * n_effective))
    return max(0.0, centre - half), min(1.0, centre + half)


def overlap_proportion(
    successes: npt.ArrayLike,
    times: npt.ArrayLike,
    window_seconds: float,
    groups: npt.ArrayLike | None = None,
    confidence: float = INTERVAL_CONFIDENCE,
) -> OverlapInterval:
    """Share of true values among ``successes`` (booleans or 0/1, one per row; NaN rows are
    left out) with the naive Wilson interval and the one at the overlap-corrected effective
    sample size (rows of one group less than ``window_seconds`` apart overlap)."""
    hits = np.asarray(successes, dtype=float)
    seconds = _seconds(times)
    labels = None if groups is None else np.asarray(groups)
    if hits.shape != seconds.shape or (labels is not None and labels.shape != hits.shape):
        raise InputError("successes, times and groups must have the same length")
    keep = np.isfinite(hits)
    hits, seconds = hits[keep], seconds[keep]
    labels = None if labels is None else labels[keep]
    n = int(hits.size)
    if n == 0:
        return OverlapInterval(0, None, None, None, None, None, None)
    correct = int(hits.sum())
    share = correct / n
    naive_low, naive_high = wilson_interval(correct, n, confidence)
    layout = OverlapLayout(seconds, window_seconds, labels)
    n_effective = float(layout.effective_sizes(hits - share))
    # The effective size is estimated from the overlapping pairs, and from few horizon-long
    # blocks it is too optimistic: the t quantile on min(n_eff, blocks) - 1 degrees of
    # freedom accounts for that (bench/bench_statistics.py). Without an overlapping pair
    # nothing was estimated.
    degrees = min(n_effective, float(layout.blocks())) - 1 if layout.overlaps else None
    low, high = wilson_at(share, n_effective, confidence, degrees)
    return OverlapInterval(n, share, n_effective, low, high, naive_low, naive_high)


def standardized(values: np.ndarray) -> np.ndarray:
    """Values centred and scaled to unit (population) variance along the last axis; NaN for
    a constant series."""
    centred = values - values.mean(axis=-1, keepdims=True)
    scale = np.sqrt((centred * centred).mean(axis=-1, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(centred / scale)


def _standard_ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis, standardized (NaN-free input)."""
    return standardized(np.asarray(stats.rankdata(values, axis=-1), dtype=float))


def correlation_effective_sizes(
    first: npt.ArrayLike, second: npt.ArrayLike, layout: OverlapLayout
) -> tuple[np.ndarray, np.ndarray]:
    """Spearman correlation of each row of ``first`` (1-D or 2-D, series on the last axis)
    with ``second`` (1-D), and the effective sample size of each: the long-run variance of
    the correlation's influence function ``a b - r (a^2 + b^2) / 2`` (a, b standardized
    ranks) against its lag-0 variance. Rows must be complete (no NaN); a constant series
    gives a NaN correlation and size ``n``."""
    a = _standard_ranks(np.atleast_2d(np.asarray(first, dtype=float)))
    b = _standard_ranks(np.asarray(second, dtype=float))
    r = np.mean(a * b, axis=-1)
    influence = a * b - r[:, None] * (a * a + b * b) / 2
    influence = np.where(np.isfinite(influence), influence, 0.0)
    sizes = layout.effective_sizes(influence)
    sizes = np.where(np.isfinite(r), sizes, float(layout.n))
    one_d = np.asarray(first).ndim == 1
    return (r[0:1] if one_d else r), (np.atleast_1d(sizes)[0:1] if one_d else np.atleast_1d(sizes))


def outcome_effective_size(values: npt.ArrayLike, layout: OverlapLayout) -> float:
    """The effective number of independent outcomes in one series (e.g. the realized
    returns, NaN-free), from the long-run variance of its standardized ranks. By Bartlett's
    formula no correlation with this series has a smaller effective size (whatever the
    other series' autocorrelation), which makes it the honest number of degrees of freedom
    when the per-correlation estimate rests on few independent windows."""
    ranks = _standard_ranks(np.asarray(values, dtype=float))
    if not np.isfinite(ranks).all():
        return float(layout.n)
    return float(layout.effective_sizes(ranks))


def spearman_p_value(
    correlation: float | None, n_effective: float | None, outcomes: float | None = None
) -> float | None:
    """Two-sided p-value of a Spearman correlation at a sample size: the t-test
    ``t = r sqrt((n - 2) / (1 - r^2))`` on ``n - 2`` degrees of freedom (as
    ``scipy.stats.spearmanr``); with ``outcomes`` (``outcome_effective_size``), on
    ``min(n, outcomes) - 2`` degrees of freedom, the small-sample correction for an effective
    size estimated from few independent windows. None when undefined (n <= 2)."""
    if correlation is None or n_effective is None or not math.isfinite(correlation):
        return None
    p = spearman_p_values(
        np.array([correlation]), np.array([n_effective]), None if outcomes is None else outcomes
    )[0]
    return None if not np.isfinite(p) else float(p)


def spearman_p_values(
    correlations: npt.ArrayLike,
    n_effective: npt.ArrayLike,
    outcomes: npt.ArrayLike | None = None,
) -> np.ndarray:
    """``spearman_p_value`` over arrays; NaN where undefined."""
    r = np.asarray(correlations, dtype=float)
    n = np.broadcast_to(np.asarray(n_effective, dtype=float), r.shape)
    degrees = n - 2
    if outcomes is not None:
        bound = np.broadcast_to(np.asarray(outcomes, dtype=float), r.shape)
        degrees = np.minimum(n, np.where(np.isfinite(bound), bound, n)) - 2
    with np.errstate(invalid="ignore", divide="ignore"):
        t = r * np.sqrt((n - 2) / (1 - r * r))
        p = 2 * stats.t.sf(np.abs(t), np.maximum(degrees, 1.0))
    p = np.where(np.abs(r) >= 1.0, 0.0, p)
    return np.asarray(np.where(np.isfinite(r) & (n > 2), p, np.nan))
