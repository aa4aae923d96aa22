"""Accuracy counts from rollup rows against the same counts computed row by row."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mlpred_cli.analysis.rollup_figures import accuracy_counts
from mlpred_cli.config import HORIZONS


def _rollup_rows(seed: int) -> pd.DataFrame:
    """Rows per (symbol, horizon) with repeated keys (as parts of a read are before they are
    summed), a symbol with no row of the first horizon and a missing symbol."""
    rng = np.random.default_rng(seed)
    rows = []
    for symbol in ["AAA", "BBB", "CCC", "DDD", None]:
        for horizon in HORIZONS:
            if symbol == "DDD" and horizon == HORIZONS[0]:
                continue
            for _ in range(int(rng.integers(1, 4))):
                scored = int(rng.integers(0, 50))
                rows.append(
                    {
                        "symbol": symbol,
                        "horizon": horizon,
                        "predictions": 100 + int(rng.integers(0, 50)),
                        "with_outcome": 60,
                        "confidence_n": int(rng.integers(0, 3)) * 10,
                        "confidence_sum": float(rng.random() * 5),
                        "scored": scored,
                        "correct": int(rng.integers(0, scored + 1)),
                    }
                )
    return pd.DataFrame(rows)


def test_accuracy_counts_sum_repeated_keys_per_group_and_horizon() -> None:
    frame = _rollup_rows(3)
    table = accuracy_counts(frame, "symbol", HORIZONS, min_count=0)
    known = frame[frame["symbol"].notna()]
    first = known[known["horizon"] == HORIZONS[0]].groupby("symbol").sum(numeric_only=True)
    # DDD has no row of the first horizon (which carries the row totals); None is no group
    assert sorted(table["symbol"]) == ["AAA", "BBB", "CCC"]
    assert list(table["total"]) == sorted(first["predictions"], reverse=True)
    for _, row in table.iterrows():
        symbol = row["symbol"]
        assert row["total"] == first.loc[symbol, "predictions"]
        assert row["n_outcomes"] == first.loc[symbol, "with_outcome"]
        n, total = first.loc[symbol, "confidence_n"], first.loc[symbol, "confidence_sum"]
        if n > 0:
            assert math.isclose(row["avg_confidence"], total / n, rel_tol=1e-12)
        else:
            assert row["avg_confidence"] is None
        for horizon in HORIZONS:
            part = known[(known["symbol"] == symbol) & (known["horizon"] == horizon)]
            assert row[f"n_{horizon}"] == part["scored"].sum()
            assert row[f"correct_{horizon}"] == part["correct"].sum()
    smallest = int(table["total"].min())
    kept = accuracy_counts(frame, "symbol", HORIZONS, min_count=smallest + 1)
    assert len(kept) == len(table) - 1 and smallest not in set(kept["total"])


def test_accuracy_counts_by_day_in_date_order_with_one_horizon() -> None:
    frame = _rollup_rows(4).rename(columns={"symbol": "day"})
    frame["day"] = frame["day"].map(
        {"AAA": "2026-03-02", "BBB": "2026-01-05", "CCC": "2026-02-01", "DDD": "2026-01-01"}
    )
    table = accuracy_counts(frame, "day", [HORIZONS[2]])
    assert list(table["day"]) == ["2026-01-05", "2026-02-01", "2026-03-02"]
    assert list(table.columns) == [
        "day", "total", "n_outcomes", "avg_confidence",
        f"n_{HORIZONS[2]}", f"correct_{HORIZONS[2]}",
    ]  # fmt: skip
