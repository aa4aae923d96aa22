"""Synthetic report content (the dict ``mlpred report`` renders, see the report's content
schema) for the HTML tests: realistic shapes and magnitudes, seeded, with a few figures left
null as a thin window leaves them."""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import numpy as np

HORIZONS = ["15m", "1h", "4h", "12h"]
THRESHOLDS = {"15m": 0.0015, "1h": 0.003, "4h": 0.006, "12h": 0.01}
UNTIL = date(2026, 12, 1)
#: The paired comparison and mlpred check cover the window's last days (all of it if shorter).
RECENT_DAYS = 7


def _wilson(successes: float, n: int) -> tuple[float | None, float | None, float | None]:
    if n <= 0:
        return None, None, None
    z = 1.959963984540054
    share = successes / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return share, centre - half, centre + half


def _report_block(days: int, images: str) -> dict[str, Any]:
    since = UNTIL - timedelta(days=days)
    return {
        "generated_at": f"{UNTIL.isoformat()}T06:00:00+00:00",
        "mlpred_version": "0.1.0",
        "title": "mlpred report: model quality",
        "window": {
            "since": f"{since.isoformat()}T00:00:00+00:00",
            "until": f"{UNTIL.isoformat()}T00:00:00+00:00",
            "days": float(days),
        },
        "previous_window": {
            "since": f"{(since - timedelta(days=days)).isoformat()}T00:00:00+00:00",
            "until": f"{since.isoformat()}T00:00:00+00:00",
        },
        "primary_horizon": "1h",
        "thresholds": dict(THRESHOLDS),
        "images": images,
    }


def _recent(days: int) -> dict[str, str]:
    since = UNTIL - timedelta(days=min(days, RECENT_DAYS))
    return {
        "since": f"{since.isoformat()}T00:00:00+00:00",
        "until": f"{UNTIL.isoformat()}T00:00:00+00:00",
    }


def _selection() -> dict[str, Any]:
    return {
        "symbol": None,
        "model_version": None,
        "since": None,
        "until": None,
        "description": "all symbols, all model versions",
    }


def empty_content(days: int = 30, images: str = "svg") -> dict[str, Any]:
    """The content of a window without predictions."""
    return {
        "report": _report_block(days, images),
        "empty": True,
        "selection": _selection(),
        "overview": {
            "predictions": 0,
            "first": None,
            "last": None,
            "symbols": [],
            "model_versions": [],
            "avg_confidence": None,
            "with_outcomes": 0,
            "outcome_share": None,
        },
        "sources": {},
        "maturity": [
            {
                "horizon": h,
                "predictions": 0,
                "due": 0,
                "matured_share": None,
                "scored": 0,
                "scored_share": None,
            }
            for h in HORIZONS
        ],
        "freshness": {
            "newest_prediction": None,
            "newest_prediction_age_s": None,
            "newest_outcome": dict.fromkeys(HORIZONS),
            "newest_outcome_age_s": dict.fromkeys(HORIZONS),
        },
        "signals": [],
        "horizons": [],
        "confidence_bins": [],
        "calibration": [],
        "symbols": [],
        "input_health": {},
        "performance": {},
        "status": [],
        "daily": [],
        "ic_distribution": [],
        "monthly_ic": [],
        "reliability": [],
        "return_quintiles": [],
        "return_by_confidence": [],
        "signal_economics": {
            "rows": 0,
            "sampled": False,
            "primary_horizon": "1h",
            "signals": [],
            "cumulative": [],
            "total_return": None,
            "horizon_mix": {},
        },
        "symbol_table": [],
        "model_versions": {"versions": [], "comparison": None, "note": None},
        "monitoring": None,
    }


