"""Usage errors as one line: ``Error: <what is wrong>`` and where to find help.

Typer prints a usage error as a boxed panel of five or six lines under the usage synopsis;
under cron or in a pipe that is noise around one fact. ``OneLineErrorGroup`` is the
application's top-level group: it runs the command line in click's non-standalone mode and
prints each usage error as ``Error: ...`` plus ``Try 'mlpred CMD --help' for help.``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperGroup


def usage_error_lines(error: ClickException, command_path: str) -> list[str]:
    """The one-line message of ``error`` and, for a usage error, the help hint naming the
    command (``command_path`` when the error does not know its command)."""
    message = " ".join(error.format_message().split())
    message = message.replace("Value error, ", "")
    lines = [f"Error: {message}"]
    if isinstance(error, UsageError):
        context = error.ctx
        path = context.command_path if context is not None else command_path
        lines.append(f"Try '{path} --help' for help.")
    return lines


def exit_code_of(error: ClickException, args: Sequence[str]) -> int:
    """The exit code of a usage error: click's, except for a command that follows the Nagios
    convention (``mlpred check``: 3, UNKNOWN), whichever option was wrong."""
    from mlpred_cli.console_script import NAGIOS_COMMANDS, NAGIOS_UNKNOWN, command_name

    return NAGIOS_UNKNOWN if command_name(args) in NAGIOS_COMMANDS else error.exit_code


class OneLineErrorGroup(TyperGroup):
    """The top-level ``mlpred`` group, reporting usage errors in one line (exit 2)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            result = super().main(
                args, prog_name, complete_var, False, windows_expand_args, **extra
            )
        except NoArgsIsHelpError as error:
            help_text = error.format_message()  # rich help prints itself and returns ""
            if help_text:
                print(help_text, file=sys.stderr)
            sys.exit(error.exit_code)
        except ClickException as error:
            for line in usage_error_lines(error, self.command_path_of(args)):
                print(line, file=sys.stderr)
            sys.exit(exit_code_of(error, sys.argv[1:] if args is None else args))
        except typer.Abort:
            print("Aborted.", file=sys.stderr)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def command_path_of(self, args: Sequence[str] | None) -> str:
        """``mlpred`` and the (sub)command names in ``args``, as far as they name commands."""
        words = [self.name or "mlpred"]
        group: Any = self
        tokens = iter(sys.argv[1:] if args is None else args)
        for token in tokens:
            if token.startswith("-"):
                if "=" not in token and _takes_value(group, token):
                    next(tokens, None)
                continue
            command = getattr(group, "commands", {}).get(token)
            if command is None:
                break
            words.append(token)
            group = command
        return " ".join(words)


def _takes_value(command: Any, option: str) -> bool:
    """Whether ``option`` of ``command`` is followed by a value (not a flag)."""
    for param in getattr(command, "params", []):
        if option in getattr(param, "opts", []):
            return not (getattr(param, "is_flag", False) or getattr(param, "count", False))
    return False
