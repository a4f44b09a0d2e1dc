"""`meeting-bot join URL --agent-id ID`: send one bot into a meeting until it ends."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.agent.millis import MillisConfig, MillisEndpoint
from bot.browser.levers import lean_driver_environ
from bot.call.config import SessionConfig
from bot.call.stop_signals import leave_on_signal
from bot.events import EventBus, JsonLinesPrinter, TerminalPrinter
from bot.meeting_urls import InvalidMeetingUrl, MeetingUrl, parse_meeting_url
from bot.outcome import ExitCode
from bot.settings import REGIONS, Settings, SettingsError, load_settings, parse_pairs

if TYPE_CHECKING:
    from bot.service.metrics import BotMetrics, MetricsServer

log = logging.getLogger(__name__)


HELP = "join a Meet, Zoom or Teams call and connect it to a Millis agent"
DESCRIPTION = (
    "Join a Google Meet, Zoom or Microsoft Teams meeting and let a Millis AI agent listen and talk in it. "
    "The private key comes from MILLIS_PRIVATE_KEY or agent.key_file."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="meeting URL, e.g. https://meet.google.com/abc-defg-hij")
    add_session_flags(p)
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics of this bot at http://HOST:PORT/metrics (the series `serve` exposes)",
    )
    p.add_argument(
        "--metrics-host", default="127.0.0.1", help="address for --metrics-port (default 127.0.0.1)"
    )


def add_session_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by `join` and the scheduler's `schedule`."""
    p.add_argument("--agent-id", help="Millis agent id (agent.agent_id)")
    p.add_argument("--name", help="display name in the meeting (bot.name)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--region", choices=REGIONS, help="Millis region (agent.region)")
    where.add_argument("--agent-url", help="full agent base URL (agent.url)")
    p.add_argument(
        "--max-duration", type=float, metavar="S", help="leave after S seconds (call.max_duration_s)"
    )
    p.add_argument("--alone-after", type=float, metavar="S", help="leave when alone S seconds")
    p.add_argument("--record", metavar="DIR", help="write WAVs of both directions to DIR (bot.record_dir)")
    p.add_argument("--metadata", nargs="*", default=[], metavar="K=V", help="metadata sent to the agent")
    p.add_argument("--webhook", metavar="URL", help="POST every event here (secret: BOT_WEBHOOK_SECRET)")
    p.add_argument("--config", type=Path, help="TOML settings file (default config/bot.toml)")
    p.add_argument("--json", action="store_true", default=None, help="one JSON object per event")


def flag_layer(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    layer: dict[str, dict[str, Any]] = {}

    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            layer.setdefault(section, {})[key] = value

    put("agent", "agent_id", args.agent_id)
    put("agent", "region", args.region)
    put("agent", "url", args.agent_url)
    if args.metadata:
        put("agent", "metadata", parse_pairs(args.metadata))
    put("bot", "name", args.name)
    put("bot", "record_dir", args.record)
    put("bot", "json", args.json)
    put("call", "max_duration_s", args.max_duration)
    put("call", "alone_after_s", args.alone_after)
    put("webhook", "url", args.webhook)
    return layer


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config, overrides=flag_layer(args))
        if not settings.agent.agent_id:
            raise SettingsError("agent.agent_id: no agent id: pass --agent-id or set BOT_AGENT_AGENT_ID")
        meeting = parse_meeting_url(args.url)
        agent = settings.agent.millis_config()
        config = SessionConfig.from_settings(settings)
        port = getattr(args, "metrics_port", None)
        if port is not None and not 0 < port <= 65535:
            raise SettingsError(f"--metrics-port must be between 1 and 65535 (got {port})")
        host = getattr(args, "metrics_host", "127.0.0.1")
        metrics = _serve_metrics(host, port) if port is not None else None
        if settings.browser.lean:
            # The driver reads its options only from here (bot.browser.levers).
            lean_driver_environ(os.environ)
    except (SettingsError, InvalidMeetingUrl, ValueError, OSError) as e:
        print(f"meeting-bot join: {e}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        return asyncio.run(join(settings, meeting, agent, config, metrics[0] if metrics else None))
    finally:
        if metrics is not None:
            metrics[1].close()


def _serve_metrics(host: str, port: int) -> tuple[BotMetrics, MetricsServer]:
    from bot.service.metrics import BotMetrics, MetricsServer

    metrics = BotMetrics()
    try:
        return metrics, MetricsServer(metrics.registry, port, host)
    except OSError as e:
        raise OSError(f"--metrics-port: cannot listen on {host}:{port}: {e.strerror or e}") from None


async def join(
    settings: Settings,
    meeting: MeetingUrl,
    agent: MillisConfig,
    config: SessionConfig,
    metrics: BotMetrics | None = None,
) -> int:
    from bot.call.session import BotSession
    from bot.service.webhooks import WebhookConfig, WebhookSender

    bus = EventBus()
    bus.subscribe(JsonLinesPrinter() if settings.bot.json else TerminalPrinter())
    if metrics is not None:
        metrics.launched("local", meeting.platform)
        bus.subscribe(lambda event: metrics.observe("local", event.to_dict()))
    webhook: WebhookSender | None = None
    if settings.webhook.url:
        webhook = WebhookSender(
            WebhookConfig(settings.webhook.url, settings.webhook.secret, settings.webhook.retries)
        )
        webhook.start()
        bus.subscribe(webhook)
    endpoint = MillisEndpoint(agent)
    session = BotSession(config, meeting, endpoint, bus)
    try:
        with leave_on_signal(session.stop):
            outcome = await session.run()
        return int(outcome.exit_code)
    except asyncio.CancelledError:
        return int(ExitCode.CRASHED)
    finally:
        if webhook is not None:
            await webhook.close()
