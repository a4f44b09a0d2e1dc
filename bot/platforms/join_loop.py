"""One join loop for every platform: read the page, name its screen, do the one thing that screen needs.

Meeting clients show their steps (permission prompts, tips, a lobby, walls) in varying order, so a join is a
loop over page snapshots rather than a fixed script. The loop is the same on every platform; what differs is
data (`JoinTable`: which screens end the join and with what failure, which are waiting and bounded by which
timeout, which is the call) and a handler per screen the bot acts on. The loop keeps the bounds: a known
screen without progress for `ui_timeout_s`, no known screen for `ui_stuck_s`, the browser's error page for
`network_retry_s`, a lobby for `lobby_timeout_s`, a host who does not come for `host_absent_timeout_s`.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, Literal, NoReturn, Unpack
from urllib.parse import urlsplit

from bot.meeting_urls import MeetingUrl, masked
from bot.outcome import CallState, FailureCode
from bot.platforms.base import Browser, StateCallback
from bot.platforms.page import PagePlatform, Timing
from bot.platforms.policies import JoinPolicy
from bot.platforms.ui import S, T

log = logging.getLogger(__name__)

_NET_RETRY_FIRST_S = 1.0  # reloads of an error page back off 1, 2, 4, 8, 15, 15… s
_NET_RETRY_MAX_S = 15.0
_MAX_BLOCKED_CLICKS = 5  # clicks in a row taken by something the bot cannot dismiss: a UI change
_JOIN_CLICK_EVERY_S = 2.0  # the client takes a moment to react to Join: clicking faster asks twice


class Step(enum.Enum):
    """What a screen's handler did this tick."""

    NOTHING = "nothing"  # nothing to do, or the click did not land: the loop's bounds decide
    ACTED = "acted"  # clicked or typed: progress
    RELOADED = "reloaded"  # opened the client again: read the new page at once


@dataclass(frozen=True)
class Waiting:
    """A screen on which the bot waits for others, bounded by `lobby_timeout_s` ("lobby") or
    `host_absent_timeout_s` ("host"); each bound counts from the first screen that has it."""

    bound: Literal["lobby", "host"]
    admission: bool = True  # the bot asked to be let in: report AWAITING_ADMISSION
    withdraw: bool = False  # the page has a control that withdraws the request: leave() clicks it


@dataclass(frozen=True)
class JoinTable(Generic[S]):
    """A platform's join as data. `terminal`: screens that end the join, with their failure; `host_absent`:
    how the HOST_ABSENT message begins ("the host did not join")."""

    in_call: S
    unknown: S
    terminal: Mapping[S, tuple[FailureCode, str]]
    waiting: Mapping[S, Waiting]
    host_absent: str


Handler = Callable[[T], Awaitable[Step]]


def ended_before_admission(removed: S, host_ended: S, call_ended: S) -> dict[S, tuple[FailureCode, str]]:
    """The terminal rows every platform shares: the call's end screens, seen before the bot was let in."""
    ended = (FailureCode.NOT_FOUND, "the meeting ended before the bot was let in")
    return {
        removed: (FailureCode.DENIED, "the bot was removed before it was let in"),
        host_ended: ended,
        call_ended: ended,
    }


