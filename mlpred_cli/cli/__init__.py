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
    "config_commands",
)

for _module in COMMAND_MODULES:
    importlib.import_module(f"mlpred_cli.cli.{_module}")  # each registers its commands


def main() -> None:
    """Run the command line (the console script is ``mlpred_cli.console_script.main``,
    which reads ``--config`` first)."""
    from mlpred_cli.console_script import main as console_main

    console_main()


__all__ = ["app", "main"]
