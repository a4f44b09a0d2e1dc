"""`meeting-bot worker`: a bot host of a `serve` whose scheduler.launcher is "celery" (bot.cluster)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from bot.commands import CommandError
from bot.service.launchers import DEFAULT_COMMAND

HELP = "run bots on this host for a `serve` with scheduler.launcher = celery"
DESCRIPTION = (
    "A Celery worker that takes queued bots from Redis and runs at most CAPACITY at once, "
    "each as its own `join --json` child process, recording everything in the shared database. "
    "Bots inherit this process's environment (MILLIS_PRIVATE_KEY, BOT_* settings). SIGTERM: take no "
    "new bot, and let the running ones finish (worker.drain = finish) or hand them to another host "
    "(handoff). SIGINT/SIGQUIT: every bot leaves now."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--capacity", type=int, metavar="N", help="bots at once (worker.capacity, default 2)")
    p.add_argument("--name", help="this host's name in GET /hosts (worker.name; default: the host name)")
    p.add_argument("--drain", help="on SIGTERM: finish or handoff (worker.drain, default finish)")
    p.add_argument("--db", metavar="URL", help="the shared database (BOT_DB_URL), PostgreSQL")
    p.add_argument("--broker", metavar="URL", help="the Redis URL (scheduler.broker_url, BOT_BROKER_URL)")
    p.add_argument(
        "--bot-command",
        metavar="CMD",
        help=f"command that runs one bot (default: {shlex.join(DEFAULT_COMMAND[1:])} with this Python)",
    )
    p.add_argument("--config", type=Path, help="TOML settings file: [worker], [scheduler], passed to bots")


def run(args: argparse.Namespace) -> int:
    from bot.cluster.placement import HostNameTaken
    from bot.cluster.worker import WorkerOptions, run_worker
    from bot.service.launchers import LocalProcessLauncher
    from bot.service.options import default_db_url
    from bot.service.outbox import store_with_outbox
    from bot.service.store import make_engine, safe_db_url
    from bot.settings import SettingsError, load_settings

    def given(**values: Any) -> dict[str, Any]:
        return {k: v for k, v in values.items() if v is not None}

    overrides = {
        "scheduler": given(db_url=args.db, broker_url=args.broker),
        "worker": given(capacity=args.capacity, name=args.name, drain=args.drain),
    }
    try:
        settings = load_settings(args.config, overrides=overrides, require_key=False)
        options = WorkerOptions.from_settings(settings)
    except (SettingsError, ValueError) as e:
        raise CommandError(str(e)) from None
    if not settings.agent.private_key:
        print("meeting-bot worker: no Millis key (MILLIS_PRIVATE_KEY or agent.key_file): bots will fail to "
              "reach their agent", file=sys.stderr)  # fmt: skip
    command = shlex.split(args.bot_command) if args.bot_command else list(DEFAULT_COMMAND)
    if not command:
        raise CommandError("--bot-command must not be empty")
    url = settings.scheduler.db_url or default_db_url()  # the service's default: one machine only
    try:
        store, _ = store_with_outbox(make_engine(url))  # its bots' webhooks are queued as they record
    except Exception as e:
        raise CommandError(
            f"cannot open the database {safe_db_url(url)}: {getattr(e, 'orig', None) or e}", code=1
        ) from None
    try:
        launcher = LocalProcessLauncher(command=command, config_file=args.config)
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        return run_worker(options, store, launcher, loglevel=level)
    except HostNameTaken as e:
        raise CommandError(str(e)) from None
    finally:
        store.close()