class JoiningPlatform(PagePlatform[S, T]):
    """A page adapter whose join is the shared loop. Subclasses set `table`, return their handlers from
    `_handlers` and implement `_settle_in_call`; `display_name` is the name being joined with."""

    table: JoinTable[S]
    wake_when_lost: bool = False  # on an unknown screen, wake auto-hidden controls for the next look

    def __init__(self, browser: Browser, meeting: MeetingUrl, **timing: Unpack[Timing]) -> None:
        super().__init__(browser, meeting, **timing)
        self.screen = self.table.unknown  # the last screen seen, for logs and tests
        self.display_name = ""
        self._tries: dict[str, int] = {}  # per control or dialog, in this join
        self._join_clicked_at = -1e9
        self._unknown_since: float | None = None
        self._net_since: float | None = None  # since when the browser shows its network error page
        self._net_reload_at = 0.0
        self._net_delay = _NET_RETRY_FIRST_S

    async def join(self, display_name: str, policy: JoinPolicy, on_state: StateCallback) -> None:
        self.display_name = display_name
        on_state(CallState.JOINING)
        await self._goto(self.meeting.join_url)
        handlers = self._handlers()
        # The last time the page changed or the bot acted: UI_CHANGED after ui_timeout_s.
        progress_at = self._now()
        awaiting = False
        waiting_since: dict[str, float] = {}
        while True:
            snap = await self._read_join()
            screen = self.ui.classify(snap)
            now = self._now()
            if screen is not self.screen:
                log.info("%s: %s -> %s", self.name, self.screen.value, screen.value)
                self.screen, progress_at = screen, now
            if await self._network_error(snap, policy):
                progress_at = now
                await asyncio.sleep(self.poll_s)
                continue
            if screen in self.table.terminal:
                self._inside = False  # the client already put the bot out: nothing for leave() to withdraw
                code, message = self.table.terminal[screen]
                await self._fail(code, message, screen.value)
            waiting = self.table.waiting.get(screen)
            if waiting is not None:
                self._inside = self._inside or waiting.withdraw
                if waiting.admission and not awaiting:
                    awaiting = True
                    on_state(CallState.AWAITING_ADMISSION)
                since = waiting_since.setdefault(waiting.bound, now)
                await self._check_wait(waiting, now - since, policy, screen)
                progress_at = now
            elif screen is self.table.in_call:
                self._inside, self._joined_at = True, now
                log.info("%s: in the call (%d call signals)", self.name, snap.in_call_signals)
                on_state(CallState.IN_CALL)
                await self._settle_in_call()
                return
            handler = handlers.get(screen)
            step = await handler(snap) if handler is not None else Step.NOTHING
            if step is Step.RELOADED:
                progress_at = self._now()
                continue
            if step is Step.ACTED:
                progress_at = now
            await self._check_stuck(screen, snap, progress_at, policy)
            if screen is self.table.unknown and self.wake_when_lost:
                # The call's control bar may have hidden (and the call's signals with it) before this
                # look: bring it back for the next one.
                await self._wake_controls_quietly()
            await asyncio.sleep(self.poll_s)

    # ---- what each platform supplies -----------------------------------------------------------------

    @abc.abstractmethod
    def _handlers(self) -> Mapping[S, Handler[T]]:
        """The screens the bot acts on, each with what it does there."""

    @abc.abstractmethod
    async def _settle_in_call(self) -> None:
        """Right after admission: what the call needs before it is one (audio joined, consent given)."""

    async def _read_join(self) -> T:
        """One reading of the page while joining; a platform may look further (e.g. into a shadow root)."""
        return await self._snapshot()

    # ---- helpers for handlers ------------------------------------------------------------------------

    def _tally(self, key: str) -> int:
        """Counts one more try at `key` in this join; returns the count."""
        self._tries[key] = self._tries.get(key, 0) + 1
        return self._tries[key]

    async def _at_most(self, key: str, limit: int, message: str, step: str) -> None:
        """Counts one more try at `key`; past `limit` the page does not react: UI_CHANGED with `message`."""
        if self._tally(key) > limit:
            await self._fail(FailureCode.UI_CHANGED, message, step)

    def _may_try(self, key: str, limit: int) -> bool:
        """Counts one more try at `key`; False past `limit` (said once in the log): a control that does not
        change when clicked is left as it is."""
        count = self._tally(key)
        if count == limit + 1:
            log.warning("%s: %s does not change when clicked", self.name, key)
        return count <= limit

    async def _press_join(self, snap: T, click: Callable[[], Awaitable[bool]]) -> bool:
        """Clicks Join when it is enabled, at most every `_JOIN_CLICK_EVERY_S`; True when clicked."""
        now = self._now()
        if not snap.join_enabled or now - self._join_clicked_at < _JOIN_CLICK_EVERY_S:
            return False
        self._join_clicked_at = now
        return await click()

    async def _answer_permission(self, snap: T, limit: int, message: str) -> Step:
        """The client's own prompt for the microphone: allowed (the agent speaks through it), skipped
        when it cannot be; more than `limit` prompts fail with `message`."""
        await self._at_most("permission", limit, message, "permission")
        key = "permission_allow" if snap.buttons.get("permission_allow") else "permission_skip"
        if key == "permission_skip":
            log.warning("%s: no way to allow the microphone; the agent will not be heard", self.name)
        return Step.ACTED if await self._click_button(key, snap) else Step.NOTHING

    # ---- the loop's bounds ---------------------------------------------------------------------------

    async def _check_wait(self, waiting: Waiting, waited: float, policy: JoinPolicy, screen: S) -> None:
        """Gives up (withdrawing the request) once `waited` reaches the waiting screen's bound."""
        if waiting.bound == "lobby" and waited >= policy.lobby_timeout_s:
            await self._give_up(
                FailureCode.LOBBY_TIMEOUT,
                f"nobody let the bot in within {policy.lobby_timeout_s:g} s",
                screen.value,
            )
        if waiting.bound == "host" and waited >= policy.host_absent_timeout_s:
            await self._give_up(
                FailureCode.HOST_ABSENT,
                f"{self.table.host_absent} within {policy.host_absent_timeout_s:g} s",
                screen.value,
            )

    async def _fail_stuck(self, screen: str, snap: T, policy: JoinPolicy) -> NoReturn:
        await self._fail(
            FailureCode.UI_CHANGED,
            f"stuck on the {screen!r} screen for {policy.ui_timeout_s:g} s (page title {snap.title!r}, "
            f"buttons {snap.buttons_said()}); {self.label}'s page may have changed",
            screen,
        )

    async def _check_stuck(self, screen: S, snap: T, progress_at: float, policy: JoinPolicy) -> None:
        """Fails the join when the page has shown no screen the bot knows for `ui_stuck_s`, or a known
        screen without progress for `ui_timeout_s`; the message lists the visible buttons' texts, so a
        user's report says what the page offered instead."""
        if self._blocked_clicks >= _MAX_BLOCKED_CLICKS:
            self._blocked_clicks = 0
            await self._fail(
                FailureCode.UI_CHANGED,
                f"{_MAX_BLOCKED_CLICKS} clicks in a row on the {screen.value!r} screen were taken by "
                f"something the bot does not know how to dismiss",
                screen.value,
            )
        now = self._now()
        if screen is not self.table.unknown:
            self._unknown_since = None
            if now - progress_at >= policy.ui_timeout_s:
                await self._fail_stuck(screen.value, snap, policy)
            return
        self._unknown_since = self._unknown_since if self._unknown_since is not None else now
        if now - self._unknown_since >= policy.ui_stuck_s:
            await self._fail(
                FailureCode.UI_CHANGED,
                f"no {self.label} screen the bot knows for {policy.ui_stuck_s:g} s (page title "
                f"{snap.title!r}, buttons {snap.buttons_said()}); {self.label}'s page may have changed",
                screen.value,
            )

    async def _network_error(self, snap: T, policy: JoinPolicy) -> bool:
        """True when the browser shows its own error page (the platform's host could not be reached):
        reloads with backoff within `network_retry_s`, then fails the join as `network_error`. Any other
        page resets the count."""
        if snap.net_error is None:
            self._net_since, self._net_delay = None, _NET_RETRY_FIRST_S
            return False
        now = self._now()
        host = urlsplit(self._target).hostname or self._target
        if self._net_since is None:
            self._net_since, self._net_reload_at = now, now + self._net_delay
            log.warning(
                "%s: could not reach %s (%s); retrying for %g s",
                self.name,
                host,
                snap.net_error,
                policy.network_retry_s,
            )
        if now - self._net_since >= policy.network_retry_s:
            await self._fail(
                FailureCode.NETWORK_ERROR,
                f"could not reach {host}: the browser says {snap.net_error} (retried for "
                f"{policy.network_retry_s:g} s); check this machine's network, DNS and proxy",
                "network",
            )
        if now >= self._net_reload_at:
            self._net_delay = min(self._net_delay * 2, _NET_RETRY_MAX_S)
            self._net_reload_at = now + self._net_delay
            log.info("%s: reloading %s after %s", self.name, masked(self._target), snap.net_error)
            await self._goto(self._target)
        return True
