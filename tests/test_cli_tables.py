"""Tables at 80 columns (a pipe, cron): no line longer, no cell split, and a note naming the
columns left out; empty results said in words; ``accuracy --by day`` in date order."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from mlpred_cli.config import HORIZONS
from mlpred_cli.render.analysis import interval_cell
from tests.cli_helpers import run_cli
from tests.factories import insert_predictions, prediction_row

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
NARROW = {"COLUMNS": "80"}
WIDE = {"COLUMNS": "250"}
NOTE = re.compile(r"\(left out at 80 columns: ([^;]+); see COLUMNS=\d+ or --format csv\)")


def _notes(out: str) -> list[str]:
    """The columns each "left out" note names (a long note wraps over lines)."""
    return NOTE.findall(" ".join(out.split()))


def _scored(row: dict[str, object], actual: str, step: int) -> dict[str, object]:
    for horizon in HORIZONS:
        row[f"predicted_return_{horizon}"] = 0.001 * (step % 7 - 3)
        row[f"actual_direction_{horizon}"] = actual
        row[f"actual_return_{horizon}"] = 0.002 * (step % 5 - 2)
        row[f"accuracy_{horizon}"] = row[f"direction_{horizon}"] == actual
    return row


@pytest.fixture
def planted(engine: Engine, db_url: str) -> list[datetime]:
    """40 scored predictions of a long model version over the last 20 hours; their times."""
    moments = [NOW - timedelta(minutes=30 * step + 7) for step in range(40)]
    rows = [
        _scored(
            prediction_row(
                ("BTCUSDT", "ETHUSDT")[step % 2],
                moment,
                model_version="v2026.11-experimental-long",
                signal_confidence=0.81 + step / 1000,
            ),
            ("LONG", "SHORT", "LONG")[step % 3],
            step,
        )
        for step, moment in enumerate(moments)
    ]
    insert_predictions(engine, rows)
    return moments


def _assert_fits(out: str) -> None:
    long_lines = [line for line in out.splitlines() if len(line) > 80]
    assert not long_lines, long_lines


def _minute(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize("command", ["recent", "high-confidence"])
def test_prediction_tables_keep_timestamps_whole_at_80_columns(
    planted: list[datetime], db_url: str, command: str
) -> None:
    args = ("--db", db_url, command, "--days", "2", "--limit", "40")
    code, out, err = run_cli(*args, env=NARROW)
    assert code == 0, err
    _assert_fits(out)
    lines = out.splitlines()
    for moment in planted:
        assert any(_minute(moment) in line for line in lines), _minute(moment)
    assert _notes(out) == ["model"]  # the model version goes first; the outcomes stay
    assert "v2026.11-experimental-long" not in out
    header = next(line for line in lines if "time (UTC)" in line)
    assert header.split()[-4:] == list(HORIZONS)

    code, wide, _ = run_cli(*args, env=WIDE)
    assert "v2026.11-experimental-long" in wide
    assert "left out" not in wide


def test_analyze_keeps_intervals_and_numbers_whole_at_80_columns(
    planted: list[datetime], db_url: str
) -> None:
    code, out, err = run_cli("--db", db_url, "analyze", "--days", "2", env=NARROW)
    assert code == 0, err
    _assert_fits(out)
    _, document, _ = run_cli("--db", db_url, "analyze", "--days", "2", "--format", "json")
    report = json.loads(document)
    lines = out.splitlines()
    for item in report["horizons"]:
        cell = interval_cell(item["accuracy"], item["accuracy_low"], item["accuracy_high"])
        assert any(cell in line for line in lines), cell
    for entry in report["symbols"]:
        assert any(entry["symbol"] in line and "n=" in line for line in lines)
    assert _notes(out)  # the horizon table is too wide


def test_accuracy_table_fits_and_says_what_it_left_out(
    planted: list[datetime], db_url: str
) -> None:
    args = ("--db", db_url, "accuracy", "--by", "model_version", "--days", "2")
    code, out, err = run_cli(*args, env=NARROW)
    assert code == 0, err
    _assert_fits(out)
    _, document, _ = run_cli(*args, "--format", "json")
    lines = out.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("model_version"))
    shown = [horizon for horizon in HORIZONS if horizon in header.split()]
    assert shown
    for record in json.loads(document):
        assert any(record["model_version"] in line for line in lines)
        for horizon in shown:
            cell = interval_cell(
                record[f"accuracy_{horizon}"],
                record[f"accuracy_{horizon}_low"],
                record[f"accuracy_{horizon}_high"],
                record[f"n_{horizon}"],
            )
            assert any(cell in line for line in lines), cell
    notes = _notes(out)
    assert notes and "mean conf" in notes[0]


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_empty_results_say_so(db_url: str, fmt: str) -> None:
    cases = [
        (("accuracy", "--symbol", "NOPE"), "No predictions for NOPE"),
        (("accuracy", "-s", "NOPE", "--days", "7"), "No predictions for NOPE in the last 7 days"),
        (("recent",), "No predictions in the last 1 hour"),
        (("recent", "--hours", "6", "-s", "NOPE"), "No predictions for NOPE in the last 6 hours"),
        (("high-confidence", "--days", "3"),
         "No LONG/SHORT signals with confidence > 0.8 in the last 3 days"),
    ]  # fmt: skip
    for args, message in cases:
        code, out, err = run_cli("--db", db_url, *args, "--format", fmt)
        assert code == 0, err
        if fmt == "table":
            assert out.strip() == message
            continue
        assert err.strip() == message
        if fmt == "json":
            assert json.loads(out) == []
        else:
            header = next(csv.reader(io.StringIO(out)))
            assert header[0] in ("symbol", "prediction_id") and len(header) > 5


def test_accuracy_by_day_is_in_date_order(engine: Engine, db_url: str) -> None:
    today = NOW.replace(hour=0, minute=0)
    counts = {3: 1, 2: 4, 1: 2}  # days ago -> predictions: the middle day is the largest
    rows = [
        prediction_row("BTCUSDT", today - timedelta(days=ago) + timedelta(hours=1 + number))
        for ago, count in counts.items()
        for number in range(count)
    ]
    insert_predictions(engine, rows)
    code, out, err = run_cli("--db", db_url, "rollup", "rebuild")
    assert code == 0, err
    code, out, err = run_cli("--db", db_url, "accuracy", "--by", "day", "--days", "5", "-f", "json")
    assert code == 0, err
    records = json.loads(out)
    days = [(today - timedelta(days=ago)).date().isoformat() for ago in (3, 2, 1)]
    assert [record["day"] for record in records] == days
    assert [record["total"] for record in records] == [1, 4, 2]


def test_free_text_wraps_at_spaces_and_numbers_stay_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlpred_cli.render.output import emit_object, emit_rows
    from mlpred_cli.render.output_format import OutputFormat

    monkeypatch.setenv("COLUMNS", "80")
    days = ", ".join(f"2026-12-{day:02d}" for day in range(1, 21))
    out = io.StringIO()
    emit_object({"created": days, "moved_from_default": 1234567}, OutputFormat.table, out=out)
    text = out.getvalue()
    _assert_fits(text)
    assert "left out" not in text  # a free-text value wraps instead of being dropped
    assert "1,234,567" in text
    assert all(f"2026-12-{day:02d}" in text for day in range(1, 21))  # each day whole

    rows = [{"name": "x" * 30, "p_value": 0.0123456, "n": 123456789, "extra": "y" * 40}]
    out = io.StringIO()
    emit_rows(rows, OutputFormat.table, drop_first=["name"], out=out)
    text = out.getvalue()
    _assert_fits(text)
    assert "0.012346" in text and "123,456,789" in text and "y" * 40 in text
    assert _notes(text) == ["name"]
