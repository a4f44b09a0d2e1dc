"""From validated `Settings` to the typed options each part of a session takes (one place, one way)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.agent.millis import MillisConfig
from bot.agent.peer import PeerOptions
from bot.bridge.options import BridgeOptions
from bot.platforms.base import CallPolicy, JoinPolicy
from bot.settings import BrowserSection, Settings


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
        a = s.agent
        peer = PeerOptions(
            ice_servers=list(a.ice_servers),
            # Empty means "every interface", the real-call path; tests pin 127.0.0.1.
            host_addresses=list(a.ice_host_addresses) or None,
            receive_prefetch=a.receive_prefetch,
            jitter_buffer=a.jitter_buffer,
        )
        return cls(
            name=s.bot.name,
            browser=s.browser,
            artifacts_dir=Path(s.bot.artifacts_dir),
            join_policy=JoinPolicy(
                lobby_timeout_s=s.call.lobby_timeout_s,
                host_absent_timeout_s=s.call.host_absent_timeout_s,
                retries=s.call.join_retries,
                retry_delay_s=s.call.join_retry_delay_s,
            ),
            call_policy=CallPolicy(
                alone_after_s=s.call.alone_after_s,
                max_duration_s=s.call.max_duration_s,
            ),
            bridge=BridgeOptions(
                peer=peer,
                record_dir=Path(s.bot.record_dir) if s.bot.record_dir else None,
            ),
            stats_interval_s=s.bot.stats_interval_s,
        )


def millis_config(s: Settings) -> MillisConfig:
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
