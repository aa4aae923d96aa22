"""How honest are mlpred's intervals and tests when outcome windows overlap? Monte Carlo on
simulated predictions every 15 minutes, one symbol:

1. accuracy: coverage of the true accuracy by the naive Wilson 95 % interval and by the
   overlap-corrected one, per horizon (correctness = a thresholded moving sum of the
   horizon's independent 15-minute increments, so neighbours share their outcome window);
2. feature importance: on 240 pure-noise features (AR(1) series, as persistent as real
   indicators) against overlapping returns, how often Benjamini-Hochberg at q < 0.05 names
   any feature (family-wise error, = the false discovery rate when every feature is noise)
   and how many it names, naive vs corrected; and the power to find one planted feature.

    python bench/bench_statistics.py                 # 1,000 simulations, about a minute
    python bench/bench_statistics.py --simulations 200
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import signal, stats

from mlpred_cli.analysis.importance_significance import benjamini_hochberg, feature_significance
from mlpred_cli.analysis.overlap import overlap_proportion, spearman_p_values

QUARTER = 900.0
HORIZON_ROWS = {"15m": 1, "1h": 4, "4h": 16, "12h": 48}


CUT = 0.3
TRUTH = float(1 - stats.norm.cdf(CUT))


def _simulate(simulations: int, rows: int, steps: int, seed: int) -> tuple[float, float, float]:
    """(naive coverage, corrected coverage, median n_eff) over ``simulations`` runs of
    ``rows`` predictions every 15 minutes whose outcomes overlap by ``steps`` rows."""
    rng = np.random.default_rng(seed)
    covered = naive = 0
    sizes: list[float] = []
    for _ in range(simulations):
        increments = rng.standard_normal(rows + steps - 1)
        moving = np.convolve(increments, np.ones(steps), "valid") / np.sqrt(steps)
        result = overlap_proportion(moving > CUT, np.arange(rows) * QUARTER, steps * QUARTER)
        assert result.low is not None and result.high is not None
        assert result.naive_low is not None and result.naive_high is not None
        covered += result.low <= TRUTH <= result.high
        naive += result.naive_low <= TRUTH <= result.naive_high
        sizes.append(float(result.n_effective or 0))
    return naive / simulations, covered / simulations, float(np.median(sizes))


def coverage(simulations: int, rows: int, seed: int) -> None:
    print(f"accuracy: coverage of the true accuracy {TRUTH:.3f} by 95 % intervals")
    print(f"({simulations} simulations of {rows} predictions every 15 minutes)")
    print("horizon  naive Wilson  overlap-corrected  median n_eff")
    for horizon, steps in HORIZON_ROWS.items():
        naive, covered, size = _simulate(simulations, rows, steps, seed + steps)
        print(f"{horizon:<7}  {naive:>12.3f}  {covered:>17.3f}  {size:>13,.0f}")


def short_windows(simulations: int, seed: int) -> None:
    """Coverage at 12h when the window holds only a few horizons (one day is 2 of them)."""
    print()
    print("12h with few horizons of data: coverage (naive / overlap-corrected)")
    for rows in (96, 192, 672):
        naive, covered, _ = _simulate(simulations, rows, HORIZON_ROWS["12h"], seed + rows)
        print(f"{rows:>5} rows ({rows / 96:g} days): {naive:.3f} / {covered:.3f}")


def _noise_case(
    rng: np.random.Generator, rows: int, steps: int, persistence: float, planted: bool
) -> tuple[np.ndarray, np.ndarray]:
    increments = rng.normal(size=rows + steps - 1)
    returns = np.convolve(increments, np.ones(steps), "valid")
    shocks = rng.normal(size=(240, rows + 200))
    features = signal.lfilter([1.0], [1.0, -persistence], shocks, axis=1)[:, 200:]
    if planted:
        features[7] = returns + rng.normal(scale=2 * returns.std(), size=rows)
    return features, returns


def false_discoveries(simulations: int, rows: int, seed: int) -> None:
    print()
    print(f"feature importance: 240 features, {rows} predictions, BH q < 0.05")
    print("case                           family-wise error   mean / max named   power")
    print("                               naive    corrected  naive   corrected  (planted)")
    for horizon, persistence in (("1h", 0.9), ("12h", 0.98)):
        steps = HORIZON_ROWS[horizon]
        rng = np.random.default_rng(seed + 100 + steps)
        naive_named, named, found = [], [], 0
        times = np.arange(rows) * QUARTER
        for index in range(simulations):
            planted = index % 2 == 1  # every other simulation plants feature 7
            features, returns = _noise_case(rng, rows, steps, persistence, planted)
            result = feature_significance(features, returns, times, steps * QUARTER)
            significant = result.q_values < 0.05
            naive_q = benjamini_hochberg(spearman_p_values(result.correlations, float(rows)))
            if planted:
                found += bool(significant[7])
                continue
            named.append(int(significant.sum()))
            naive_named.append(int((naive_q < 0.05).sum()))
        noise = len(named)
        print(
            f"{f'{horizon}, AR({persistence}) noise':<30}"
            f"{np.mean(np.array(naive_named) > 0):>6.3f}   {np.mean(np.array(named) > 0):>9.3f}"
            f"  {np.mean(naive_named):>5.1f}/{max(naive_named):<3}"
            f" {np.mean(named):>5.2f}/{max(named):<3}"
            f" {found / (simulations - noise):>6.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1500, help="predictions per simulation")
    parser.add_argument("--seed", type=int, default=20261202)
    args = parser.parse_args()
    start = time.perf_counter()
    coverage(args.simulations, args.rows, args.seed)
    short_windows(args.simulations, args.seed)
    false_discoveries(max(2, args.simulations // 4), 1000, args.seed)
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
