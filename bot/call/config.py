"""From validated `Settings` to the typed options each part takes: the one place, one way.

`join`, `demo`, `bridge`, `serve` and the direct `schedule`/`list`/`cancel` all build their parts' options
here, so a setting means the same in every command (no command rebuilds an option by hand).

Each part's module is imported where its options are built, not at the top: `serve` and `list` need only
the scheduler's (no aiortc, no Playwright), `join` everything but the scheduler's (no APScheduler).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.settings import BrowserSection, Settings

if TYPE_CHECKING:
    from bot.agent.millis import MillisConfig
    from bot.agent.peer import PeerOptions
    from bot.bridge.options import BridgeOptions
    from bot.cluster.celery_launcher import ClusterOptions
    from bot.cluster.worker import WorkerOptions
    from bot.platforms.base import CallPolicy, JoinPolicy
    from bot.service.outbox import WebhookOptions
    from bot.service.scheduler import SchedulerConfig


@dataclass(frozen=True)
class SessionConfig:
    name: str
    browser: BrowserSection
    artifacts_dir: Path
    join_policy: JoinPolicy
    call_policy: CallPolicy
    bridge: BridgeOptions
    stats_interval_s: float

    @classmethod
    def from_settings(cls, s: Settings) -> SessionConfig:
        from bot.platforms.base import CallPolicy, JoinPolicy

        return cls(
            name=s.bot.name,
            browser=s.browser,
            artifacts_dir=Path(s.bot.artifacts_dir),
            join_policy=JoinPolicy(
                lobby_timeout_s=s.call.lobby_timeout_s,
                host_absent_timeout_s=s.call.host_absent_timeout_s,
                retries=s.call.join_retries,
                retry_delay_s=s.call.join_retry_delay_s,
                ui_stuck_s=s.call.ui_stuck_s,
                network_retry_s=s.call.network_retry_s,
            ),
            call_policy=CallPolicy(
                alone_after_s=s.call.alone_after_s,
                max_duration_s=s.call.max_duration_s,
            ),
            bridge=bridge_options(s),
            stats_interval_s=s.bot.stats_interval_s,
        )


def peer_options(s: Settings) -> PeerOptions:
    from bot.agent.peer import PeerOptions

    a = s.agent
    return PeerOptions(
        # Always a list: [] means no STUN/TURN at all (local tests), never aiortc's default server.
        ice_servers=list(a.ice_servers),
        # Empty means "every interface", the real-call path; tests pin 127.0.0.1.
        host_addresses=list(a.ice_host_addresses) or None,
        receive_prefetch=a.receive_prefetch,
        jitter_buffer=a.jitter_buffer,
        codecs=a.codecs,
    )


def bridge_options(s: Settings) -> BridgeOptions:
    from bot.bridge.options import BridgeOptions

    return BridgeOptions(
        peer=peer_options(s),
        record_dir=Path(s.bot.record_dir) if s.bot.record_dir else None,
    )


def millis_config(s: Settings) -> MillisConfig:
    from bot.agent.millis import MillisConfig

    a = s.agent
    return MillisConfig(
        agent_id=a.agent_id,
        private_key=a.private_key,
        region=a.region,
        base_url=a.url or None,
        metadata=dict(a.metadata) or None,
        include_metadata_in_prompt=a.include_metadata_in_prompt,
        bearer_fallback=a.bearer_fallback,
        timeout_s=a.timeout_s,
    )


def scheduler_config(s: Settings) -> SchedulerConfig:
    from bot.service.scheduler import SchedulerConfig

    sc = s.scheduler
    return SchedulerConfig(
        db_url=sc.db_url,
        lead_time_s=sc.lead_time_s,
        misfire_grace_s=sc.misfire_grace_s,
        max_concurrent_bots=sc.max_concurrent_bots,
        queue_timeout_s=sc.queue_timeout_s,
        stop_timeout_s=sc.stop_timeout_s,
        poll_interval_s=sc.poll_interval_s,
    )


def cluster_options(s: Settings) -> ClusterOptions:
    """The service's side of scheduler.launcher = "celery"."""
    from bot.cluster.celery_launcher import ClusterOptions

    sc = s.scheduler
    if not sc.broker_url:
        raise ValueError(
            "scheduler.broker_url: is required with launcher = celery: set BOT_BROKER_URL=redis://…"
        )
    return ClusterOptions(
        broker_url=sc.broker_url,
        host_timeout_s=sc.host_timeout_s,
        relaunch_attempts=sc.relaunch_attempts,
        queue_timeout_s=sc.queue_timeout_s,
        call_max_duration_s=s.call.max_duration_s,
        watch_interval_s=min(sc.poll_interval_s, sc.host_timeout_s / 5),
    )


def worker_options(s: Settings) -> WorkerOptions:
    """`meeting-bot worker`: the [worker] settings and the [scheduler] ones it shares with the service."""
    import socket

    from bot.cluster.worker import WorkerOptions

    if not s.scheduler.broker_url:
        raise ValueError("scheduler.broker_url: a worker needs the Redis of the service: set BOT_BROKER_URL")
    w = s.worker
    return WorkerOptions(
        name=w.name or socket.gethostname(),
        capacity=w.capacity,
        broker_url=s.scheduler.broker_url,
        drain=w.drain,
        heartbeat_interval_s=w.heartbeat_interval_s,
        poll_interval_s=w.poll_interval_s,
        host_timeout_s=s.scheduler.host_timeout_s,
        stop_timeout_s=s.scheduler.stop_timeout_s,
        call_max_duration_s=s.call.max_duration_s,
    )


def webhook_options(s: Settings) -> WebhookOptions:
    """The service's durable webhooks: signed with webhook.secret, retried on webhook.retry_schedule_s;
    webhook.url is the webhook of bots scheduled without their own."""
    from bot.service.outbox import WebhookOptions

    w = s.webhook
    return WebhookOptions(
        secret=w.secret, retry_schedule_s=tuple(w.retry_schedule_s), timeout_s=w.timeout_s, default_url=w.url
    )
