"""A call's options from validated `Settings`: what `join`, `demo` and `bridge` hand the session.

Each settings section builds its own part's options (`s.call.join_policy()`, `s.agent.millis_config()`);
the service's and the cluster's options build themselves (`SchedulerConfig.from_settings` and the like), so
`serve` needs nothing of the call. Here they are put together for one bot in one meeting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.settings import BrowserSection, Settings

if TYPE_CHECKING:
    from bot.bridge.options import BridgeOptions
    from bot.platforms.policies import CallPolicy, JoinPolicy


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
        return cls(
            name=s.bot.name,
            browser=s.browser,
            artifacts_dir=Path(s.bot.artifacts_dir),
            join_policy=s.call.join_policy(),
            call_policy=s.call.call_policy(),
            bridge=bridge_options(s),
            stats_interval_s=s.bot.stats_interval_s,
        )


def bridge_options(s: Settings) -> BridgeOptions:
    from bot.bridge.options import BridgeOptions

    return BridgeOptions(
        peer=s.agent.peer_options(),
        record_dir=Path(s.bot.record_dir) if s.bot.record_dir else None,
    )
