"""`meeting-bot demo`: the whole product offline — a local Meet, Zoom or Teams replica, a simulated person,
the local agent stand-in, and the bot between them — with a timeline of who heard whom."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.outcome import ExitCode
from bot.settings import SettingsError, load_settings

HELP = "run the bot offline against a local meeting replica and agent stand-in"
DESCRIPTION = (
    "Start a local Meet, Zoom or Teams replica, a simulated person who speaks, and a local agent that "
    "answers with speech; send the bot in and print what each side heard. Needs no key and no internet."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--platform",
        choices=("meet", "zoom", "teams"),
        default="meet",
        help="the meeting platform's replica (default meet)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per bot event")
    p.add_argument(
        "--stay", action="store_true", help="keep the bot in the call after the exchange until Ctrl+C/SIGTERM"
    )


def run(args: argparse.Namespace) -> int:
    from bot.testing.demo import run_demo

    try:
        # The user's browser settings (e.g. BOT_BROWSER_EXECUTABLE_PATH) apply; the agent is the stand-in.
        base = load_settings(require_key=False)
    except SettingsError as e:
        print(f"meeting-bot demo: {e}", file=sys.stderr)
        return ExitCode.USAGE
    return asyncio.run(
        run_demo(sys.stdout, json_events=args.json, stay=args.stay, base=base, platform=args.platform)
    )
