"""The ``mlpred`` command line: a thin layer over the library."""

from __future__ import annotations

import importlib

from mlpred_cli.cli.app import app

#: Command modules, in the order ``mlpred --help`` lists their commands.
COMMAND_MODULES = (
    "database_commands",
    "log_commands",
    "outcome_commands",
    "analysis_commands",
    "model_commands",
    "rollup_commands",
    "partition_commands",
    "archive_commands",
    "monitor_commands",
    "report_commands",
    "serve_commands",
)

for _module in COMMAND_MODULES:
    importlib.import_module(f"mlpred_cli.cli.{_module}")  # each registers its commands


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
