"""The agent's options, their defaults, rules and vocabularies: the Millis endpoint's (`MillisConfig`) and
the peer connection's (`PeerOptions`).

Nothing here imports aiortc or httpx, so the settings take their [agent] defaults and rules from here
without loading either (`serve` and `list` never need them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.options import OptionError

# The Millis private key's environment variable (read by bot.settings only).
KEY_ENV = "MILLIS_PRIVATE_KEY"
# Millis regions and their base URLs: agent.region, --region and the API's region take these names.
REGION_BASES: dict[str, str] = {
    "us-west": "https://api-west.millis.ai",
    "eu-west": "https://api-eu-west.millis.ai",
}
REGIONS: tuple[str, ...] = tuple(REGION_BASES)
# Google's public STUN server (also aiortc's own default): what a bot uses unless told otherwise.
DEFAULT_ICE_SERVERS: tuple[str, ...] = ("stun:stun.l.google.com:19302",)
# PeerOptions.jitter_buffer: ours (plays each packet on arrival, bot/agent/jitter.py) or aiortc's own.
JITTER_BUFFERS: tuple[str, ...] = ("low-latency", "aiortc")
# PeerOptions.codecs: Opus in mono on the event loop (bot/agent/codecs.py) or aiortc's codec threads.
CODEC_PATHS: tuple[str, ...] = ("inline", "aiortc")
AUDIO_JITTER_CAPACITY = 16  # aiortc's own value for audio; a power of two


@dataclass(frozen=True)
class MillisConfig:
    """Where and how to reach one Millis agent. The key is hidden from repr and never logged; it is
    read in one place, `bot.settings` (MILLIS_PRIVATE_KEY or agent.key_file)."""

    agent_id: str
    private_key: str = field(repr=False)
    region: str = "us-west"
    base_url: str | None = None  # overrides region, e.g. a local stand-in
    metadata: dict[str, Any] | None = None
    include_metadata_in_prompt: bool = False
    bearer_fallback: bool = True
    timeout_s: float = 10.0
    max_retries: int = 3  # extra attempts when the service is down (5xx, refused), not on 401/404
    backoff_s: float = 0.5  # first retry delay; doubles each time

    def __post_init__(self) -> None:
        if not self.agent_id or any(c.isspace() for c in self.agent_id):
            raise OptionError("agent_id", f"must be a Millis agent id without spaces (got {self.agent_id!r})")
        if not self.private_key.strip():
            raise OptionError("private_key", f"is empty: set {KEY_ENV} or pass a key file")
        self.check_service(self.region, self.base_url, self.timeout_s)
        if self.max_retries < 0:
            raise OptionError("max_retries", "must be >= 0")
        if self.backoff_s < 0:
            raise OptionError("backoff_s", "must be >= 0")

    @staticmethod
    def check_service(region: str, base_url: str | None, timeout_s: float) -> None:
        """The rules of where the service is and how long to wait for it (the settings check these
        before any agent is named)."""
        if base_url is None:
            if region not in REGION_BASES:
                raise OptionError(
                    "region", f"must be one of {', '.join(REGIONS)} (got {region!r}), or give a full base URL"
                )
        elif not base_url.startswith(("https://", "http://")):
            raise OptionError(
                "base_url",
                f"must be a full http(s) base URL such as https://api-west.millis.ai (got {base_url!r})",
            )
        if timeout_s <= 0:
            raise OptionError("timeout_s", "must be positive")

    @property
    def url(self) -> str:
        base = self.base_url if self.base_url is not None else REGION_BASES[self.region]
        return base.rstrip("/") + "/webrtc/offer"


@dataclass(frozen=True)
class PeerOptions:
    """How to build a peer connection.

    `ice_servers=None` keeps aiortc's default (Google's public STUN); `[]` uses none (local tests).
    `host_addresses` is for tests only: restrict ICE host candidates, e.g. to `["127.0.0.1"]`.
    `jitter_buffer`: "low-latency" (ours, no added delay) or "aiortc" (holds `receive_prefetch` packets
    before playout; aiortc's own default is 4).
    `codecs`: "inline" (Opus in mono on the event loop, no codec threads) or "aiortc" (aiortc's threads).
    """

    ice_servers: Sequence[str] | None = None
    host_addresses: Sequence[str] | None = None
    receive_prefetch: int = 1  # only with jitter_buffer="aiortc"
    jitter_buffer: str = "low-latency"  # or "aiortc"
    codecs: str = "inline"  # or "aiortc"

    def __post_init__(self) -> None:
        if self.jitter_buffer not in JITTER_BUFFERS:
            names = ", ".join(JITTER_BUFFERS)
            raise OptionError("jitter_buffer", f"must be one of {names} (got {self.jitter_buffer!r})")
        if self.codecs not in CODEC_PATHS:
            raise OptionError("codecs", f"must be one of {', '.join(CODEC_PATHS)} (got {self.codecs!r})")
        if not 0 <= self.receive_prefetch < AUDIO_JITTER_CAPACITY:
            raise OptionError(
                "receive_prefetch", f"must be between 0 and {AUDIO_JITTER_CAPACITY - 1} packets"
            )
        for url in self.ice_servers or ():
            if not url.startswith(("stun:", "turn:", "turns:")):
                raise OptionError("ice_servers", f"{url!r} must start with stun:, turn: or turns:")

    @classmethod
    def loopback(cls, **options: Any) -> PeerOptions:
        """Test configuration: no STUN, host candidates on 127.0.0.1 only."""
        return cls(ice_servers=[], host_addresses=["127.0.0.1"], **options)
