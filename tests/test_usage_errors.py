"""Usage errors are one line plus where to find help; the console script's global options;
shell completion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlpred_cli.__about__ import __version__
from mlpred_cli.console_script import config_flag
from tests.cli_helpers import run_cli

BOX_CHARACTERS = set("╭╮╰╯│─")


@pytest.mark.parametrize(
    ("args", "first_line", "command_path"),
    [
        (
            ["accuracy", "--format", "xml"],
            "Error: Invalid value for '--format' / '-f': 'xml' is not one of 'table', 'json', "
            "'csv'.",
            "mlpred accuracy",
        ),
        (["accuracy", "--nope"], "Error: No such option: --nope", "mlpred accuracy"),
        (["nope"], "Error: No such command 'nope'.", "mlpred"),
        (["recent", "--limit"], "Error: Option '--limit' requires an argument.", "mlpred recent"),
        (
            ["--db", "x.db", "recent", "-n"],
            "Error: Option '-n' requires an argument.",
            "mlpred recent",
        ),
        (["spool", "status", "extra"], "Error: Got unexpected extra argument", None),
    ],
)
def test_a_usage_error_is_one_line_and_a_hint(
    args: list[str], first_line: str, command_path: str | None
) -> None:
    code, stdout, stderr = run_cli(*args)
    assert code == 2
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 2, stderr
    assert lines[0].startswith(first_line)
    expected_path = command_path or "mlpred " + " ".join(args[:2])
    assert lines[1] == f"Try '{expected_path} --help' for help."
    assert not BOX_CHARACTERS & set(stderr)


def test_no_command_still_prints_the_help() -> None:
    code, stdout, _ = run_cli()
    assert code == 2
    assert "Usage: mlpred" in stdout
    assert "log-test" in stdout


def test_version_prints_the_package_version() -> None:
    code, stdout, _ = run_cli("--version")
    assert code == 0
    assert stdout.strip() == f"mlpred {__version__}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], None),
        (["--config", "a.toml", "recent"], "a.toml"),
        (["--config=b.toml", "recent"], "b.toml"),
        (["--db", "x.db", "--config", "c.toml", "analyze"], "c.toml"),
        (["--db", "--config", "recent"], None),  # "--config" is --db's value here
        (["recent", "--config", "d.toml"], None),  # after the command: not the global option
        (["--config"], None),
    ],
)
def test_the_console_script_finds_the_global_config_option(
    args: list[str], expected: str | None
) -> None:
    assert config_flag(args) == expected


def test_config_given_to_the_app_in_process_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "mlpred.toml"
    path.write_text("")
    code, _, stderr = run_cli("--config", str(path), "recent")
    assert code == 2
    assert "read when mlpred starts" in stderr.splitlines()[0]


def _console_script() -> Path:
    script = Path(sys.executable).with_name("mlpred")
    if not script.exists():
        pytest.skip(f"no mlpred console script beside {sys.executable}")
    return script


def test_bash_completion_completes_command_names() -> None:
    env = {
        **os.environ,
        "_MLPRED_COMPLETE": "complete_bash",
        "COMP_WORDS": "mlpred acc",
        "COMP_CWORD": "1",
    }
    done = subprocess.run(
        [str(_console_script())], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert done.stdout.split() == ["accuracy"]


def test_show_completion_prints_a_bash_script() -> None:
    done = subprocess.run(
        [str(_console_script()), "--show-completion", "bash"],
        env={**os.environ, "SHELL": "/bin/bash"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "_mlpred_completion()" in done.stdout
    assert "complete -o default -F _mlpred_completion mlpred" in done.stdout


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--bogus", "check"], 3),  # a global option's error still runs check: Nagios UNKNOWN
        (["check", "--bogus"], 3),
        (["--bogus", "recent"], 2),
    ],
)
def test_usage_errors_of_check_exit_3_whichever_option_was_wrong(
    args: list[str], code: int
) -> None:
    exit_code, _, stderr = run_cli(*args)
    assert exit_code == code
    assert stderr.splitlines()[0] == "Error: No such option: --bogus"


@pytest.mark.parametrize("group", ["spool", "feature-importance", "partitions", "rollup", "config"])
def test_a_command_group_without_its_command_prints_its_help(group: str) -> None:
    code, stdout, _ = run_cli(group)
    assert code == 2
    assert f"Usage: mlpred {group} [OPTIONS] COMMAND" in stdout
