"""`meeting-bot serve`: the scheduler and its HTTP API in one process; every bot is a child process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bot.commands import CommandError
from bot.commands.bot_records import load_scheduler_settings
from bot.service.launchers import DEFAULT_COMMAND, Launcher, LocalProcessLauncher, ProcessLauncher
from bot.service.options import SchedulerConfig
from bot.service.outbox import WebhookOptions
from bot.service.scheduler import BotService, DatabaseError
from bot.service.store import safe_db_url

HELP = "run the scheduler and its HTTP API"
DESCRIPTION = (
    "Run scheduled bots and serve the HTTP API (docs at /docs). Needs BOT_API_TOKEN. "
    "Bots inherit this process's environment (MILLIS_PRIVATE_KEY, BOT_* settings). "
    "SIGTERM or Ctrl+C makes every running bot leave its meeting, then exits. Bots' webhooks are "
    "stored and delivered by this process, signed with BOT_WEBHOOK_SECRET; Prometheus metrics at "
    "/metrics (set BOT_METRICS_TOKEN to require that bearer token)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--db", metavar="URL", help="database URL (default: BOT_DB_URL or a SQLite file)")
    p.add_argument("--max-bots", type=int, help="max concurrent bots (BOT_SCHEDULER_MAX_CONCURRENT_BOTS, 4)")
    p.add_argument(
        "--lead-time", type=float, metavar="S", help="start bots S s early (BOT_SCHEDULER_LEAD_TIME_S, 30)"
    )
    p.add_argument(
        "--grace", type=float, metavar="S", help="misfire grace window (BOT_SCHEDULER_MISFIRE_GRACE_S, 120)"
    )
    p.add_argument(
        "--bot-command",
        metavar="CMD",
        help="command that runs one bot, given the join arguments "
        f"(default: {shlex.join(DEFAULT_COMMAND[1:])} with this Python); e.g. to wrap it in `nice`",
    )
    p.add_argument(
        "--config", type=Path, help="TOML settings file: its [scheduler] section, and passed to every bot"
    )


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise CommandError("--port must be between 0 and 65535")
    settings = load_scheduler_settings(
        args.config,
        db_url=args.db,
        max_concurrent_bots=args.max_bots,
        lead_time_s=args.lead_time,
        misfire_grace_s=args.grace,
    )
    token = settings.scheduler.api_token
    if not token:
        raise CommandError("set BOT_API_TOKEN: every API call but /health must carry it as a bearer token")
    if len(token) < 16:
        raise CommandError("BOT_API_TOKEN is too short: use at least 16 random characters")
    config = SchedulerConfig.from_settings(settings)
    command = shlex.split(args.bot_command) if args.bot_command else list(DEFAULT_COMMAND)
    if not command:
        raise CommandError("--bot-command must not be empty")
    launcher: Launcher | ProcessLauncher
    if settings.scheduler.launcher == "celery":  # bots run on `meeting-bot worker` hosts (bot.cluster)
        from bot.cluster.celery_launcher import CeleryLauncher, ClusterOptions

        try:
            launcher = CeleryLauncher(ClusterOptions.from_settings(settings))
        except ValueError as e:
            raise CommandError(str(e)) from None
    else:
        launcher = LocalProcessLauncher(command=command, config_file=args.config)
    # Optional: Prometheus may scrape /metrics with its own token instead of the API's.
    metrics_token = settings.scheduler.metrics_token
    from bot.service.api import listen_socket

    try:
        sock = listen_socket(args.host, args.port)
    except OSError as e:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}", code=1) from None
    service = BotService(config, launcher, webhooks=WebhookOptions.from_settings(settings))
    return asyncio.run(_serve(service, token, sock, metrics_token))


async def _serve(service: BotService, token: str, sock: socket.socket, metrics_token: str = "") -> int:
    from bot.service.api import create_app

    try:
        await service.start()
    except DatabaseError as e:
        print(f"meeting-bot serve: {e}", file=sys.stderr)
        sock.close()
        return 2
    try:
        # SIGTERM/SIGINT stop uvicorn; the app's shutdown then closes the service (running bots leave).
        app = create_app(service, token, start_service=False, metrics_token=metrics_token)
        return await _run_server(service, app, sock)
    finally:
        await service.close()
        sock.close()


def _clean_stop_server(config: Any) -> Any:
    """A uvicorn server that treats SIGTERM/SIGINT as a clean stop: `serve` then exits 0 (as `docker stop`
    and supervisors expect) instead of uvicorn re-raising the signal after shutdown."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server(config)


async def _run_server(service: BotService, app: Any, sock: socket.socket) -> int:
    import uvicorn

    server = _clean_stop_server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():  # noqa: ASYNC110 (uvicorn only offers a flag)
        await asyncio.sleep(0.05)
    if server.started:
        host, port = sock.getsockname()[:2]
        # Scripts and tests read this line to know where (and that) the service listens.
        print(f"serving on http://{host}:{port} (database {safe_db_url(service.config.db_url)})", flush=True)
    await task
    return 0 if server.started else 1
