"""The `meeting-bot` command (also `python -m bot`): one subcommand per module in `COMMANDS`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Protocol


class Command(Protocol):
    """A subcommand module: registers its parser and sets `func(args) -> exit code` as default."""

    def register(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...


# Each entry is a module with a `register(subparsers)` function.
COMMANDS: list[str] = [
    "bot.commands.join",
    "bot.commands.schedule",
    "bot.commands.list_bots",
    "bot.commands.cancel",
    "bot.commands.serve",
    "bot.commands.bridge",
    "bot.commands.agent_standin",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meeting-bot",
        description="Send a bot into a Google Meet or Zoom call to talk with a Millis AI voice agent.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module: Command = importlib.import_module(name)  # type: ignore[assignment]
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    result: int = func(args)
    return result
