"""Drift between a reference window and a current window of one statistic, with thresholds
taken from the null distribution at the windows' EFFECTIVE sizes, never constants.

A fixed PSI limit of 0.1 fires on most windows of 100 rows and a KS test flags a 0.02-sigma
shift at 50,000 rows; here every threshold is the (1 - alpha) quantile of what the statistic
would be with no drift, for the sizes at hand:

- PSI on reference-quantile bins: ``PSI ~ (1/n_eff + 1/m_eff) * chi2(bins - 1)`` (PSI is the
  symmetrised Kullback-Leibler divergence, whose second-order term is Pearson's chi-square);
  its p-value is the drift test's ``p_value``.
- Jensen-Shannon divergence (natural log): ``~ (1/8) (1/n_eff + 1/m_eff) chi2(bins - 1)``;
  reported as the JS distance (its square root).
- Wasserstein distance scaled by the reference standard deviation (continuous only): a
  seeded bootstrap of the reference at the effective sizes (see ``wasserstein_band``).
- KS (only while the smaller window has at most ``ks_max_rows`` rows): its asymptotic
  p-value at the effective sizes.

Effective sizes. Consecutive predictions of one symbol are strongly autocorrelated, so
``n`` rows carry the information of ``n_eff = n / tau`` independent ones, ``tau`` being the
integrated autocorrelation time (Geyer's initial positive sequence, lags capped at
``MAX_AUTOCORRELATION_LAG``), estimated per window from the series of each group (symbol)
in time order, pooled over groups. PSI, JS and KS depend on the data through the bin
counts, so their ``tau`` is the bin indicators' (``bin_dependence``: weighted as in the
chi-square statistic, which makes the null mean exact, and its long-run covariance matrix
gives the null's shape, a Satterthwaite scaled chi-square; with independent rows it is
exactly the formula above). The Wasserstein band uses the larger of that ``tau`` and the
values' own (the distance also follows the mean). Series are centred on the means of
stretches of ``STRETCH_LAGS`` correlation lengths, so a level change inside a window does
not pass for autocorrelation (which would shrink that window's ``n_eff`` and hide it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import fft as scipy_fft
from scipy import stats

from mlpred_cli import config
from mlpred_cli.errors import InputError, NotEnoughData

FloatArray = npt.NDArray[np.float64]

EMPTY_BIN_ROWS = config.DRIFT_EMPTY_BIN_ROWS
MIN_EFFECTIVE_ROWS_PER_BIN = config.DRIFT_MIN_EFFECTIVE_ROWS_PER_BIN
MAX_AUTOCORRELATION_LAG = config.DRIFT_MAX_AUTOCORRELATION_LAG
BOOTSTRAP_MAX_ROWS = config.DRIFT_BOOTSTRAP_MAX_ROWS
STRETCH_LAGS = config.DRIFT_STRETCH_LAGS
STRETCH_MIN_ROWS = config.DRIFT_STRETCH_MIN_ROWS


# ---------------------------------------------------------------- statistics


def reference_edges(reference: npt.ArrayLike, bins: int) -> FloatArray:
    """Interior bin edges at the reference's ``1/bins .. (bins-1)/bins`` quantiles.

    Bin ``i`` holds values in ``(edges[i-1], edges[i]]``. Tied quantiles collapse into one
    edge and an edge at the reference maximum is dropped, so ties give fewer bins (the
    count is ``len(edges) + 1``). A constant reference ``c`` gets the edges
    ``[c - ulp, c]``: below, at and above ``c``. ``reference`` must hold finite values.
    """
    values = np.asarray(reference, dtype=float)
    if values.size == 0:
        raise NotEnoughData("the reference holds no values")
    if bins < 2:
        raise InputError(f"bins must be at least 2, got {bins}")
    top = float(values.max())
    if float(values.min()) == top:
        return np.array([np.nextafter(top, -np.inf), top])
    edges = np.unique(np.quantile(values, np.arange(1, bins) / bins))
    return edges[edges < top]


def bin_counts(values: npt.ArrayLike, edges: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Rows of ``values`` in each bin of ``reference_edges`` (``len(edges) + 1`` counts)."""
    boundaries = np.asarray(edges, dtype=float)
    index = np.searchsorted(boundaries, np.asarray(values, dtype=float), side="left")
    return np.bincount(index, minlength=boundaries.size + 1).astype(np.int64)


def bin_shares(values: npt.ArrayLike, edges: npt.ArrayLike) -> FloatArray:
    """Share of ``values`` in each bin; an empty bin gets ``EMPTY_BIN_ROWS / n`` (then the
    shares are renormalised), so PSI on them is finite."""
    return floored_shares(bin_counts(values, edges))


