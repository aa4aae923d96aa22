"""The analysis commands end to end: filters, JSON and CSV shapes, empty and fresh databases,
bad options."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from mlpred_cli.config import HORIZONS
from tests.cli_helpers import run_cli
from tests.factories import insert_predictions, prediction_row

pytestmark = pytest.mark.both_layouts

NOW = datetime.now(UTC)


def _with_outcome(row: dict[str, object], actual: str) -> dict[str, object]:
    for horizon in HORIZONS:
        row[f"actual_direction_{horizon}"] = actual
        row[f"actual_return_{horizon}"] = 0.01 if actual == "LONG" else -0.01
        row[f"accuracy_{horizon}"] = row[f"direction_{horizon}"] == actual
    return row


@pytest.fixture
def filled(engine: Engine, db_url: str) -> str:
    """BTCUSDT: 2 recent right, 1 recent wrong, 1 forty days old; ETHUSDT: 1 recent wrong."""
    rows = [
        _with_outcome(prediction_row("BTCUSDT", NOW - timedelta(hours=1)), "LONG"),
        _with_outcome(
            prediction_row("BTCUSDT", NOW - timedelta(days=2), signal_confidence=0.9), "LONG"
        ),
        _with_outcome(prediction_row("BTCUSDT", NOW - timedelta(days=3)), "SHORT"),
        _with_outcome(prediction_row("BTCUSDT", NOW - timedelta(days=40)), "LONG"),
        _with_outcome(prediction_row("ETHUSDT", NOW - timedelta(hours=2)), "SHORT"),
    ]
    insert_predictions(engine, rows)
    return db_url


def test_analyze_json_contract_and_filters(filled: str) -> None:
    code, out, err = run_cli("--db", filled, "analyze", "--symbol", "BTCUSDT", "--days", "30",
                             "--format", "json")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    for key in ["overview", "signals", "horizons", "confidence_bins", "calibration",
                "symbols", "input_health", "performance"]:  # fmt: skip
        assert key in report
    assert report["overview"]["predictions"] == 3  # the 40-day-old row and ETHUSDT left out
    assert report["overview"]["symbols"] == ["BTCUSDT"]
    datetime.fromisoformat(report["overview"]["first"])  # ISO time
    first = report["horizons"][0]
    assert set(first) >= {"horizon", "n", "accuracy", "accuracy_low", "accuracy_high",
                          "hit_rate", "base_rate", "mae", "rmse", "ic"}  # fmt: skip
    assert (first["horizon"], first["n"], first["accuracy"]) == ("15m", 3, pytest.approx(2 / 3))
    assert first["ic"] is None  # constant predicted returns: rank correlation undefined

    code, out, _ = run_cli("--db", filled, "analyze", "--days", "1", "--format", "json")
    assert json.loads(out)["overview"]["predictions"] == 2


def test_analyze_table_and_csv(filled: str) -> None:
    code, out, _ = run_cli("--db", filled, "analyze", "--days", "30")
    assert code == 0
    assert "Accuracy per horizon" in out
    assert "Signal confidence bins" in out
    code, out, _ = run_cli("--db", filled, "analyze", "--days", "30", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["section", "item", "metric", "value"]
    lookup = {(r["section"], r["item"], r["metric"]): r["value"] for r in rows}
    assert lookup[("overview", "", "predictions")] == "4"
    assert lookup[("horizons", "15m", "n")] == "4"
    assert float(lookup[("horizons", "15m", "accuracy")]) == pytest.approx(0.5)


def test_analyze_empty_selection_message(filled: str) -> None:
    code, out, _ = run_cli("--db", filled, "analyze", "--symbol", "BTCUSDT", "--days", "0.01")
    assert code == 0
    assert out.strip() == "No predictions for BTCUSDT in the last 0.01 days"
    code, out, err = run_cli("--db", filled, "analyze", "--symbol", "XRPUSDT", "-f", "json")
    assert code == 0
    assert json.loads(out)["overview"]["predictions"] == 0
    assert "No predictions for XRPUSDT in the last 7 days" in err


def test_accuracy_json_contract(filled: str) -> None:
    code, out, err = run_cli("--db", filled, "accuracy", "--by", "symbol", "--format", "json")
    assert code == 0, err
    groups = json.loads(out)
    assert [g["symbol"] for g in groups] == ["BTCUSDT", "ETHUSDT"]
    btc = groups[0]
    assert btc["total"] == 4
    assert isinstance(btc["avg_confidence"], float)
    for horizon in HORIZONS:
        assert {f"n_{horizon}", f"accuracy_{horizon}", f"accuracy_{horizon}_low",
                f"accuracy_{horizon}_high"} <= set(btc)  # fmt: skip
    assert btc["accuracy_1h"] == 0.75
    code, out, _ = run_cli("--db", filled, "accuracy", "--horizon", "1h", "--days", "30",
                           "--symbol", "BTCUSDT", "--format", "csv")  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["symbol", "total", "n_outcomes", "avg_confidence", "n_1h",
                             "accuracy_1h", "accuracy_1h_low", "accuracy_1h_high",
                             "n_1h_effective", "accuracy_1h_overlap_low",
                             "accuracy_1h_overlap_high"]  # fmt: skip
    assert [(r["symbol"], r["total"]) for r in rows] == [("BTCUSDT", "3")]


def test_high_confidence_and_recent_json(filled: str) -> None:
    code, out, err = run_cli("--db", filled, "high-confidence", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 1
    assert rows[0]["signal_confidence"] == 0.9
    assert rows[0]["actual_direction_1h"] == "LONG"
    assert rows[0]["accuracy_1h"] is True
    assert {"prediction_id", "symbol", "datetime", "signal_type", "direction_15m"} <= set(rows[0])

    code, out, _ = run_cli("--db", filled, "recent", "--hours", "3", "--format", "json")
    assert [r["symbol"] for r in json.loads(out)] == ["BTCUSDT", "ETHUSDT"]
    code, out, _ = run_cli("--db", filled, "recent", "--hours", "3")
    assert code == 0
    assert "L→L ✓" in out


def test_all_commands_on_a_database_without_outcomes(engine: Engine, db_url: str) -> None:
    insert_predictions(engine, [prediction_row("BTCUSDT", NOW - timedelta(minutes=5),
                                               signal_confidence=0.95)])  # fmt: skip
    for command in (["analyze"], ["accuracy"], ["high-confidence"], ["recent"]):
        for fmt in ("table", "json", "csv"):
            code, out, err = run_cli("--db", db_url, *command, "--format", fmt)
            assert code == 0, (command, fmt, err)
    code, out, _ = run_cli("--db", db_url, "accuracy", "--format", "json")
    assert json.loads(out)[0]["accuracy_15m"] is None
    code, out, _ = run_cli("--db", db_url, "high-confidence", "--format", "json")
    assert json.loads(out)[0]["actual_direction_15m"] is None


def test_empty_database(db_url: str) -> None:
    code, out, _ = run_cli("--db", db_url, "analyze")
    assert (code, out.strip()) == (0, "No predictions in the last 7 days")
    for command in ("accuracy", "high-confidence", "recent"):
        code, out, _ = run_cli("--db", db_url, command, "--format", "json")
        assert (code, json.loads(out)) == (0, [])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["analyze", "--days", "-3"], "--days must be positive"),
        (["accuracy", "--horizon", "2h"], "unknown horizon '2h'"),
        (["accuracy", "--by", "weekday"], "cannot group by 'weekday'"),
        (["analyze", "--since", "2026-03-02", "--until", "2026-03-01"], "--since must be before"),
        (["recent", "--days", "1", "--since", "2026-03-01"], "not both"),
        (["high-confidence", "--limit", "0"], "--limit must be at least 1"),
        (["analyze", "--export", "out.xlsx"], ".csv or .parquet"),
    ],
)
def test_bad_options_exit_2_with_one_line(db_url: str, args: list[str], message: str) -> None:
    code, out, err = run_cli("--db", db_url, *args)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out


@pytest.mark.parametrize("command", ["analyze", "accuracy", "high-confidence", "recent"])
def test_help_examples_run_as_written(filled: str, command: str) -> None:
    code, help_text, _ = run_cli(command, "--help")
    assert code == 0
    examples = [line.strip() for line in help_text.splitlines()
                if line.strip().startswith(f"mlpred {command}")]  # fmt: skip
    assert examples
    for example in examples:
        code, _, err = run_cli("--db", filled, *example.split()[1:])
        assert code == 0, (example, err)


def test_bad_options_are_reported_before_the_database_is_checked(empty_db_url: str) -> None:
    """A typo in an option is a usage error (2), even on a database not yet initialised."""
    for args in (
        ["analyze", "--days", "-1"],
        ["accuracy", "--horizon", "2h"],
        ["recent", "--hours", "0"],
        ["high-confidence", "--min-confidence", "2"],
    ):
        code, _, err = run_cli("--db", empty_db_url, *args)
        assert code == 2, (args, err)
    code, _, err = run_cli("--db", empty_db_url, "analyze")
    assert code == 1
    assert "mlpred init-db" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recent", "--hours", "0"], "--hours must be positive, got 0"),
        (["recent", "--days", "1", "--since", "2026-03-01"],
         "give --days/--hours or --since/--until, not both"),
        (["analyze", "--since", "yesterday"], "--since: 'yesterday' is not an ISO 8601 time"),
        (["accuracy", "--min-count", "-1"], "--min-count must not be negative, got -1"),
        (["high-confidence", "--min-confidence", "2"], "--min-confidence must be within [0, 1]"),
        (["analyze", "--export", "out.xlsx"], "--export: out.xlsx must end in .csv or .parquet"),
    ],
)  # fmt: skip
def test_the_cli_names_flags_where_the_library_names_parameters(
    db_url: str, args: list[str], message: str
) -> None:
    code, _, err = run_cli("--db", db_url, *args)
    assert code == 2
    assert message in " ".join(err.split())


def test_flag_wording_leaves_values_and_paths_alone() -> None:
    from mlpred_cli.cli.common import flag_wording

    assert flag_wording("since must be before until") == "--since must be before --until"
    assert flag_wording("top must be at least 1, got 0") == "--top must be at least 1, got 0"
    assert flag_wording("no prediction in the last 30 days has x; give days") == (
        "no prediction in the last 30 days has x; give --days"
    )
    assert flag_wording("cannot read feature names from /srv/days/f.txt: gone") == (
        "cannot read feature names from /srv/days/f.txt: gone"
    )
    assert flag_wording("unknown model version 'days'") == "unknown model version 'days'"
