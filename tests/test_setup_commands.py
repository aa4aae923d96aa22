"""The README's two set-up commands and CI: `.ci/run` runs the README's test command verbatim,
in the checkout's own `.venv`, and makes a run that would skip PostgreSQL fail."""

from __future__ import annotations

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
RUN_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/mlpred log-test"
TEST_COMMAND = (
    'python3 -m venv .venv && .venv/bin/pip install -q -e ".[dev]" '
    "&& .venv/bin/python -m pytest -q -n 2"
)


def _ci_lines() -> list[str]:
    return (REPOSITORY / ".ci" / "run").read_text().splitlines()


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    lines = _ci_lines()
    assert lines[-1] == TEST_COMMAND
    assert lines[-2] == "# The README's test command, verbatim:"


def test_ci_leaves_no_virtualenv_in_tmp_and_requires_postgres() -> None:
    script = "\n".join(line for line in _ci_lines() if not line.lstrip().startswith("#"))
    assert "mktemp" not in script and "/tmp" not in script
    assert "export MLPRED_TEST_REQUIRE_PG=1" in script
    assert "MLPRED_TEST_PG_URL" not in script
    for tool in ("ruff check .", "ruff format --check .", "mypy mlpred_cli", "lint-imports"):
        assert f".venv/bin/{tool}" in script


def test_the_readme_shows_both_commands() -> None:
    readme = (REPOSITORY / "README.md").read_text()
    assert f"\n{RUN_COMMAND}\n" in readme
    assert f"\n{TEST_COMMAND}\n" in readme