def floored_shares(counts: npt.ArrayLike) -> FloatArray:
    """Counts as shares, an empty bin counted as ``EMPTY_BIN_ROWS`` rows, summing to 1."""
    rows = np.asarray(counts, dtype=float)
    total = rows.sum()
    if total <= 0:
        raise NotEnoughData("no rows to share out among bins")
    floored = np.where(rows > 0, rows, EMPTY_BIN_ROWS)
    return np.asarray(floored / floored.sum(), dtype=float)


def psi(reference_shares: npt.ArrayLike, current_shares: npt.ArrayLike) -> float:
    """Population stability index ``sum((c - r) * ln(c / r))`` of two share vectors (use
    ``bin_shares`` / ``floored_shares``: a zero share gives inf)."""
    r = np.asarray(reference_shares, dtype=float)
    c = np.asarray(current_shares, dtype=float)
    with np.errstate(divide="ignore"):
        return float(np.sum((c - r) * np.log(c / r)))


def js_divergence(reference_shares: npt.ArrayLike, current_shares: npt.ArrayLike) -> float:
    """Jensen-Shannon divergence (natural log, between 0 and ln 2) of two share vectors;
    empty bins are fine."""
    r = np.asarray(reference_shares, dtype=float)
    c = np.asarray(current_shares, dtype=float)
    middle = (r + c) / 2

    def kl_to_middle(p: FloatArray) -> float:
        used = p > 0
        return float(np.sum(p[used] * np.log(p[used] / middle[used])))

    return max(0.0, (kl_to_middle(r) + kl_to_middle(c)) / 2)


def js_distance(reference_shares: npt.ArrayLike, current_shares: npt.ArrayLike) -> float:
    """Jensen-Shannon distance: the square root of ``js_divergence`` (natural log)."""
    return math.sqrt(js_divergence(reference_shares, current_shares))


def scaled_wasserstein(reference: npt.ArrayLike, current: npt.ArrayLike) -> float | None:
    """Wasserstein-1 distance between the two samples in reference standard deviations
    (sample sd, ddof=1); None when the reference is constant."""
    ref = np.asarray(reference, dtype=float)
    spread = float(np.std(ref, ddof=1)) if ref.size > 1 else 0.0
    if not spread > 0:
        return None
    return float(stats.wasserstein_distance(ref, np.asarray(current, dtype=float)) / spread)


def total_variation(reference_shares: npt.ArrayLike, current_shares: npt.ArrayLike) -> float:
    """Total variation distance ``sum|c - r| / 2`` (0 to 1) of two share vectors."""
    r = np.asarray(reference_shares, dtype=float)
    c = np.asarray(current_shares, dtype=float)
    return float(np.abs(c - r).sum() / 2)


# ---------------------------------------------------------------- effective sizes


