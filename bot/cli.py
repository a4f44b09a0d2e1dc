"""The `meeting-bot` command (also `python -m bot`): one subcommand per module in `COMMANDS`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Protocol

from bot.commands import guarded


class Command(Protocol):
    """A subcommand module (bot.commands): its help texts, its arguments, and what it runs."""

    HELP: str
    DESCRIPTION: str

    def add_arguments(self, p: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# Command name → its module (a `Command`). Only the module of the command
# being run is imported: `join` should not pay for the API server's imports (tens of MB per bot).
COMMANDS: dict[str, str] = {
    "join": "bot.commands.join",
    "demo": "bot.commands.demo",
    "schedule": "bot.commands.schedule",
    "list": "bot.commands.list_bots",
    "cancel": "bot.commands.cancel",
    "serve": "bot.commands.serve",
    "worker": "bot.commands.worker",
    "bridge": "bot.commands.bridge",
    "agent-standin": "bot.commands.agent_standin",
    "login": "bot.commands.login",
    "classify-page": "bot.commands.classify_page",
    "config": "bot.commands.config",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (with `only`, a command name) one whose only subcommand is that command."""
    parser = argparse.ArgumentParser(
        prog="meeting-bot",
        description="Send a bot into a Google Meet, Zoom or Teams call to talk with a Millis AI voice agent.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        if only is None or name == only:
            module: Command = importlib.import_module(module_name)  # type: ignore[assignment]
            p = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
            module.add_arguments(p)
            p.set_defaults(func=guarded(module.run))
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    words = [a for a in argv if not a.startswith("-")]
    return words[0] if words and words[0] in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_in(argv))
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
