"""Benchmark of the performance alarms of ``mlpred check`` on simulated rollups.

For each seed, two simulated 60-day models (3 symbols, a prediction every 15 minutes,
``tests/performance_scenarios.py``): a stable one (accuracy 0.60 throughout) and one whose
accuracy drops to 0.50 from day 31. Prints

- the false-alarm rate: the share of stable runs in which a daily cron would ever have gone
  CRITICAL (or WARNING) over the 46 days after the 14-day reference, per horizon and overall
  (the CUSUM verdict over the window [day 15, day 60) is exactly that), and the share whose
  per-symbol tests over the last 7 days flag a symbol;
- the detection delay of the drop: matured days from the drop until accuracy_cusum is
  CRITICAL, median and p90 per horizon (runs not detected within 30 days are counted as
  missed and left out of the quantiles);
- the wall time of one check (the last 7 days, symbols included), against the time of
  summing the same frame per day (the baseline: the least any check over it must do).

    .venv/bin/python bench/bench_check_alarms.py                  # 500 seeds
    .venv/bin/python bench/bench_check_alarms.py --seeds 100 --settings 0.5,4,8 0.25,4,8

``--settings k,warning,critical[,extreme[,reference_se]]`` compares CUSUM settings on the
same draws (extreme 0: the config's; reference_se: ``CUSUM_REFERENCE_ALLOWANCE``).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import date
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlpred_cli.config import HORIZONS
from mlpred_cli.monitor.performance import default_reference, performance_checks
from mlpred_cli.monitor.results import Severity
from mlpred_cli.monitor.settings import DEFAULT_SETTINGS, MonitorSettings
from tests.performance_scenarios import Scenario, simulate

DROP_DAY = 30
REFERENCE_DAYS = 14


def _extra(spec: str) -> float:
    parts = spec.split(",")
    return float(parts[4]) if len(parts) > 4 else DEFAULT_SETTINGS.cusum_reference_allowance


def _settings(spec: str) -> MonitorSettings:
    parts = [float(part) for part in spec.split(",")]
    extreme = parts[3] if len(parts) > 3 and parts[3] > 0 else DEFAULT_SETTINGS.extreme_day_z
    return dataclasses.replace(
        DEFAULT_SETTINGS,
        cusum_allowance=parts[0],
        cusum_warning_limit=parts[1],
        cusum_critical_limit=parts[2],
        extreme_day_z=extreme,
    )


def _run(
    task: tuple[int, Scenario, Scenario, list[tuple[MonitorSettings, float]]],
) -> list[dict[str, Any]]:
    seed, stable_scenario, drop_scenario, all_settings = task
    stable = simulate(stable_scenario, seed)
    dropped = simulate(drop_scenario, 10_000_000 + seed)
    reference = {"v1": default_reference(stable.first_day, all_settings[0][0])}
    found = []
    for settings, extra in all_settings:
        settings = dataclasses.replace(settings, cusum_reference_allowance=extra)
        row: dict[str, Any] = {}
        results = performance_checks(
            stable.daily,
            None,
            references=reference,
            current=(stable.day(REFERENCE_DAYS), stable.day(stable.days)),
            matured_through=stable.matured_through,
            cadence=stable.cadence,
            settings=settings,
        )
        for horizon in HORIZONS:
            mine = [r for r in results if r.scope.horizon == horizon]
            row[f"critical_{horizon}"] = any(r.severity is Severity.CRITICAL for r in mine)
            row[f"warning_{horizon}"] = any(
                r.severity in (Severity.WARNING, Severity.CRITICAL) for r in mine
            )
            row[f"accuracy_critical_{horizon}"] = any(
                r.severity is Severity.CRITICAL and r.metric == "accuracy_cusum" for r in mine
            )
        started = time.perf_counter()
        weekly = performance_checks(
            stable.daily,
            stable.symbol_daily,
            references=reference,
            current=(stable.day(stable.days - 7), stable.day(stable.days)),
            matured_through=stable.matured_through,
            cadence=stable.cadence,
            settings=settings,
        )
        row["seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        stable.daily.groupby(["day", "horizon"]).sum(numeric_only=True)
        stable.symbol_daily.groupby(["day", "symbol", "horizon"]).sum(numeric_only=True)
        row["baseline_seconds"] = time.perf_counter() - started
        symbols = [r for r in weekly if r.metric == "symbol_accuracy"]
        row["symbol_critical"] = any(r.severity is Severity.CRITICAL for r in symbols)
        row["symbol_warning"] = any(r.severity is not Severity.OK for r in symbols)
        results = performance_checks(
            dropped.daily,
            None,
            references=reference,
            current=(dropped.day(DROP_DAY), dropped.day(dropped.days)),
            matured_through=dropped.matured_through,
            cadence=dropped.cadence,
            settings=settings,
        )
        for result in results:
            if result.metric != "accuracy_cusum" or result.scope.horizon is None:
                continue
            for key, name in (("first_critical_day", "delay"), ("first_alarm_day", "warned")):
                day = result.details.get(key)
                delay = None
                if day is not None:
                    delay = (date.fromisoformat(day) - dropped.day(DROP_DAY)).days + 1
                row[f"{name}_{result.scope.horizon}"] = delay
        found.append(row)
    return found


def _share(rows: Sequence[dict[str, Any]], key: str) -> str:
    return f"{100 * sum(bool(row[key]) for row in rows) / len(rows):5.1f}%"


def _delays(rows: Sequence[dict[str, Any]], horizon: str, name: str = "delay") -> str:
    delays = [row.get(f"{name}_{horizon}") for row in rows]
    found = sorted(delay for delay in delays if delay is not None)
    missed = len(delays) - len(found)
    if not found:
        return f"{'-':>6} {'-':>5} {missed:>7}"
    median = statistics.median(found)
    p90 = float(np.percentile(found, 90))
    return f"{median:6.1f} {p90:5.1f} {missed:>7}"


def _report(spec: str, settings: MonitorSettings, extra: float, rows: list[dict[str, Any]]) -> None:
    print(
        f"\nsettings {spec}: allowance {settings.cusum_allowance:g} + {extra:g} reference SE, "
        f"limits {settings.cusum_warning_limit:g}/{settings.cusum_critical_limit:g}, "
        f"extreme day z {settings.extreme_day_z:g}   ({len(rows)} seeds)"
    )
    print(
        "horizon  stable: CRITICAL  WARNING+  acc CRIT  | drop to CRITICAL: median   p90  "
        "missed | to WARNING: median   p90  missed"
    )
    for horizon in HORIZONS:
        print(
            f"{horizon:>7}          {_share(rows, f'critical_{horizon}')}    "
            f"{_share(rows, f'warning_{horizon}')}    "
            f"{_share(rows, f'accuracy_critical_{horizon}')}"
            f"  |                   {_delays(rows, horizon)} |             "
            f"{_delays(rows, horizon, 'warned')}"
        )
    for row in rows:
        row["critical_any"] = any(row[f"critical_{h}"] for h in HORIZONS)
        row["warning_any"] = any(row[f"warning_{h}"] for h in HORIZONS)
    print(f"    any          {_share(rows, 'critical_any')}    {_share(rows, 'warning_any')}")
    print(
        f"per-symbol tests (3 symbols x 4 horizons, last 7 days): CRITICAL "
        f"{_share(rows, 'symbol_critical')}, WARNING+ {_share(rows, 'symbol_warning')}"
    )
    seconds = [row["seconds"] for row in rows]
    baseline = [row["baseline_seconds"] for row in rows]
    print(
        f"wall time of one check: median {1000 * statistics.median(seconds):.1f} ms, p90 "
        f"{1000 * float(np.percentile(seconds, 90)):.1f} ms (baseline groupby sum "
        f"{1000 * statistics.median(baseline):.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--regime-sd", type=float, default=Scenario.regime_sd)
    parser.add_argument("--skill-common", type=float, default=Scenario.skill_common)
    parser.add_argument(
        "--settings",
        nargs="*",
        default=[],
        help="k,warning,critical[,extreme] CUSUM settings to compare (default: config)",
    )
    args = parser.parse_args()
    specs = args.settings or ["config"]
    all_settings = [
        (DEFAULT_SETTINGS, DEFAULT_SETTINGS.cusum_reference_allowance)
        if spec == "config"
        else (_settings(spec), _extra(spec))
        for spec in specs
    ]
    stable = Scenario(regime_sd=args.regime_sd, skill_common=args.skill_common)
    dropped = dataclasses.replace(stable, drop_day=DROP_DAY, accuracy_after=0.50)
    tasks = [(seed, stable, dropped, all_settings) for seed in range(args.seeds)]
    started = time.perf_counter()
    with Pool(args.workers) as pool:
        outcomes = pool.map(_run, tasks, chunksize=4)
    print(
        f"{args.seeds} seeds x 2 scenarios in {time.perf_counter() - started:.1f} s "
        f"(regime sd {args.regime_sd:g}, common skill share {args.skill_common:g})"
    )
    for index, spec in enumerate(specs):
        settings, extra = all_settings[index]
        _report(spec, settings, extra, [outcome[index] for outcome in outcomes])


if __name__ == "__main__":
    main()
