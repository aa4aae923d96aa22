"""The ``mlpred`` console script: choose the config file, then run the command line.

The config file's values become the module constants of ``mlpred_cli.config`` when that
module is first imported, and every other module binds them at its own import. So the
``--config FILE`` global option is read from the command line here, before the application
(and with it ``mlpred_cli.config``) is imported; an invalid file is a one-line error, exit 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

#: Global options that take a value, so the scan for ``--config`` can skip over the value.
_VALUE_OPTIONS = frozenset({"--db", "--config"})


def config_flag(args: Sequence[str]) -> str | None:
    """The value of the global ``--config`` option in ``args`` (before the command), if any."""
    return _scan_globals(args)[0]


def command_name(args: Sequence[str]) -> str | None:
    """The command ``args`` run (the first word after the global options), if any."""
    return _scan_globals(args)[1]


def _scan_globals(args: Sequence[str]) -> tuple[str | None, str | None]:
    index = 0
    found: str | None = None
    while index < len(args):
        token = args[index]
        if not token.startswith("-"):
            return found, token  # the command: what follows belongs to it
        name, equals, value = token.partition("=")
        if name == "--config":
            if equals:
                found = value
            elif index + 1 < len(args):
                found = args[index + 1]
        if name in _VALUE_OPTIONS and not equals:
            index += 1
        index += 1
    return found, None


#: ``mlpred check`` follows the Nagios plugin convention: a run that cannot judge, bad
#: usage and a bad config file included, exits 3 (UNKNOWN).
NAGIOS_COMMANDS = frozenset({"check"})
NAGIOS_UNKNOWN = 3


def main() -> None:
    """Console-script entry point: ``mlpred [--db URL] [--config FILE] COMMAND ...``."""
    from mlpred_cli import config_file
    from mlpred_cli.errors import MlpredError

    args = sys.argv[1:]
    flag = config_flag(args)
    try:
        if flag is not None:
            config_file.select_config_file(flag)
        from mlpred_cli.cli import app
    except MlpredError as error:
        print(f"Error: {error}", file=sys.stderr)
        nagios = command_name(args) in NAGIOS_COMMANDS
        sys.exit(NAGIOS_UNKNOWN if nagios else error.exit_code)
    app()