def sample_content(
    days: int = 30,
    symbols: int = 10,
    *,
    seed: int = 7,
    images: str = "svg",
    versions: int = 2,
    monitoring: bool = True,
) -> dict[str, Any]:
    """A full report's content over ``days`` days and ``symbols`` symbols."""
    rng = np.random.default_rng(seed)
    names = [f"SYM{index:02d}USDT" for index in range(symbols)]
    start = UNTIL - timedelta(days=days)
    day_list = [start + timedelta(days=offset) for offset in range(days)]
    skill = {"15m": 0.53, "1h": 0.545, "4h": 0.52, "12h": 0.49}
    base = {"15m": 0.36, "1h": 0.41, "4h": 0.45, "12h": 0.48}
    per_day = {"15m": 96 * symbols, "1h": 24 * symbols, "4h": 24 * symbols, "12h": 24 * symbols}
    total = 24 * symbols * days

    daily: list[dict[str, Any]] = []
    horizons: list[dict[str, Any]] = []
    status: list[dict[str, Any]] = []
    calibration: list[dict[str, Any]] = []
    for h in HORIZONS:
        correct_total, n_total = 0.0, 0
        ic_values = []
        # the last horizon is still maturing on the newest days
        matured_days = days - (1 if h == "12h" else 0)
        for index, day in enumerate(day_list):
            if index >= matured_days:
                continue
            n = int(per_day[h] * rng.uniform(0.8, 1.0))
            correct = rng.binomial(n, skill[h])
            accuracy, low, high = _wilson(correct, n)
            n_dir = int(n * 0.6)
            hits = rng.binomial(n_dir, skill[h] + 0.01)
            hit_rate, hit_low, hit_high = _wilson(hits, n_dir)
            ic: float | None = float(rng.normal(0.02 if h != "12h" else -0.005, 0.05))
            ic_values.append(ic)
            if h == "4h" and index == 5:
                # a day whose outcomes did not score: no accuracy, no IC
                accuracy = low = high = ic = None
            daily.append(
                {
                    "day": day.isoformat(),
                    "horizon": h,
                    "n": n,
                    "accuracy": accuracy,
                    "accuracy_low": low,
                    "accuracy_high": high,
                    "n_directional": n_dir,
                    "hit_rate": hit_rate,
                    "hit_rate_low": hit_low,
                    "hit_rate_high": hit_high,
                    "ic_mean": ic,
                    "ic_days": symbols,
                }
            )
            correct_total += correct
            n_total += n
        accuracy, low, high = _wilson(correct_total, n_total)
        ic_array = np.array([value for value in ic_values if value is not None])
        ic_mean = float(ic_array.mean())
        ic_t = float(ic_mean / (ic_array.std(ddof=1) / math.sqrt(ic_array.size)))
        n_dir = int(n_total * 0.6)
        hit_rate, hit_low, hit_high = _wilson(n_dir * (skill[h] + 0.01), n_dir)
        horizons.append(
            {
                "horizon": h,
                "n": n_total,
                "accuracy": accuracy,
                "accuracy_low": low,
                "accuracy_high": high,
                "n_directional": n_dir,
                "hit_rate": hit_rate,
                "hit_rate_low": hit_low,
                "hit_rate_high": hit_high,
                "base_rate": base[h],
                "mae": 0.002 * (1 + HORIZONS.index(h)),
                "rmse": 0.003 * (1 + HORIZONS.index(h)),
                "ic": ic_mean * 0.8,
                "ic_n": n_total,
                # a pooled IC left out (too many rows) is null
                "pearson_ic": None if h == "4h" else ic_mean * 0.7,
                "daily_ic_mean": ic_mean,
                "daily_ic_t": ic_t,
                "daily_ic_p": float(min(1.0, 2 * math.exp(-abs(ic_t)))),
                "daily_ic_days": int(ic_array.size),
            }
        )
        assert low is not None and high is not None
        verdict = "above" if low > base[h] else "below" if high < base[h] else "within"
        previous_accuracy = None if h == "12h" else (accuracy or 0.0) - 0.01
        status.append(
            {
                "horizon": h,
                "n": n_total,
                "accuracy": accuracy,
                "accuracy_low": low,
                "accuracy_high": high,
                "base_rate": base[h],
                "verdict": verdict,
                "daily_ic_mean": ic_mean,
                "daily_ic_t": ic_t,
                "brier": 0.24 + 0.005 * HORIZONS.index(h),
                "ece": 0.02 + 0.01 * HORIZONS.index(h),
                "previous_n": None if h == "12h" else n_total - 100,
                "previous_accuracy": previous_accuracy,
                "accuracy_change": None if previous_accuracy is None else 0.01,
                "previous_daily_ic_mean": None if h == "12h" else ic_mean - 0.004,
                "ic_change": None if h == "12h" else 0.004,
            }
        )
        calibration.append(
            {
                "horizon": h,
                "n": n_total,
                "avg_confidence": 0.62,
                "accuracy": accuracy,
                "ece": 0.02 + 0.01 * HORIZONS.index(h),
                "brier": 0.24 + 0.005 * HORIZONS.index(h),
            }
        )

    confidence_bins = []
    for low_edge in np.arange(0.3, 1.0, 0.1):
        low_edge = round(float(low_edge), 1)
        count = int(total * rng.uniform(0.05, 0.25))
        accuracy, acc_low, acc_high = _wilson(count * min(0.9, low_edge + 0.1), count)
        confidence_bins.append(
            {
                "bin": f"{low_edge:.1f}-{low_edge + 0.1:.1f}",
                "low": low_edge,
                "high": round(low_edge + 0.1, 1),
                "count": count,
                "avg_confidence": low_edge + 0.05,
                "share_LONG": 0.4,
                "share_SHORT": 0.35,
                "share_NEUTRAL": 0.25,
                "n_primary": count,
                "accuracy": accuracy,
                "accuracy_low": acc_low,
                "accuracy_high": acc_high,
            }
        )
    # a bin without outcomes yet
    confidence_bins[-1].update(n_primary=0, accuracy=None, accuracy_low=None, accuracy_high=None)

    ic_distribution = []
    for h in HORIZONS:
        values = rng.normal(0.02, 0.12, size=days * symbols)
        counts, edges = np.histogram(values, bins=20)
        ic_distribution.append(
            {
                "horizon": h,
                "n": int(values.size),
                "mean": float(values.mean()),
                "median": float(np.median(values)),
                "share_positive": float((values > 0).mean()),
                "bins": [
                    {"low": float(edges[i]), "high": float(edges[i + 1]), "count": int(counts[i])}
                    for i in range(counts.size)
                ],
            }
        )

    months = sorted({day.strftime("%Y-%m") for day in day_list})
    monthly_ic = [
        {
            "horizon": h,
            "month": month,
            "ic_mean": None
            if (h == "12h" and month == months[-1])
            else float(rng.normal(0.015, 0.02)),
            "ic_days": days,
        }
        for h in HORIZONS
        for month in months
    ]

    reliability = []
    for h in HORIZONS:
        bins = []
        for index in range(10):
            low_edge, high_edge = index / 10, (index + 1) / 10
            n = 0 if index < 3 else int(total * rng.uniform(0.02, 0.2))
            mid = (low_edge + high_edge) / 2
            bins.append(
                {
                    "low": low_edge,
                    "high": high_edge,
                    "n": n,
                    "avg_confidence": None if n == 0 else mid,
                    "accuracy": None if n == 0 else min(1.0, mid * float(rng.uniform(0.8, 1.05))),
                }
            )
        reliability.append({"horizon": h, "bins": bins})

    return_quintiles = []
    for h in HORIZONS:
        scale = 0.001 * (1 + HORIZONS.index(h))
        quintiles = []
        for q in range(1, 6):
            mean_actual = scale * (q - 3) * 0.3 + float(rng.normal(0, scale * 0.1))
            quintiles.append(
                {
                    "quintile": q,
                    "n": total // 5,
                    "predicted_low": scale * (q - 3.5),
                    "predicted_high": scale * (q - 2.5),
                    "mean_predicted": scale * (q - 3),
                    "mean_actual": mean_actual,
                }
            )
        return_quintiles.append(
            {
                "horizon": h,
                "n": total,
                "spread": quintiles[-1]["mean_actual"] - quintiles[0]["mean_actual"],
                "quintiles": quintiles,
            }
        )

    return_by_confidence = [
        {
            "bin": row["bin"],
            "low": row["low"],
            "high": row["high"],
            "n": row["count"] // 2,
            "mean_return": float(rng.normal(0.0002 * (row["low"] - 0.4) * 10, 0.0002)),
            "hit_rate": 0.5 + (row["low"] - 0.5) * 0.1,
        }
        for row in confidence_bins
    ]

    cumulative, running = [], 0.0
    for day in day_list:
        mean_return = float(rng.normal(0.0004, 0.002))
        running += mean_return
        cumulative.append(
            {
                "day": day.isoformat(),
                "signals": int(symbols * 24 * 0.7),
                "mean_return": mean_return,
                "cumulative_return": running,
            }
        )
    followed = [int(total * share) for share in (0.4, 0.35)]
    # most signals carry the 1h primary horizon, a fifth 4h: each is followed at its own
    at_4h = sum(followed) // 5
    signal_economics = {
        "horizon_mix": {"1h": sum(followed) - at_4h, "4h": at_4h},
        "rows": total,
        "sampled": False,
        "primary_horizon": "1h",
        "signals": [
            {
                "signal_type": kind,
                "n": int(total * share),
                "hit_rate": hit,
                "hit_rate_low": hit - 0.01,
                "hit_rate_high": hit + 0.01,
                "mean_return": sign * 0.0003,
                "mean_signed_return": 0.0003,
            }
            for kind, share, hit, sign in (("LONG", 0.4, 0.53, 1), ("SHORT", 0.35, 0.51, -1))
        ],
        "cumulative": cumulative,
        "total_return": running,
    }
    signals = [
        {"signal_type": "LONG", "count": int(total * 0.4), "share": 0.4},
        {"signal_type": "SHORT", "count": int(total * 0.35), "share": 0.35},
        {"signal_type": "NEUTRAL", "count": int(total * 0.24), "share": 0.24},
        {"signal_type": None, "count": total - int(total * 0.99), "share": 0.01},
    ]

    symbol_rows = []
    for index, name in enumerate(names):
        predictions = int(total / symbols * rng.uniform(0.7, 1.3))
        row: dict[str, Any] = {
            "symbol": name,
            "predictions": predictions,
            "avg_confidence": 0.6,
        }
        table_horizons = []
        for h in HORIZONS:
            n = predictions // (1 if h == "15m" else 4)
            accuracy, low, high = _wilson(rng.binomial(n, skill[h]), n)
            ic = float(rng.normal(0.02, 0.03))
            daily_ic_mean = ic + float(rng.normal(0, 0.005))
            row[f"n_{h}"], row[f"accuracy_{h}"], row[f"ic_{h}"] = n, accuracy, ic
            previous = None if index == 0 else (accuracy or 0.0) + float(rng.normal(0, 0.01))
            table_horizons.append(
                {
                    "horizon": h,
                    "n": n,
                    "accuracy": accuracy,
                    "accuracy_low": low,
                    "accuracy_high": high,
                    # the busiest symbol has too many rows for a pooled IC, only daily ICs;
                    # one new in this window has no IC at 12h yet, nor previous figures
                    "ic": None if index == 0 or (index == symbols - 1 and h == "12h") else ic,
                    "daily_ic_mean": None if index == symbols - 1 and h == "12h" else daily_ic_mean,
                    "previous_accuracy": previous,
                    "accuracy_change": None if previous is None else (accuracy or 0.0) - previous,
                }
            )
        symbol_rows.append(row)
        symbol_entry = {
            "symbol": name,
            "predictions": predictions,
            "best": False,
            "worst": False,
            "horizons": table_horizons,
        }
        row["_entry"] = symbol_entry
    symbol_rows.sort(key=lambda item: -item["predictions"])
    symbol_table = [row.pop("_entry") for row in symbol_rows]
    primary = HORIZONS.index("1h")
    ranked = sorted(symbol_table, key=lambda item: item["horizons"][primary]["accuracy"])
    ranked[-1]["best"] = True
    ranked[0]["worst"] = True

    version_rows = []
    for index in range(versions):
        version_rows.append(
            {
                "model_version": f"v{index + 1}",
                "predictions": total // max(versions, 1),
                "horizons": [
                    {
                        "horizon": h,
                        "n": total // max(versions, 1),
                        "accuracy": skill[h] + 0.005 * index,
                        "accuracy_low": skill[h] + 0.005 * index - 0.01,
                        "accuracy_high": skill[h] + 0.005 * index + 0.01,
                    }
                    for h in HORIZONS
                ],
            }
        )
    comparison = None
    # like the real content: a paired comparison needs exactly two versions, else a note
    note = (
        f"{versions} model versions in the window: the paired comparison needs exactly two"
        if versions > 2
        else None
    )
    if versions == 2:
        comparison = {
            "version_a": "v1",
            "version_b": "v2",
            **_recent(days),
            "horizons": [
                {
                    "horizon": h,
                    "pairs": total // 3,
                    "accuracy_a": skill[h],
                    "accuracy_b": skill[h] + 0.005,
                    # over paired rows only: not accuracy_b - accuracy_a over all rows
                    "difference": 0.004,
                    "p_value": None if h == "12h" else 0.2,
                    "better": None,
                }
                for h in HORIZONS
            ],
            "verdict": "no significant difference between v1 and v2 at any horizon",
        }

    monitoring_block = None
    if monitoring:
        monitoring_block = {
            "status": "WARNING",
            "counts": {"OK": 11, "WARNING": 2, "CRITICAL": 0, "UNKNOWN": 1},
            "results": [
                {
                    "check": "drift",
                    "severity": "WARNING",
                    "scope": "model v2 · SYM03USDT",
                    "summary": "features_mean shifted: PSI 0.31 > 0.12 (p < 0.001)",
                },
                {
                    "check": "performance",
                    "severity": "WARNING",
                    "scope": "12h",
                    "summary": "accuracy CUSUM crossed its alarm <threshold> & stayed",
                },
                {
                    "check": "freshness",
                    "severity": "UNKNOWN",
                    "scope": "all",
                    "summary": "no candles for SYM09USDT",
                },
                {"check": "quality", "severity": "OK", "scope": "all", "summary": "no NaN rows"},
            ],
            "open_alerts": [
                {
                    "check": "drift",
                    "severity": "WARNING",
                    "scope": "model v2 · SYM03USDT",
                    "summary": "features_mean shifted",
                    "opened_at": "2026-11-29T04:00:00+00:00",
                }
            ],
            "error": None,
            "window": _recent(days),
            # the window ends at the report time (generated_at is six hours after it)
            "alerts_shown": True,
        }

    newest = f"{(UNTIL - timedelta(days=1)).isoformat()}T23:58:00+00:00"
    return {
        "report": _report_block(days, images),
        "empty": False,
        "selection": _selection(),
        "overview": {
            "predictions": total,
            "first": f"{start.isoformat()}T00:00:00+00:00",
            "last": newest,
            "symbols": names,
            "model_versions": [row["model_version"] for row in version_rows],
            "avg_confidence": 0.62,
            "with_outcomes": int(total * 0.97),
            "outcome_share": 0.97,
        },
        "sources": {
            "rollup_days": days,
            "raw_days": days,
            "archived_days": [],
            "notes": [],
        },
        "maturity": [
            {
                "horizon": h,
                "predictions": total,
                "due": total - (0 if h != "12h" else total // days // 2),
                "matured_share": 1.0 if h != "12h" else 1 - 0.5 / days,
                "scored": int(total * 0.97),
                "scored_share": 0.97,
            }
            for h in HORIZONS
        ],
        "freshness": {
            "newest_prediction": newest,
            "newest_prediction_age_s": 21720.0,
            "newest_outcome": {
                "15m": newest,
                "1h": newest,
                "4h": newest,
                "12h": None,
            },
            "newest_outcome_age_s": {"15m": 22620.0, "1h": 25320.0, "4h": 36120.0, "12h": None},
        },
        "signals": signals,
        "horizons": horizons,
        "confidence_bins": confidence_bins,
        "calibration": calibration,
        "symbols": [{k: v for k, v in row.items() if not k.startswith("_")} for row in symbol_rows],
        "input_health": {
            "avg_features_count": 42.0,
            "nan_total": 12,
            "rows_with_nan": 3,
            "inf_total": None,
            "rows_with_inf": 0,
            "avg_zero_variance_count": 0.25,
            "duplicates": 4,
            "duplicate_share": 4 / total,
            "drift_split": f"{(start + timedelta(days=days // 2)).isoformat()}T00:00:00+00:00",
            "features_mean_first_half": 0.012,
            "features_mean_second_half": 0.015,
            "features_mean_drift": 0.003,
            "features_std_first_half": 1.01,
            "features_std_second_half": 0.98,
            "features_std_drift": -0.03,
            "drift": {
                "features_mean": {"verdict": "stable", "p_value": 0.41, "effect": 0.04},
                "features_std": {"verdict": "unknown", "reason": "no rows"},
            },
        },
        "performance": {
            "n": total,
            "inference_time_ms_p50": 3.2,
            "inference_time_ms_p95": 9.8,
            "inference_time_ms_p99": None,
        },
        "status": status,
        "daily": daily,
        "ic_distribution": ic_distribution,
        "monthly_ic": monthly_ic,
        "reliability": reliability,
        "return_quintiles": return_quintiles,
        "return_by_confidence": return_by_confidence,
        "signal_economics": signal_economics,
        "symbol_table": symbol_table,
        "model_versions": {"versions": version_rows, "comparison": comparison, "note": note},
        "monitoring": monitoring_block,
    }
