"""`meeting-bot schedule URL --at TIME --agent-id ID`: schedule a bot to join a meeting at a time."""

from __future__ import annotations

import argparse
import json

from bot.commands import CommandError
from bot.commands.bot_records import add_target_flags, api_json, local_time, run_direct
from bot.service.bot_request import RequestError, validate_request
from bot.service.scheduler import BotService
from bot.settings import REGIONS, SettingsError, parse_pairs

HELP = "schedule a bot to join a meeting at a time"
DESCRIPTION = (
    "Schedule a bot. It starts lead_time_s (BOT_SCHEDULER_LEAD_TIME_S, default 30) before "
    "--at so it is in the meeting on time; `meeting-bot serve` must be running then."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="meeting URL")
    p.add_argument(
        "--at", metavar="TIME", help="ISO 8601 with a time zone, e.g. 2030-05-01T14:00+02:00 (default: now)"
    )
    p.add_argument("--agent-id", required=True, help="Millis agent id")
    p.add_argument("--name", help="display name in the meeting")
    p.add_argument("--region", choices=REGIONS, help="Millis region")
    p.add_argument("--max-duration", type=float, metavar="S", help="leave after S seconds")
    p.add_argument("--metadata", nargs="*", default=[], metavar="K=V", help="metadata sent to the agent")
    p.add_argument("--webhook", metavar="URL", help="POST every event of this bot here")
    add_target_flags(p)


def run(args: argparse.Namespace) -> int:
    try:
        metadata = parse_pairs(args.metadata)
    except SettingsError as e:
        raise CommandError(str(e)) from None
    fields = {
        "meeting_url": args.url,
        "agent_id": args.agent_id,
        "bot_name": args.name,
        "region": args.region,
        "max_duration_s": args.max_duration,
        "metadata": metadata,
        "webhook_url": args.webhook,
    }
    if args.api:
        body = {k: v for k, v in {**fields, "join_at": args.at}.items() if v not in (None, {})}
        record = api_json(args, "POST", "/bots", 201, json=body)
    else:

        async def work(service: BotService) -> dict[str, object]:
            return service.schedule(validate_request(**fields), args.at).to_dict()

        try:
            record = run_direct(args, work)
        except RequestError as e:
            raise CommandError(str(e)) from None
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(
            f"scheduled bot {record['id']}: joins {record['meeting_url']} at {local_time(record['join_at'])} "
            f"(starts {local_time(record['run_at'])})"
        )
    return 0
