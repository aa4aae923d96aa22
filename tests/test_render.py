"""The shared renderer: JSON-safe values and CSV/JSON shapes."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from mlpred_cli.render.output import emit_rows, to_jsonable
from mlpred_cli.render.output_format import OutputFormat


def test_unknown_values_become_null_and_times_iso() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    pid = uuid.UUID(int=1)
    converted = to_jsonable(
        {
            "nat": pd.NaT,
            "nan": float("nan"),
            "inf": np.float64("inf"),
            "int": np.int64(7),
            "bool": np.bool_(True),
            "when": moment,
            "pid": pid,
            "nested": [np.float32(0.5), None],
        }
    )
    assert converted == {
        "nat": None,
        "nan": None,
        "inf": None,
        "int": 7,
        "bool": True,
        "when": "2026-01-02T03:04:05+00:00",
        "pid": str(pid),
        "nested": [0.5, None],
    }


def test_json_and_csv_rows_keep_column_order() -> None:
    rows = [{"b": 1.5, "a": None}, {"b": float("nan"), "a": "x"}]
    out = io.StringIO()
    emit_rows(rows, OutputFormat.json, columns=["a", "b"], out=out)
    assert json.loads(out.getvalue()) == [{"a": None, "b": 1.5}, {"a": "x", "b": None}]
    out = io.StringIO()
    emit_rows(rows, OutputFormat.csv, columns=["a", "b"], out=out)
    assert out.getvalue().splitlines() == ["a,b", ",1.5", "x,"]
