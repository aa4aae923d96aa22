"""The ``--format`` choices of read commands (light: the CLI imports it at start-up)."""

from __future__ import annotations

from enum import StrEnum


class OutputFormat(StrEnum):
    """The ``--format`` choices of read commands."""

    table = "table"
    json = "json"
    csv = "csv"
