"""Every numeric option of the analysis, model, monitoring, report and partition commands
with extreme values: out of range is a one-line error (exit 2; ``check``: 3, its Nagios
UNKNOWN), in range works; never a traceback. Raw driver errors are one line too."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa
import typer

from mlpred_cli.cli.bounds import MAX_COUNT, MAX_DAYS, MAX_HOURS
from mlpred_cli.cli.common import cli_errors
from tests.cli_helpers import run_cli

EXTREMES = ("1e10", "inf", "nan", "800000", "-1", "0", "99999999999999999999")

#: (command line before the option, option, the extreme values it accepts, usage exit code)
OPTIONS: list[tuple[tuple[str, ...], str, frozenset[str], int]] = [
    (("analyze",), "--days", frozenset(), 2),
    (("accuracy",), "--days", frozenset(), 2),
    (("accuracy",), "--min-count", frozenset({"800000", "0"}), 2),
    (("high-confidence",), "--days", frozenset(), 2),
    (("high-confidence",), "--limit", frozenset({"800000"}), 2),
    (("high-confidence",), "--min-confidence", frozenset({"0"}), 2),
    (("recent",), "--hours", frozenset({"800000"}), 2),
    (("recent",), "--days", frozenset(), 2),
    (("recent",), "--limit", frozenset({"800000"}), 2),
    (("feature-importance", "compute"), "--days", frozenset(), 2),
    (("feature-importance", "compute"), "--top", frozenset({"800000"}), 2),
    (("feature-importance", "show"), "--top", frozenset({"800000"}), 2),
    (("compare-models", "v1", "v2"), "--days", frozenset(), 2),
    (("check",), "--days", frozenset(), 3),
    (("check",), "--reference-days", frozenset(), 3),
    (("report", "--out", "-"), "--days", frozenset(), 2),
    (("partitions", "ensure"), "--days-ahead", frozenset({"0"}), 2),
]


def _error_lines(err: str) -> list[str]:
    """stderr without the usage hint line (``Try 'mlpred CMD --help' for help.``)."""
    return [line for line in err.splitlines() if line.strip() and not line.startswith("Try ")]


@pytest.mark.parametrize(
    ("command", "option", "accepted", "usage_code"),
    OPTIONS,
    ids=[f"{' '.join(c[:2])} {o}" for c, o, _, _ in OPTIONS],
)
def test_extreme_values_are_one_line_errors_or_work(
    db_url: str, command: tuple[str, ...], option: str, accepted: frozenset[str], usage_code: int
) -> None:
    for value in EXTREMES:
        code, out, err = run_cli("--db", db_url, *command, option, value)
        assert "Traceback" not in out + err, (value, err)
        if value in accepted:
            # in range: the command runs (exit 1 only for a one-line "not enough data")
            assert code in (0, 1), (value, code, err)
            if code == 1:
                assert len(_error_lines(err)) == 1, (value, err)
            continue
        assert code == usage_code, (value, code, out, err)
        lines = _error_lines(err)
        if command[0] == "check" and not lines:  # a library refusal: check's UNKNOWN line
            lines = [line.replace("mlpred check UNKNOWN:", "Error:") for line in out.splitlines()]
        assert len(lines) == 1, (value, out, err)
        assert lines[0].startswith("Error:"), (value, err)
        assert option in lines[0] or option.lstrip("-") in lines[0], (value, lines)


@pytest.mark.parametrize(
    "args",
    [
        ("analyze", "--days", str(MAX_DAYS)),
        ("accuracy", "--days", str(MAX_DAYS), "--min-count", str(MAX_COUNT)),
        ("recent", "--hours", str(MAX_HOURS), "--limit", str(MAX_COUNT)),
        ("high-confidence", "--days", str(MAX_DAYS), "--limit", str(MAX_COUNT)),
    ],
    ids=["analyze", "accuracy", "recent", "high-confidence"],
)
def test_the_largest_values_in_range_are_served(db_url: str, args: tuple[str, ...]) -> None:
    code, out, err = run_cli("--db", db_url, *args)
    assert code == 0, err
    assert out.startswith("No ")  # an empty database: said so, in one line
    assert len(out.splitlines()) == 1


def test_the_library_refuses_a_window_past_the_calendar(db_url: str) -> None:
    from mlpred_cli.analysis.prediction_views import recent_predictions
    from mlpred_cli.errors import InputError

    with pytest.raises(InputError, match="reaches past the calendar"):
        recent_predictions(db_url, hours=1e12)


@pytest.mark.parametrize(
    "error",
    [
        sqlite3.OperationalError("disk I/O error\nsecond line"),
        sa.exc.ProgrammingError(
            "SELECT 1", {}, sqlite3.ProgrammingError("no such thing: postgresql://u:secret@h/db")
        ),
        sa.exc.NoSuchTableError("ml_predictions"),
    ],
    ids=["sqlite3", "sqlalchemy-dbapi", "sqlalchemy-other"],
)
def test_a_raw_driver_error_is_one_line(
    error: Exception, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as exit_info, cli_errors():
        raise error
    assert exit_info.value.exit_code == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("Error: ")
    assert "secret" not in err
    assert "second line" not in err


def test_other_errors_keep_their_traceback() -> None:
    with pytest.raises(ZeroDivisionError), cli_errors():
        raise ZeroDivisionError("a bug")
