"""The bot's status events: one typed stream, fanned out to the terminal, JSON lines and a webhook.

One frozen dataclass per event (as livekit agents' `voice/events.py` has one model per event). Each knows
its `kind` (the JSON `event` name) and serialises to the documented JSON object: `event`, `at`, `id`, then
its own fields in declaration order. A field that is `None` is optional and left out of the JSON (e.g.
`retry` on a first `joining`). `parse_event()` reads such an object back, for the scheduler, which sees a
bot only through its `join --json` lines.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, ClassVar, TextIO

from bot.outcome import EndedBy, EndReason


class EventKind(StrEnum):
    """The `event` name of each status event, in the order they normally happen."""

    JOINING = "joining"
    AWAITING_ADMISSION = "awaiting_admission"
    IN_CALL = "in_call"
    AGENT_CONNECTED = "agent_connected"
    AGENT_RECONNECTING = "agent_reconnecting"
    AUDIO_LOST = "audio_lost"
    AUDIO_RECOVERED = "audio_recovered"
    RECORDING_STOPPED = "recording_stopped"
    STATS = "stats"
    ENDED = "ended"
    FAILED = "failed"
    SUMMARY = "summary"


class EventFormatError(ValueError):
    """A JSON object that is not one of the documented events (unknown `event`, missing or bad field)."""


_META = frozenset({"at", "id"})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, kw_only=True)
class BotEvent:
    """Base of every status event: when it happened and a unique id (the webhook's `X-Bot-Event-Id`)."""

    kind: ClassVar[EventKind]

    at: dt.datetime = field(default_factory=_now)
    id: str = field(default_factory=_new_id)

    def payload(self) -> dict[str, Any]:
        """The event's own fields as JSON values, in declaration order; `None` fields left out."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in _META:
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = _plain(value)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind.value, "at": self.at.isoformat(), "id": self.id, **self.payload()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), default=str)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, kw_only=True)
class Joining(BotEvent):
    """The bot starts joining; again with `retry` (and the failure it retries `after`) on a retry."""

    kind: ClassVar[EventKind] = EventKind.JOINING
    platform: str  # "meet" | "zoom" | "teams"
    meeting_id: str
    name: str
    retry: int | None = None
    after: str | None = None  # the retried failure's code


@dataclass(frozen=True, kw_only=True)
class AwaitingAdmission(BotEvent):
    kind: ClassVar[EventKind] = EventKind.AWAITING_ADMISSION


@dataclass(frozen=True, kw_only=True)
class InCall(BotEvent):
    kind: ClassVar[EventKind] = EventKind.IN_CALL


@dataclass(frozen=True, kw_only=True)
class AgentConnected(BotEvent):
    """The agent is connected; after an outage with the reconnect `attempt` that succeeded."""

    kind: ClassVar[EventKind] = EventKind.AGENT_CONNECTED
    agent: str  # the endpoint's description; never a secret
    attempt: int | None = None
    connect_s: float | None = None  # offer sent → answer → audio path up (a slow agent shows here)


@dataclass(frozen=True, kw_only=True)
class AgentReconnecting(BotEvent):
    """The agent session was lost in the call; a new one is tried (`detail`: why, and when it is tried)."""

    kind: ClassVar[EventKind] = EventKind.AGENT_RECONNECTING
    attempt: int  # 1 for the first new session of this outage
    detail: str


@dataclass(frozen=True, kw_only=True)
class AudioLost(BotEvent):
    """The bot's audio devices failed in the call (its PulseAudio died): the bot is rebuilding them."""

    kind: ClassVar[EventKind] = EventKind.AUDIO_LOST
    detail: str


@dataclass(frozen=True, kw_only=True)
class AudioRecovered(BotEvent):
    """Audio flows both ways again after `audio_lost`: the devices were rebuilt and the browser rebound,
    `after_s` after the loss was noticed."""

    kind: ClassVar[EventKind] = EventKind.AUDIO_RECOVERED
    after_s: float
    detail: str


@dataclass(frozen=True, kw_only=True)
class RecordingStopped(BotEvent):
    """A warning: writing the recording (`--record`) failed, e.g. the disk is full. The call goes on."""

    kind: ClassVar[EventKind] = EventKind.RECORDING_STOPPED
    detail: str  # why, and the files


@dataclass(frozen=True, kw_only=True)
class Stats(BotEvent):
    """Every `bot.stats_interval_s`: out = meeting → agent, in = agent → meeting."""

    kind: ClassVar[EventKind] = EventKind.STATS
    frames_out: int
    frames_in: int
    bytes_out: int
    bytes_in: int
    dropped: int
    level_out_dbfs: float
    level_in_dbfs: float
    reconnects: int
    # The bridge's latest agent reply delay (a sound onset sent → the next onset received); none before the
    # first. The service's metrics count each new value once.
    reply_delay_ms: float | None = None


@dataclass(frozen=True, kw_only=True)
class Ended(BotEvent):
    kind: ClassVar[EventKind] = EventKind.ENDED
    reason: EndReason
    by: EndedBy  # whose doing: the meeting's, the bot's own rules, the user's or the agent's


@dataclass(frozen=True, kw_only=True)
class Failed(BotEvent):
    """`code`: a `FailureCode`, an `AgentError.code`, or `crashed` (an internal error)."""

    kind: ClassVar[EventKind] = EventKind.FAILED
    code: str
    message: str
    artifacts: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Summary(BotEvent):
    """The last event. Timings in seconds; the join and in-call times only if the bot got into the call,
    the lobby time only if it waited in one, the agent figures only if the agent was ever connected."""

    kind: ClassVar[EventKind] = EventKind.SUMMARY
    outcome: str  # the end reason or the failure code
    exit_code: int
    ended_by: EndedBy
    total_s: float  # start → the end (or the failure)
    join_s: float | None = None  # start → in the call
    in_call_s: float | None = None  # in the call → the end
    lobby_s: float | None = None  # in the lobby → let in (or the end)
    reconnects: int | None = None
    bytes_to_agent: int | None = None
    bytes_from_agent: int | None = None
    dropped_frames: int | None = None


EVENT_TYPES: Mapping[EventKind, type[BotEvent]] = {
    t.kind: t
    for t in (
        Joining,
        AwaitingAdmission,
        InCall,
        AgentConnected,
        AgentReconnecting,
        AudioLost,
        AudioRecovered,
        RecordingStopped,
        Stats,
        Ended,
        Failed,
        Summary,
    )
}


def parse_event(data: Mapping[str, Any]) -> BotEvent:
    """The typed event for one documented JSON object; raises `EventFormatError` otherwise.

    Fields the event does not define are ignored (a newer bot may add some); a missing `id` gets a new one.
    """
    try:
        cls = EVENT_TYPES[EventKind(str(data.get("event")))]
    except ValueError:
        raise EventFormatError(f"not a bot event: {data.get('event')!r}") from None
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = data[f.name]
    try:
        kwargs["at"] = dt.datetime.fromisoformat(str(data["at"]))
        if "reason" in kwargs:
            kwargs["reason"] = EndReason(kwargs["reason"])
        for name in ("by", "ended_by"):
            if name in kwargs:
                kwargs[name] = EndedBy(kwargs[name])
        if "artifacts" in kwargs:
            kwargs["artifacts"] = tuple(str(a) for a in kwargs["artifacts"])
        return cls(**kwargs)
    except (KeyError, ValueError, TypeError) as e:
        raise EventFormatError(f"bad {cls.kind.value} event: {e}") from None


EventListener = Callable[[BotEvent], None]


class EventBus:
    """Delivers each event to every listener in order; a failing listener never stops the bot."""

    def __init__(self) -> None:
        self._listeners: list[EventListener] = []

    def subscribe(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def emit(self, event: BotEvent) -> BotEvent:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception as e:  # a broken printer or webhook must not end the call
                print(f"event listener failed: {e!r}", file=sys.stderr)
        return event


class JsonLinesPrinter:
    """`--json`: one JSON object per event per line, flushed at once (a supervisor reads it live)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def __call__(self, event: BotEvent) -> None:
        self._stream.write(event.to_json() + "\n")
        self._stream.flush()


class TerminalPrinter:
    """One readable line per state change; periodic stats only with `show_stats`."""

    def __init__(self, stream: TextIO | None = None, show_stats: bool = False) -> None:
        self._stream = stream or sys.stdout
        self._show_stats = show_stats

    def __call__(self, event: BotEvent) -> None:
        if isinstance(event, Stats) and not self._show_stats:
            return
        stamp = event.at.astimezone().strftime("%H:%M:%S")
        self._stream.write(f"{stamp}  {event.kind.value:<19} {describe(event)}".rstrip() + "\n")
        self._stream.flush()


def describe(event: BotEvent) -> str:
    """The terminal's words for an event (after its time and name)."""
    match event:
        case Joining():
            return f"{event.platform} {event.meeting_id} as {event.name!r}"
        case AgentConnected():
            took = f" (connected in {event.connect_s:.1f} s)" if event.connect_s is not None else ""
            return f"{event.agent}{took}"
        case AgentReconnecting():
            return f"attempt {event.attempt}: {event.detail}"
        case AudioLost():
            return event.detail
        case AudioRecovered():
            return f"after {event.after_s:.1f} s: {event.detail}"
        case RecordingStopped():
            return event.detail
        case Ended():
            return f"reason={event.reason.value} by={event.by.value}"
        case Failed():
            saved = f" (saved: {', '.join(event.artifacts)})" if event.artifacts else ""
            return f"{event.code}: {event.message}{saved}"
        case Stats():
            return (
                f"to agent {event.frames_out} frames {event.level_out_dbfs:.0f} dBFS, "
                f"from agent {event.frames_in} frames {event.level_in_dbfs:.0f} dBFS, "
                f"drops {event.dropped}, reconnects {event.reconnects}"
            )
        case Summary():
            return ", ".join(f"{k}={v}" for k, v in event.payload().items())
        case _:
            return ""


__all__ = [
    "EVENT_TYPES",
    "AgentConnected",
    "AgentReconnecting",
    "AudioLost",
    "AudioRecovered",
    "AwaitingAdmission",
    "BotEvent",
    "Ended",
    "EndedBy",
    "EventBus",
    "EventFormatError",
    "EventKind",
    "EventListener",
    "Failed",
    "InCall",
    "Joining",
    "JsonLinesPrinter",
    "RecordingStopped",
    "Stats",
    "Summary",
    "TerminalPrinter",
    "describe",
    "parse_event",
]
