"""`meeting-bot cancel ID`: cancel a scheduled bot, or make a running bot leave its meeting."""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import quote

from bot.commands import CommandError
from bot.commands.bot_records import add_target_flags, api_call, describe_problem, run_direct
from bot.service.scheduler import BotService, NotFound

HELP = "cancel a scheduled bot or make a running bot leave"
DESCRIPTION = (
    "Cancel a scheduled or queued bot; a running bot is asked to leave its meeting "
    "(the running service does it within a second)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="bot id (from `schedule` or `list`)")
    add_target_flags(p)


def run(args: argparse.Namespace) -> int:
    if args.api:
        response = api_call(args, "DELETE", f"/bots/{quote(args.id, safe='')}")
        if response.status_code == 404:
            raise CommandError(f"no bot with id {args.id!r}", code=1)
        if response.status_code == 409:
            raise CommandError(describe_problem(response.json()), code=1)
        if response.status_code not in (200, 202):
            raise CommandError(
                f"the service answered {response.status_code}: {describe_problem(response.json())}"
            )
        outcome = "leaving" if response.status_code == 202 else "cancelled"
        record: dict[str, Any] = response.json()
    else:

        async def work(service: BotService) -> tuple[str, dict[str, Any]]:
            result, rec = service.cancel(args.id)
            return result, rec.to_dict()

        try:
            outcome, record = run_direct(args, work)
        except NotFound as e:
            raise CommandError(str(e), code=1) from None
        if outcome == "finished":
            raise CommandError(f"bot {args.id} already finished (state {record['state']})", code=1)
    if args.json:
        print(json.dumps({"outcome": outcome, "bot": record}, indent=2))
    elif outcome == "cancelled":
        print(f"cancelled bot {args.id}")
    else:
        print(f"bot {args.id} is leaving its meeting")
    return 0
