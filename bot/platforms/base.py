"""The platform seam: how the session drives any meeting client, and the words for what happened.

A platform adapter joins with a display name (reporting states as it goes), waits until the call ends, and
leaves. Everything that is specific to one client (URLs, selectors, texts) lives in that platform's module.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.async_api import Page

    from bot.platforms.urls import MeetingUrl


class CallState(StrEnum):
    """States the bot reports, in the order they normally happen."""

    JOINING = "joining"
    AWAITING_ADMISSION = "awaiting_admission"
    IN_CALL = "in_call"
    ENDED = "ended"
    FAILED = "failed"


class EndReason(StrEnum):
    """Why a call the bot was in ended."""

    REMOVED = "removed"  # someone removed the bot
    HOST_ENDED = "host_ended"  # the host ended the meeting for everyone
    CALL_ENDED = "call_ended"  # the meeting ended some other way (page says so)
    ALONE = "alone"  # no other participant for the configured time
    MAX_DURATION = "max_duration"  # the bot's own maximum call duration
    LEFT = "left"  # the bot was told to leave (signal, API, cancel)
    AGENT_ENDED = "agent_ended"  # the agent could not be kept connected


class FailureCode(StrEnum):
    """Why the bot never got into the call. Each is terminal unless listed in `RETRYABLE`."""

    DENIED = "denied"  # someone in the call denied the request
    LOBBY_TIMEOUT = "lobby_timeout"  # nobody answered the request in time
    BLOCKED = "blocked"  # the platform refused this browser ("You can't join this video call")
    SIGN_IN_REQUIRED = "sign_in_required"
    NOT_FOUND = "not_found"  # meeting code invalid or expired
    HOST_ABSENT = "host_absent"  # the host never started the meeting within the bound
    PASSCODE_WRONG = "passcode_wrong"
    CAPTCHA = "captcha"
    BOT_DETECTED = "bot_detected"  # an anti-bot wall
    UI_CHANGED = "ui_changed"  # an expected element never appeared: selectors need an update
    BROWSER_CRASHED = "browser_crashed"
    INVALID_URL = "invalid_url"


RETRYABLE: frozenset[FailureCode] = frozenset({FailureCode.BLOCKED})


@dataclass
class JoinFailure(Exception):
    """A typed failure to join, carrying the step it happened in and the saved artifacts."""

    code: FailureCode
    message: str
    step: str = ""
    artifacts: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE

    def __str__(self) -> str:
        where = f" (at {self.step})" if self.step else ""
        saved = f"; saved {', '.join(str(p) for p in self.artifacts)}" if self.artifacts else ""
        return f"{self.code.value}: {self.message}{where}{saved}"


@dataclass(frozen=True)
class JoinPolicy:
    """Bounds on joining, all in seconds."""

    lobby_timeout_s: float = 600.0  # Meet itself gives up after about 10 minutes
    host_absent_timeout_s: float = 300.0
    ui_timeout_s: float = 20.0  # how long to look for an expected element before UI_CHANGED
    retries: int = 2  # extra attempts after a retryable failure (RETRYABLE: Meet's block on guests)
    retry_delay_s: float = 5.0


@dataclass(frozen=True)
class CallPolicy:
    """When the bot ends a call on its own."""

    alone_after_s: float = 60.0
    max_duration_s: float = 3 * 3600.0


StateCallback = Callable[[CallState], None]


class Platform(abc.ABC):
    """One meeting client driven in one browser page. Create one per join."""

    name: str  # "meet", "zoom"

    def __init__(self, page: Page, meeting: MeetingUrl) -> None:
        self.page = page
        self.meeting = meeting

    @abc.abstractmethod
    async def join(self, display_name: str, policy: JoinPolicy, on_state: StateCallback) -> None:
        """Get into the call. Reports JOINING, AWAITING_ADMISSION (if a lobby), then IN_CALL once
        admitted (never while in a lobby), or raises `JoinFailure`."""

    @abc.abstractmethod
    async def wait_for_end(self, policy: CallPolicy) -> EndReason:
        """Return once the call is over for the bot, with the reason."""

    @abc.abstractmethod
    async def leave(self) -> None:
        """Leave the call (idempotent; safe when never joined or already out)."""
