"""Running the ``mlpred`` CLI in-process, with stdout and stderr kept apart."""

from __future__ import annotations

from collections.abc import Mapping

from typer.testing import CliRunner

from mlpred_cli.cli import app

runner = CliRunner()


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Invoke ``mlpred ARGS``; returns (exit code, stdout, stderr)."""
    result = runner.invoke(app, list(args), env=dict(env or {}), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr
