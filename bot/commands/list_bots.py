"""`meeting-bot list`: scheduled, queued, running and finished bots."""

from __future__ import annotations

import argparse
from typing import Any

from bot.commands import CommandError
from bot.commands.bot_records import add_target_flags, api_json, print_records, run_direct
from bot.service.scheduler import BotService
from bot.service.store import BotState

HELP = "list bots and their states"
DESCRIPTION = "List bots, soonest first."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state", action="append", choices=[s.value for s in BotState], help="only this state (repeatable)"
    )
    p.add_argument("--agent-id", help="only bots for this agent")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    add_target_flags(p)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        raise CommandError("--limit must be between 1 and 1000")
    records: list[dict[str, Any]]
    if args.api:
        params: dict[str, Any] = {"limit": args.limit}
        if args.state:
            params["state"] = args.state
        if args.agent_id:
            params["agent_id"] = args.agent_id
        records = api_json(args, "GET", "/bots", 200, params=params)
    else:
        states = [BotState(s) for s in args.state] if args.state else None

        async def work(service: BotService) -> list[dict[str, Any]]:
            return [r.to_dict() for r in service.list_bots(states, args.agent_id, args.limit)]

        records = run_direct(args, work)
    print_records(records, args.json)
    return 0
