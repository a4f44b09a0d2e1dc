"""The bridge's configuration, live statistics and events."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bot.agent.options import PeerOptions

# Named apart from `bot.events.EventKind` (the bot's own events, which a session maps these to).
# "audio_stopped": the source or sink failed (the devices' owner rebuilds them or ends the call);
# "recording_stopped": writing the recording failed (a full disk); the call goes on without it.
BridgeEventKind = Literal[
    "agent_connected", "agent_reconnecting", "agent_lost", "audio_stopped", "recording_stopped"
]


@dataclass(frozen=True)
class BridgeOptions:
    """How the bridge connects, watches and reconnects. Defaults suit a real call."""

    peer: PeerOptions = field(default_factory=PeerOptions)
    record_dir: Path | None = None  # two WAVs: meeting → agent and agent → meeting
    connect_timeout_s: float = 10.0  # offer sent → media path up (ICE + DTLS)
    stall_timeout_s: float = 5.0  # no audio from the agent for this long → reconnect
    max_reconnects: int = 5  # attempts per outage before the agent is declared lost
    reconnect_backoff_s: float = 0.5  # delay before the first attempt; doubles, capped at 8 s
    playback_queue_frames: int = 25  # agent audio waiting for pacat (500 ms), oldest dropped beyond
    playback_target_ms: float = 40.0  # written ahead of real time beyond this: skip silent agent frames
    playback_limit_ms: float = 300.0  # beyond this: drop agent frames even if not silent (counted)
    max_send_backlog_frames: int = 10  # meeting audio waiting for the encoder (200 ms)

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "stall_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_reconnects < 0:
            raise ValueError("max_reconnects must be >= 0")
        if self.reconnect_backoff_s < 0:
            raise ValueError("reconnect_backoff_s must be >= 0")
        if not 0 < self.playback_target_ms <= self.playback_limit_ms:
            raise ValueError("playback_target_ms must be positive and at most playback_limit_ms")
        if self.playback_queue_frames < 1 or self.max_send_backlog_frames < 1:
            raise ValueError("queue sizes must be at least 1 frame")


@dataclass
class BridgeStats:
    """Live counters. Bytes are PCM bytes (s16le mono 48 kHz) each way; levels in dBFS over ~0.5 s.

    `dropped_out`: meeting frames discarded before the encoder (backlog or capture queue overflow while
    connected); `dropped_in`: agent frames discarded before playback (queue overflow, or playback more than
    `playback_limit_ms` behind). `trimmed_in`: silent agent frames skipped to hold playback latency at its
    target (no sound lost). `connected_at` is epoch seconds of the latest connection (None before the first).
    """

    # Meeting → agent.
    frames_out: int = 0
    bytes_out: int = 0
    dropped_out: int = 0
    level_out_dbfs: float = -120.0
    # Agent → meeting.
    frames_in: int = 0
    bytes_in: int = 0
    dropped_in: int = 0
    trimmed_in: int = 0
    level_in_dbfs: float = -120.0
    reconnects: int = 0
    reply_delay_ms: float | None = None  # latest onset sent → onset received (echo agent: round trip)
    connected_at: float | None = None
    connect_s: float | None = None  # the latest connection: offer sent → answer → audio path up


@dataclass(frozen=True)
class BridgeEvent:
    """`attempt` is 0 for the first connection, then the reconnect attempt within the current outage."""

    kind: BridgeEventKind
    detail: str
    attempt: int = 0