def _group_slices(
    size: int, groups: npt.ArrayLike | None
) -> tuple[npt.NDArray[np.intp], list[slice]]:
    """An order that puts each group's rows together (keeping their order) and its slices."""
    if groups is None:
        return np.arange(size), [slice(0, size)]
    labels = np.asarray(groups)
    if labels.shape != (size,):
        raise InputError(f"groups must have one label per value ({size}), got {labels.shape}")
    if np.issubdtype(labels.dtype, np.integer):  # already codes (the caller factorized once)
        codes = labels
    else:
        _, codes = np.unique(labels.astype(str), return_inverse=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    starts = np.concatenate(([0], bounds))
    stops = np.concatenate((bounds, [size]))
    return order, [slice(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def _fft_size(length: int, lags: int) -> int:
    """A fast FFT length with room for ``lags`` lags of zero padding (no wrap-around)."""
    return int(scipy_fft.next_fast_len(length + lags, real=True))


def _centre(block: npt.NDArray[Any], axis: int, block_rows: int | None) -> npt.NDArray[Any]:
    """``block`` minus its mean along ``axis`` (rows in time order), taken over consecutive
    stretches of ``block_rows`` rows (the last one up to twice as long) when given: a level
    change then only inflates the autocorrelation of its own stretch."""
    length = block.shape[axis]
    stretches = 1 if block_rows is None else max(1, length // block_rows)
    if stretches == 1:
        return np.asarray(block - block.mean(axis=axis, keepdims=True))
    assert block_rows is not None
    ids = np.minimum(np.arange(length) // block_rows, stretches - 1)
    starts = np.arange(stretches) * block_rows
    sizes = np.diff(np.r_[starts, length])
    shape = [1, 1]
    shape[axis] = stretches
    means = np.add.reduceat(block, starts, axis=axis) / sizes.reshape(shape)
    return np.asarray(block - np.take(means, ids, axis=axis))


def _autocovariance_sums(
    columns: FloatArray, slices: Sequence[slice], max_lag: int, block_rows: int | None = None
) -> FloatArray:
    """Sum over groups and columns of the within-group autocovariance sums, lags 0..max_lag
    (each group centred on its own mean; lags never cross groups)."""
    sums = np.zeros(max_lag + 1)
    for part in slices:
        block = columns[part]
        length = block.shape[0]
        if length < 2:
            continue
        centred = _centre(block, 0, block_rows)
        lags = min(max_lag, length - 1) + 1
        fft_size = _fft_size(length, lags)
        spectrum = scipy_fft.rfft(centred, n=fft_size, axis=0)
        power = (spectrum.real**2 + spectrum.imag**2).sum(axis=1)
        sums[:lags] += scipy_fft.irfft(power, n=fft_size)[:lags]
    return sums


def _geyer_tau(sums: FloatArray) -> float:
    """Integrated autocorrelation time from autocovariance sums by Geyer's initial monotone
    positive sequence: pairs ``rho(2k) + rho(2k+1)`` summed while positive, made
    non-increasing; at least 1."""
    if not sums[0] > 0:
        return 1.0
    rho = sums / sums[0]
    usable = (rho.size // 2) * 2
    pairs = rho[:usable].reshape(-1, 2).sum(axis=1)
    non_positive = np.flatnonzero(pairs <= 0)
    kept = pairs[: non_positive[0]] if non_positive.size else pairs
    if kept.size == 0:
        return 1.0
    return max(1.0, float(-1.0 + 2.0 * np.minimum.accumulate(kept).sum()))


def autocorrelation_time(
    series: npt.ArrayLike,
    groups: npt.ArrayLike | None = None,
    *,
    max_lag: int = MAX_AUTOCORRELATION_LAG,
) -> float:
    """Integrated autocorrelation time ``tau = 1 + 2 * sum(rho(k))`` of one series or of the
    columns of a 2-D array together (their autocovariances are summed, so a column weighs
    by its variance), pooled over ``groups`` (one label per row, e.g. the symbol; each
    group's rows in time order). Geyer's initial monotone sequence truncates the sum, lags
    stop at ``max_lag``; at least 1 (a series is never worth more than its rows)."""
    values = np.asarray(series, dtype=float)
    columns = values.reshape(values.shape[0], -1) if values.ndim else values.reshape(1, 1)
    order, slices = _group_slices(columns.shape[0], groups)
    longest = max((part.stop - part.start for part in slices), default=0)
    lags = max(1, min(max_lag, longest - 1))
    return _geyer_tau(_autocovariance_sums(columns[order], slices, lags))


def stretch_rows(cutoff: int) -> int:
    """Rows of the stretches a window is centred on, for a correlation length ``cutoff``."""
    return max(STRETCH_MIN_ROWS, STRETCH_LAGS * cutoff)


def _geyer_cutoff(sums: FloatArray) -> int:
    """Last lag Geyer's initial positive sequence keeps (0 when none)."""
    if not sums[0] > 0:
        return 0
    rho = sums / sums[0]
    usable = (rho.size // 2) * 2
    pairs = rho[:usable].reshape(-1, 2).sum(axis=1)
    non_positive = np.flatnonzero(pairs <= 0)
    kept = int(non_positive[0]) if non_positive.size else int(pairs.size)
    return max(0, 2 * kept - 1)


@dataclass(frozen=True)
class BinDependence:
    """How autocorrelation inflates the bin counts of one window.

    ``covariance`` is the long-run covariance matrix of the bin indicators, each divided
    by the square root of its reference share (for independent rows it is
    ``I - sqrt(r) sqrt(r)'``): ``rows * cov(shares / sqrt(r))``. ``tau`` is its trace over
    the trace of the lag-0 covariance: the factor by which the mean of the chi-square
    statistic grows, so ``rows / tau`` is the window's effective size. ``cumulative_tau`` is
    the largest such factor of the empirical CDF at the edges (what KS depends on).
    """

    covariance: FloatArray
    tau: float
    cumulative_tau: float
    cutoff: int = 0


def bin_dependence(
    index: npt.ArrayLike,
    reference_shares: npt.ArrayLike,
    groups: npt.ArrayLike | None = None,
    *,
    min_lag: int = 0,
    max_lag: int = MAX_AUTOCORRELATION_LAG,
    block_rows: int | None = None,
) -> BinDependence:
    """The ``BinDependence`` of a window whose rows fall in bins ``index`` (0-based, one
    series per group in time order), weighted by ``reference_shares`` (all positive).

    The long-run covariance sums the lag covariances up to the longest lag Geyer's initial
    positive sequence keeps for any single bin (at least ``min_lag``, at most ``max_lag``).
    With ``block_rows`` each group is centred over stretches of that many rows (see
    ``stretch_rows``), so that a level change does not pass for autocorrelation.
    """
    codes = np.asarray(index, dtype=np.intp)
    shares = np.asarray(reference_shares, dtype=float)
    bins = shares.size
    order, slices = _group_slices(codes.size, groups)
    # one row per bin (contiguous rows and float32 halve the FFT time; ample precision)
    weights = (1 / np.sqrt(shares)).astype(np.float32)
    columns = (codes[order][None, :] == np.arange(bins)[:, None]) * weights[:, None]
    longest = max((part.stop - part.start for part in slices), default=0)
    lags = max(1, min(max_lag, longest - 1))
    sums = np.zeros((bins, lags + 1))
    lag_zero = np.zeros((bins, bins))
    spectra = []
    for part in slices:
        block = columns[:, part]
        length = block.shape[1]
        if length < 2:
            continue
        centred = _centre(block, 1, block_rows)
        lag_zero += (centred @ centred.T).astype(float)
        used = min(lags, length - 1) + 1
        fft_size = _fft_size(length, used)
        spectrum = scipy_fft.rfft(centred, n=fft_size, axis=1)
        power = spectrum.real**2 + spectrum.imag**2
        sums[:, :used] += scipy_fft.irfft(power, n=fft_size, axis=1)[:, :used]
        spectra.append((spectrum, fft_size, length))
    cutoff = max([min_lag] + [_geyer_cutoff(sums[column]) for column in range(bins)])
    long_run = np.zeros((bins, bins))
    for spectrum, fft_size, length in spectra:
        reach = min(cutoff, lags, length - 1)  # lags beyond a group's length hold nothing
        window = np.zeros(fft_size, dtype=np.float32)
        window[: reach + 1] = 1.0
        if reach:
            window[-reach:] = 1.0
        kernel = scipy_fft.rfft(window).real / fft_size
        # each inner frequency stands for itself and its mirror image (not so the last
        # one when the size is even: it is the Nyquist frequency)
        kernel[1 : kernel.size - (1 - fft_size % 2)] *= 2
        long_run += ((spectrum * kernel[None, :]) @ spectrum.conj().T).real
    rows = max(1, codes.size)
    covariance = (long_run + long_run.T) / (2 * rows)
    base = lag_zero / rows
    values, vectors = np.linalg.eigh(covariance)
    covariance = (vectors * np.clip(values, 0, None)) @ vectors.T
    tau = max(1.0, float(np.trace(covariance) / np.trace(base))) if np.trace(base) > 0 else 1.0
    if np.trace(covariance) < np.trace(base):
        covariance = base.copy()
    cumulative = np.tril(np.ones((bins - 1, bins))) * np.sqrt(shares)[None, :]
    inflated = np.einsum("ij,jk,ik->i", cumulative, covariance, cumulative)
    plain = np.einsum("ij,jk,ik->i", cumulative, base, cumulative)
    ratios = inflated[plain > 0] / plain[plain > 0]
    cumulative_tau = max(1.0, float(ratios.max())) if ratios.size else 1.0
    return BinDependence(covariance, tau, cumulative_tau, cutoff)


def bin_autocorrelation_time(
    values: npt.ArrayLike, edges: npt.ArrayLike, groups: npt.ArrayLike | None = None
) -> float:
    """``BinDependence.tau`` of ``values`` on the bins of ``edges``, weighted by the
    values' own shares: the factor by which dependence inflates the mean of the chi-square
    (and so PSI / JS) statistic over its independent-rows value."""
    boundaries = np.asarray(edges, dtype=float)
    index = np.searchsorted(boundaries, np.asarray(values, dtype=float), side="left")
    counts = np.bincount(index, minlength=boundaries.size + 1)
    used = np.flatnonzero(counts)
    if used.size < 2:
        return 1.0
    remap = np.full(counts.size, -1, dtype=np.intp)
    remap[used] = np.arange(used.size)
    return bin_dependence(remap[index], counts[used] / index.size, groups).tau


def effective_size(
    values: npt.ArrayLike,
    groups: npt.ArrayLike | None = None,
    *,
    edges: npt.ArrayLike | None = None,
) -> float:
    """``n / tau``: how many independent rows ``values`` (one series per group, in time
    order) are worth. Without ``edges`` tau is the values' own (what the mean depends on);
    with ``edges`` it is their bin indicators' (what PSI, JS and KS depend on)."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return 0.0
    if edges is None:
        return array.size / autocorrelation_time(array, groups)
    return array.size / bin_autocorrelation_time(array, edges, groups)


# ---------------------------------------------------------------- null distributions


def _chi2_null(divergence: float, scale: float, df: float, alpha: float) -> tuple[float, float]:
    """Threshold ``scale * chi2_{1-alpha}(df)`` and p-value of ``divergence`` under it."""
    if not scale > 0:  # a constant reference: any change at all is drift
        return 0.0, 0.0 if divergence > 1e-12 else 1.0
    threshold = scale * float(stats.chi2.isf(alpha, df))
    return threshold, float(stats.chi2.sf(divergence / scale, df))


@dataclass(frozen=True)
class WassersteinBand:
    """The bootstrap null of the scaled Wasserstein distance: ``threshold`` (its 1 - alpha
    quantile) and the ``p_value`` of an observed distance, from a gamma distribution
    matched to the mean and variance of ``resamples`` draws at sizes ``drawn``, rescaled
    to the effective sizes."""

    threshold: float
    p_value: float
    resamples: int
    drawn: tuple[int, int]


def wasserstein_band(
    reference: npt.ArrayLike,
    observed: float,
    n_eff: float,
    m_eff: float,
    *,
    alpha: float,
    resamples: int,
    seed: int,
) -> WassersteinBand:
    """Null band of ``scaled_wasserstein`` for two windows of ``n_eff`` and ``m_eff``
    independent rows drawn from ``reference``.

    Each resample draws two windows (with replacement) from the reference, of the effective
    sizes capped at ``BOOTSTRAP_MAX_ROWS``, and measures their distance in reference
    standard deviations; capped draws are rescaled by ``sqrt(1/n + 1/m)``, the rate at
    which the null distance shrinks. Drawing ``n_eff`` independent rows stands in for a
    block bootstrap with blocks of ``tau`` rows (and costs a fraction of it). Reproducible
    for a given ``seed``.
    """
    ref = np.sort(np.asarray(reference, dtype=float))
    spread = float(np.std(ref, ddof=1))
    n_draw = max(2, min(round(n_eff), BOOTSTRAP_MAX_ROWS))
    m_draw = max(2, min(round(m_eff), BOOTSTRAP_MAX_ROWS))
    rescale = math.sqrt((1 / n_eff + 1 / m_eff) / (1 / n_draw + 1 / m_draw))
    # drawing from a grid of reference quantiles instead of the rows themselves makes each
    # draw's CDF a cumulative count on the grid; the grid is finer than any drawn window
    size = min(ref.size, BOOTSTRAP_MAX_ROWS)
    grid = ref if size == ref.size else np.quantile(ref, (np.arange(size) + 0.5) / size)
    widths = np.diff(grid)
    generator = np.random.default_rng(seed)
    draws = np.empty(resamples)
    chunk = max(1, 2_000_000 // (size + n_draw + m_draw))
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        first = _grid_cdf(generator.integers(0, size, (rows, n_draw)), size)
        second = _grid_cdf(generator.integers(0, size, (rows, m_draw)), size)
        draws[start : start + rows] = np.abs(first - second)[:, :-1] @ widths
    draws *= rescale / spread
    mean, variance = float(draws.mean()), float(draws.var(ddof=1))
    if not (mean > 0 and variance > 0):
        return WassersteinBand(mean, 1.0 if observed <= mean else 0.0, resamples, (n_draw, m_draw))
    shape, scale = mean**2 / variance, variance / mean
    return WassersteinBand(
        threshold=float(stats.gamma.isf(alpha, shape, scale=scale)),
        p_value=float(stats.gamma.sf(observed, shape, scale=scale)),
        resamples=resamples,
        drawn=(n_draw, m_draw),
    )


def _grid_cdf(indices: npt.NDArray[np.int64], size: int) -> FloatArray:
    """Empirical CDF on a grid of ``size`` points of each row of grid ``indices``."""
    rows, draw = indices.shape
    keys = (indices + size * np.arange(rows)[:, None]).ravel()
    counts = np.bincount(keys, minlength=rows * size).reshape(rows, size)
    return np.asarray(np.cumsum(counts, axis=1) / draw, dtype=float)


def _ks(
    reference: FloatArray, current: FloatArray, n_eff: float, m_eff: float
) -> tuple[float, float]:
    """KS statistic and its asymptotic p-value at the effective sizes."""
    statistic = float(stats.ks_2samp(reference, current).statistic)
    effective = n_eff * m_eff / (n_eff + m_eff)
    return statistic, float(stats.kstwobign.sf(statistic * math.sqrt(effective)))


# ---------------------------------------------------------------- the drift test


@dataclass(frozen=True)
class DriftTest:
    """Drift of one statistic between a reference window (``n`` rows, ``n_eff`` effective)
    and a current window (``m``, ``m_eff``).

    ``tau_*`` are the autocorrelation times behind the effective sizes (of the bin
    indicators); ``bins`` the bins used (fewer than asked with ties or few effective rows;
    categories for categorical). ``p_value`` is PSI's under its chi-square null, and each
    ``*_threshold`` is the null's (1 - ``alpha``) quantile at these sizes; ``effect`` is the
    size of the change (scaled Wasserstein for continuous data, total variation distance for
    categorical); ``threshold_method`` says in one line how the thresholds were set.
    ``wasserstein*`` are None for categorical data or a constant reference, ``ks_*`` when the
    smaller window has more rows than ``ks_max_rows``. Non-finite values (continuous) or
    missing labels (categorical) were dropped: ``dropped_reference`` / ``dropped_current``.
    """

    name: str
    kind: Literal["continuous", "categorical"]
    n: int
    m: int
    n_eff: float
    m_eff: float
    tau_reference: float
    tau_current: float
    bins: int
    df: float
    alpha: float
    psi: float
    psi_threshold: float
    p_value: float
    js_distance: float
    js_threshold: float
    effect: float | None
    threshold_method: str
    wasserstein: float | None = None
    wasserstein_threshold: float | None = None
    wasserstein_p_value: float | None = None
    ks_statistic: float | None = None
    ks_p_value: float | None = None
    dropped_reference: int = 0
    dropped_current: int = 0
    categories: tuple[str, ...] | None = None

    @property
    def significant(self) -> bool:
        """PSI beyond its threshold (``p_value < alpha``)."""
        return self.p_value < self.alpha

    def to_dict(self) -> dict[str, Any]:
        """The test as JSON-ready values (categories as a list)."""
        document = asdict(self)
        if self.categories is not None:
            document["categories"] = list(self.categories)
        return document


def _finite(
    values: npt.ArrayLike, groups: npt.ArrayLike | None, window: str
) -> tuple[FloatArray, npt.NDArray[Any] | None, int]:
    array = np.asarray(values, dtype=float).ravel()
    labels = None if groups is None else np.asarray(groups)
    if labels is not None and labels.shape != array.shape:
        raise InputError(f"{window}_groups must have one label per {window} value")
    keep = np.isfinite(array)
    dropped = int(array.size - keep.sum())
    return array[keep], None if labels is None else labels[keep], dropped


def _check_sizes(name: str, window: str, rows: int, effective: float, min_rows: float) -> None:
    if effective < min_rows:
        raise NotEnoughData(
            f"drift of {name}: the {window} window has {effective:.1f} effective rows "
            f"({rows} rows); at least {min_rows:g} are needed"
        )


@dataclass(frozen=True)
class _Binned:
    """The binned part of a drift test: sizes, shares and the scaled chi-square null."""

    n_eff: float
    m_eff: float
    tau_reference: float
    tau_current: float
    ks_tau_reference: float
    ks_tau_current: float
    seen: npt.NDArray[np.intp]
    reference_shares: FloatArray
    current_shares: FloatArray
    raw_reference: FloatArray
    raw_current: FloatArray
    scale: float
    df: float

    @property
    def bins(self) -> int:
        return int(self.seen.size)


def _binned(
    ref_codes: npt.NDArray[np.intp],
    cur_codes: npt.NDArray[np.intp],
    bins: int,
    ref_groups: npt.ArrayLike | None,
    cur_groups: npt.ArrayLike | None,
    min_lags: tuple[int, int] = (0, 0),
    block_rows: int | None = None,
) -> _Binned:
    ref_counts = np.bincount(ref_codes, minlength=bins)
    cur_counts = np.bincount(cur_codes, minlength=bins)
    seen = np.flatnonzero(ref_counts + cur_counts)
    remap = np.full(bins, -1, dtype=np.intp)
    remap[seen] = np.arange(seen.size)
    ref_shares = floored_shares(ref_counts[seen])
    cur_shares = floored_shares(cur_counts[seen])
    n, m = ref_codes.size, cur_codes.size
    ref_dep = bin_dependence(
        remap[ref_codes], ref_shares, ref_groups, min_lag=min_lags[0], block_rows=block_rows
    )
    cur_dep = bin_dependence(
        remap[cur_codes], ref_shares, cur_groups, min_lag=min_lags[1], block_rows=block_rows
    )
    # PSI ~ |share difference / sqrt(r)|^2, a sum of lambda_i * chi2(1) with lambda the
    # eigenvalues of this matrix; matched in mean and variance by scale * chi2(df)
    # (Satterthwaite). Under no drift the current window has the reference's bin shares,
    # so its covariance is the reference's, inflated by its own tau. Independent rows give
    # scale = 1/n + 1/m and df = bins - 1.
    combined = ref_dep.covariance * (1 / n + cur_dep.tau / (ref_dep.tau * m))
    trace, trace_sq = float(np.trace(combined)), float(np.sum(combined * combined))
    scale = trace_sq / trace if trace > 0 else 0.0
    df = trace**2 / trace_sq if trace_sq > 0 else 1.0
    return _Binned(
        n_eff=n / ref_dep.tau,
        m_eff=m / cur_dep.tau,
        tau_reference=ref_dep.tau,
        tau_current=cur_dep.tau,
        ks_tau_reference=ref_dep.cumulative_tau,
        ks_tau_current=cur_dep.cumulative_tau,
        seen=seen,
        reference_shares=ref_shares,
        current_shares=cur_shares,
        raw_reference=ref_counts[seen] / n,
        raw_current=cur_counts[seen] / m,
        scale=scale,
        df=df,
    )


def _null_text(binned: _Binned, alpha: float) -> str:
    return (
        f"scaled chi-square null of PSI and JS for n_eff={binned.n_eff:.0f}, "
        f"m_eff={binned.m_eff:.0f}, {binned.df:.1f} df ({binned.bins} bins), alpha={alpha:g}"
    )


def _values_cutoff(
    values: FloatArray, groups: npt.ArrayLike | None, block_rows: int | None = None
) -> tuple[float, int]:
    """Autocorrelation time of the values and the last lag Geyer's sequence keeps."""
    order, slices = _group_slices(values.size, groups)
    longest = max((part.stop - part.start for part in slices), default=0)
    lags = max(1, min(MAX_AUTOCORRELATION_LAG, longest - 1))
    sums = _autocovariance_sums(values[order].reshape(-1, 1), slices, lags, block_rows)
    return _geyer_tau(sums), _geyer_cutoff(sums)


def _binned_figures(binned: _Binned, alpha: float) -> dict[str, Any]:
    """The ``DriftTest`` fields both kinds compute alike from their binned windows: sizes,
    autocorrelation, PSI with its null threshold and p-value, JS distance and threshold."""
    psi_value = psi(binned.reference_shares, binned.current_shares)
    psi_threshold, p_value = _chi2_null(psi_value, binned.scale, binned.df, alpha)
    js_threshold_sq, _ = _chi2_null(0.0, binned.scale / 8, binned.df, alpha)
    return {
        "n_eff": binned.n_eff,
        "m_eff": binned.m_eff,
        "tau_reference": binned.tau_reference,
        "tau_current": binned.tau_current,
        "bins": binned.bins,
        "df": binned.df,
        "alpha": alpha,
        "psi": psi_value,
        "psi_threshold": psi_threshold,
        "p_value": p_value,
        "js_distance": js_distance(binned.raw_reference, binned.raw_current),
        "js_threshold": math.sqrt(js_threshold_sq),
    }


def continuous_drift(
    name: str,
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    reference_groups: npt.ArrayLike | None = None,
    current_groups: npt.ArrayLike | None = None,
    bins: int = config.DRIFT_BINS,
    alpha: float = config.WARNING_ALPHA,
    ks_max_rows: int = config.KS_MAX_ROWS,
    resamples: int = config.DRIFT_BOOTSTRAP_RESAMPLES,
    seed: int = config.DRIFT_BOOTSTRAP_SEED,
    min_rows: float = config.DRIFT_MIN_ROWS,
) -> DriftTest:
    """Drift of a continuous statistic (``features_mean``, a predicted return...) from the
    ``reference`` to the ``current`` window.

    Each window is one series per group (``*_groups``: a label per value, e.g. the symbol;
    None for one series), in time order within a group. Non-finite values are dropped and
    counted. Raises ``NotEnoughData`` when a window has fewer than 2 finite values or fewer
    than ``min_rows`` effective rows, ``InputError`` for bad arguments. Deterministic for a
    given ``seed``.
    """
    if not 0 < alpha < 1:
        raise InputError(f"alpha must be between 0 and 1, got {alpha}")
    ref, ref_groups, ref_dropped = _finite(reference, reference_groups, "reference")
    cur, cur_groups, cur_dropped = _finite(current, current_groups, "current")
    for window, values in (("reference", ref), ("current", cur)):
        if values.size < 2:
            raise NotEnoughData(
                f"drift of {name}: the {window} window has {values.size} finite values"
            )
    block = stretch_rows(_values_cutoff(ref, ref_groups)[1])
    value_tau_ref, cutoff_ref = _values_cutoff(ref, ref_groups, block)
    value_tau_cur, cutoff_cur = _values_cutoff(cur, cur_groups, block)

    def binned_on(edges: FloatArray) -> _Binned:
        return _binned(
            np.searchsorted(edges, ref, side="left"),
            np.searchsorted(edges, cur, side="left"),
            edges.size + 1,
            ref_groups,
            cur_groups,
            (cutoff_ref, cutoff_cur),
            block,
        )

    edges = reference_edges(ref, bins)
    binned = binned_on(edges)
    _check_sizes(name, "reference", ref.size, binned.n_eff, min_rows)
    _check_sizes(name, "current", cur.size, binned.m_eff, min_rows)
    affordable = max(2, int(min(binned.n_eff, binned.m_eff) / MIN_EFFECTIVE_ROWS_PER_BIN))
    if affordable < edges.size + 1 and ref.min() < ref.max():
        edges = reference_edges(ref, affordable)
        binned = binned_on(edges)
    shared = _binned_figures(binned, alpha)
    method = _null_text(binned, alpha)
    wasserstein = scaled_wasserstein(ref, cur)
    band = None
    if wasserstein is not None:
        # the distance also follows the mean, whose autocorrelation time is the values'
        w_n = ref.size / max(binned.tau_reference, value_tau_ref)
        w_m = cur.size / max(binned.tau_current, value_tau_cur)
        band = wasserstein_band(
            ref, wasserstein, w_n, w_m, alpha=alpha, resamples=resamples, seed=seed
        )
        method += (
            f"; Wasserstein: gamma fit to {resamples} seeded bootstrap draws of the "
            f"reference ({seed=}) for n_eff={w_n:.0f}, m_eff={w_m:.0f}"
        )
    ks_statistic = ks_p_value = None
    if min(ref.size, cur.size) <= ks_max_rows:
        ks_statistic, ks_p_value = _ks(
            ref, cur, ref.size / binned.ks_tau_reference, cur.size / binned.ks_tau_current
        )
    return DriftTest(
        name=name,
        kind="continuous",
        n=int(ref.size),
        m=int(cur.size),
        **shared,
        effect=wasserstein,
        threshold_method=method,
        wasserstein=wasserstein,
        wasserstein_threshold=None if band is None else band.threshold,
        wasserstein_p_value=None if band is None else band.p_value,
        ks_statistic=ks_statistic,
        ks_p_value=ks_p_value,
        dropped_reference=ref_dropped,
        dropped_current=cur_dropped,
    )


def _labels(
    values: npt.ArrayLike, groups: npt.ArrayLike | None, window: str
) -> tuple[npt.NDArray[np.str_], npt.NDArray[Any] | None, int]:
    array = np.asarray(values, dtype=object).ravel()
    labels = None if groups is None else np.asarray(groups)
    if labels is not None and labels.shape != array.shape:
        raise InputError(f"{window}_groups must have one label per {window} value")
    keep = np.array(
        [not (v is None or v == "" or (isinstance(v, float) and math.isnan(v))) for v in array],
        dtype=bool,
    )
    dropped = int(array.size - keep.sum())
    kept = array[keep].astype(str)
    return kept, None if labels is None else labels[keep], dropped


def categorical_drift(
    name: str,
    reference_labels: npt.ArrayLike,
    current_labels: npt.ArrayLike,
    *,
    categories: Sequence[str] | None = None,
    reference_groups: npt.ArrayLike | None = None,
    current_groups: npt.ArrayLike | None = None,
    alpha: float = config.WARNING_ALPHA,
    min_rows: float = config.DRIFT_MIN_ROWS,
) -> DriftTest:
    """Drift of a label mix (the LONG/SHORT/NEUTRAL signal mix, say) from the reference to
    the current window: PSI and JS over the categories, effect = total variation distance.

    ``categories`` fixes the bins (labels outside them share one extra ``(other)`` bin);
    by default the labels seen in either window. A category seen in neither window is left
    out (``DriftTest.categories`` lists those used). Missing labels (None, NaN, "") are
    dropped and counted. Groups and ``min_rows`` as in ``continuous_drift``.
    """
    if not 0 < alpha < 1:
        raise InputError(f"alpha must be between 0 and 1, got {alpha}")
    ref, ref_groups, ref_dropped = _labels(reference_labels, reference_groups, "reference")
    cur, cur_groups, cur_dropped = _labels(current_labels, current_groups, "current")
    if ref.size == 0 or cur.size == 0:
        window = "reference" if ref.size == 0 else "current"
        raise NotEnoughData(f"drift of {name}: the {window} window has no labels")
    known = list(categories) if categories is not None else sorted(set(ref) | set(cur))
    other = any(label not in known for label in set(ref) | set(cur))
    names = known + (["(other)"] if other else [])
    position = {label: number for number, label in enumerate(known)}

    def codes(labels: npt.NDArray[np.str_]) -> npt.NDArray[np.intp]:
        return np.array([position.get(label, len(known)) for label in labels], dtype=np.intp)

    ref_codes, cur_codes = codes(ref), codes(cur)
    first_pass = bin_dependence(
        ref_codes, floored_shares(np.bincount(ref_codes, minlength=len(names))), ref_groups
    )
    block = stretch_rows(first_pass.cutoff)
    binned = _binned(ref_codes, cur_codes, len(names), ref_groups, cur_groups, block_rows=block)
    _check_sizes(name, "reference", ref.size, binned.n_eff, min_rows)
    _check_sizes(name, "current", cur.size, binned.m_eff, min_rows)
    shared = _binned_figures(binned, alpha)
    if binned.bins < 2:  # one category only: nothing can shift
        shared.update(psi=0.0, p_value=1.0)
        shared["psi_threshold"] = _chi2_null(0.0, binned.scale, binned.df, alpha)[0]
    return DriftTest(
        name=name,
        kind="categorical",
        n=int(ref.size),
        m=int(cur.size),
        **shared,
        effect=total_variation(binned.raw_reference, binned.raw_current),
        threshold_method=_null_text(binned, alpha),
        dropped_reference=ref_dropped,
        dropped_current=cur_dropped,
        categories=tuple(names[index] for index in binned.seen),
    )
