"""The platform seam: how the session drives any meeting client (the words for what happened: bot.outcome).

A platform adapter joins with a display name (reporting states as it goes), waits until the call ends, and
leaves. Everything that is specific to one client (URLs, selectors, texts, what to do on each screen) lives
in that platform's modules; what adapters driving a page share lives in `page.PagePlatform`, and the one
join loop in `join_loop.JoiningPlatform`. An adapter drives the browser's page and has the browser save that
page (screenshot, HTML) when a join fails, before it navigates anywhere.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bot.outcome import RETRYABLE, CallState, EndReason, FailureCode
from bot.platforms.policies import CallPolicy, JoinPolicy

if TYPE_CHECKING:
    from playwright.async_api import Page

    from bot.browser.input import Hands
    from bot.meeting_urls import MeetingUrl


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


StateCallback = Callable[[CallState], None]


class Browser(Protocol):
    """What an adapter needs of the bot's browser (`bot.browser.launch.BotBrowser`): the page to drive, the
    hands that act on it as a person would (`bot.browser.input.Hands`), and the one place where failure
    artifacts are saved."""

    @property
    def page(self) -> Page: ...

    @property
    def hands(self) -> Hands: ...

    async def save_artifacts(self, label: str) -> list[Path]:
        """Saves a screenshot and the HTML of the page as it is now under `label`; returns the files."""
        ...


class Platform(abc.ABC):
    """One meeting client driven in the browser's page. Create one per join."""

    name: str  # "meet", "zoom", "teams"

    def __init__(self, browser: Browser, meeting: MeetingUrl) -> None:
        self.browser = browser
        self.page = browser.page
        self.meeting = meeting

    @abc.abstractmethod
    async def join(self, display_name: str, policy: JoinPolicy, on_state: StateCallback) -> None:
        """Get into the call. Reports JOINING, AWAITING_ADMISSION (if a lobby), then IN_CALL once
        admitted (never while in a lobby), or raises `JoinFailure` carrying the artifacts of the page as it
        was when the join failed."""

    @abc.abstractmethod
    async def wait_for_end(self, policy: CallPolicy) -> EndReason:
        """Return once the call is over for the bot, with the reason."""

    @abc.abstractmethod
    async def leave(self) -> None:
        """Leave the call (idempotent; safe when never joined or already out)."""
