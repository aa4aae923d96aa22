"""The ``mlpred`` command line: a thin layer over the library."""

from __future__ import annotations

from mlpred_cli.cli import (
    analysis,  # noqa: F401  (registers commands)
    db_commands,  # noqa: F401  (registers commands)
    log_commands,  # noqa: F401  (registers commands)
    models_commands,  # noqa: F401  (registers commands)
    outcomes,  # noqa: F401  (registers commands)
)
from mlpred_cli.cli.app import app


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
