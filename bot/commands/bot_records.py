"""What `schedule`, `list` and `cancel` share: where the bots live (the database or a running API), and
how a bot record is printed.

Without --api these commands work on the database directly (scheduler.db_url: BOT_DB_URL or --db; the
same file `serve` uses), so they work whether or not the service is running: a running `serve` picks up
their jobs and stop requests within a second. With --api URL (or BOT_API_URL) they call the service's HTTP
API with BOT_API_TOKEN.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bot.commands import CommandError
from bot.service.options import SchedulerConfig
from bot.service.scheduler import BotService, DatabaseError
from bot.settings import Settings, SettingsError, load_settings

T = TypeVar("T")


def add_target_flags(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--db", metavar="URL", help="database URL (default: BOT_DB_URL or a SQLite file)")
    where.add_argument(
        "--api",
        metavar="URL",
        default=os.environ.get("BOT_API_URL") or None,
        help="call a running service's HTTP API instead (token: BOT_API_TOKEN)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--config", type=Path, help="TOML settings file, for its [scheduler] section")


def load_scheduler_config(config_file: Path | None, **flags: Any) -> SchedulerConfig:
    """The [scheduler] settings: defaults < TOML file < BOT_DB_URL, BOT_SCHEDULER_* < the flags given
    (None: not given). No Millis key needed: this process starts no bot itself."""
    return SchedulerConfig.from_settings(load_scheduler_settings(config_file, **flags))


def load_scheduler_settings(config_file: Path | None, **flags: Any) -> Settings:
    """The settings with the [scheduler] flags given (None: not given) applied, without a Millis key."""
    given = {key: value for key, value in flags.items() if value is not None}
    try:
        return load_settings(config_file, overrides={"scheduler": given}, require_key=False)
    except SettingsError as e:
        raise CommandError(str(e)) from None


def run_direct(args: argparse.Namespace, work: Callable[[BotService], Awaitable[T]]) -> T:
    """Runs `work` against the database with a client (non-serving) BotService."""

    async def main() -> T:
        from bot.service.outbox import WebhookOptions

        settings = load_scheduler_settings(args.config, db_url=args.db)
        service = BotService(
            SchedulerConfig.from_settings(settings), webhooks=WebhookOptions.from_settings(settings)
        )
        try:
            await service.start()
        except DatabaseError as e:
            raise CommandError(str(e)) from None
        try:
            return await work(service)
        finally:
            await service.close()

    return asyncio.run(main())


def api_call(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> httpx.Response:
    token = load_scheduler_settings(args.config).scheduler.api_token
    if not token:
        raise CommandError("--api needs the service's token in BOT_API_TOKEN")
    url = args.api.rstrip("/") + path
    try:
        response = httpx.request(
            method, url, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kwargs
        )
    except httpx.HTTPError as e:
        raise CommandError(f"cannot reach the bot service at {args.api}: {e}", code=1) from None
    if response.status_code == 401:
        raise CommandError("the service refused BOT_API_TOKEN (401)")
    if response.status_code == 422:
        raise CommandError(describe_problem(response.json()))
    return response


def api_json(args: argparse.Namespace, method: str, path: str, expect: int, **kwargs: Any) -> Any:
    """The JSON body of an answer with status `expect`; any other answer ends the command."""
    response = api_call(args, method, path, **kwargs)
    if response.status_code != expect:
        raise CommandError(
            f"the service answered {response.status_code}: {describe_problem(response.json())}"
        )
    return response.json()


def describe_problem(body: Any) -> str:
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list):
        parts = []
        for item in detail:
            loc = [str(p) for p in item.get("loc", []) if p != "body"]
            parts.append(f"{'.'.join(loc)}: {item.get('msg')}" if loc else str(item.get("msg")))
        return "; ".join(parts)
    return str(detail)


def local_time(value: str | None) -> str:
    if not value:
        return "-"
    return dt.datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def print_records(records: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(records, indent=2))
        return
    if not records:
        print("no bots")
        return
    # HOST: the worker host running the bot (scheduler.launcher = celery); "-" for the service's own.
    print(f"{'ID':<16}  {'STATE':<18}  {'JOIN AT':<23}  {'AGENT':<16}  ", end="")
    print(f"{'HOST':<12}  {'OUTCOME':<14}  MEETING")
    for r in records:
        outcome = r.get("end_reason") or r.get("failure_code") or ""
        if r.get("exit_code") is not None:
            outcome = f"{outcome} ({r['exit_code']})".strip()
        host = (r.get("host") or "-")[:12]
        print(
            f"{r['id']:<16}  {r['state']:<18}  {local_time(r['join_at']):<23}  {r['agent_id'][:16]:<16}  "
            f"{host:<12}  {outcome[:14]:<14}  {r['meeting_url']}"
        )
