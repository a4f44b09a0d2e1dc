"""One module per `meeting-bot` subcommand (see `bot.cli.COMMANDS`), and the error every command ends with.

A command module gives `HELP`, `DESCRIPTION`, `add_arguments(parser)` and `run(args) -> exit code`; the
CLI builds the parser from them and turns a `CommandError` into its message and exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


class CommandError(Exception):
    """Ends the command with this message and exit code 2 (or `code`)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turns a CommandError into its message on stderr and its exit code."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except CommandError as e:
            print(f"meeting-bot {args.command}: {e}", file=sys.stderr)
            return e.code

    return wrapper
