"""The bot's status events: one typed stream, fanned out to the terminal, JSON lines and a webhook."""

from __future__ import annotations

import datetime as dt
import json
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TextIO


class EventKind(StrEnum):
    JOINING = "joining"
    AWAITING_ADMISSION = "awaiting_admission"
    IN_CALL = "in_call"
    AGENT_CONNECTED = "agent_connected"
    AGENT_RECONNECTING = "agent_reconnecting"
    STATS = "stats"
    ENDED = "ended"
    FAILED = "failed"
    SUMMARY = "summary"


@dataclass(frozen=True)
class BotEvent:
    kind: EventKind
    data: dict[str, Any] = field(default_factory=dict)
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind.value, "at": self.at.isoformat(), "id": self.id, **self.data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), default=str)


EventListener = Callable[[BotEvent], None]


class EventBus:
    """Delivers each event to every listener in order; a failing listener never stops the bot."""

    def __init__(self) -> None:
        self._listeners: list[EventListener] = []
        self.history: list[BotEvent] = []

    def subscribe(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def emit(self, kind: EventKind, **data: Any) -> BotEvent:
        event = BotEvent(kind, data)
        self.history.append(event)
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
        if event.kind is EventKind.STATS and not self._show_stats:
            return
        stamp = event.at.astimezone().strftime("%H:%M:%S")
        self._stream.write(f"{stamp}  {event.kind.value:<19} {_describe(event)}".rstrip() + "\n")
        self._stream.flush()


def _describe(event: BotEvent) -> str:
    d = event.data
    match event.kind:
        case EventKind.JOINING:
            return f"{d.get('platform', '')} {d.get('meeting_id', '')} as {d.get('name', '')!r}"
        case EventKind.AGENT_CONNECTED:
            return str(d.get("agent", ""))
        case EventKind.AGENT_RECONNECTING:
            return f"attempt {d.get('attempt')}: {d.get('detail', '')}"
        case EventKind.ENDED:
            by = f" by={d['by']}" if d.get("by") else ""
            return f"reason={d.get('reason')}{by}"
        case EventKind.FAILED:
            arts = d.get("artifacts") or []
            saved = f" (saved: {', '.join(arts)})" if arts else ""
            return f"{d.get('code')}: {d.get('message')}{saved}"
        case EventKind.STATS:
            return (
                f"to agent {d.get('frames_out')} frames {d.get('level_out_dbfs', -120):.0f} dBFS, "
                f"from agent {d.get('frames_in')} frames {d.get('level_in_dbfs', -120):.0f} dBFS, "
                f"drops {d.get('dropped', 0)}, reconnects {d.get('reconnects', 0)}"
            )
        case EventKind.SUMMARY:
            return ", ".join(f"{k}={v}" for k, v in d.items())
        case _:
            return ""
