"""What every adapter that drives a meeting client in a browser page does alike.

Each platform's module keeps its own data (`*_ui`: selectors, texts, `classify`) and its own flow (the join
loop, what one reading of a call means, how its leave buttons work). This base holds the rest: opening the
client, clicking and typing as a person would, waking auto-hidden controls, failing with the page saved
first, watching the call until it ends, and leaving with closing the page as the fallback.

Failure artifacts: a failing join has the browser save the page as it is *before* anything navigates. A join
that gives up on its own bound withdraws its request (leave → `about:blank`); saving after that would keep a
blank page.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Frame, Locator, Page

from bot.platforms.base import Browser, CallPolicy, EndReason, FailureCode, JoinFailure, JoinPolicy, Platform
from bot.platforms.ui import exact_text
from bot.platforms.urls import MeetingUrl

log = logging.getLogger(__name__)

_CLICK_TIMEOUT_MS = 3000
_GOTO_TIMEOUT_MS = 30000
_CLOSE_TIMEOUT_MS = 5000
# Twice a second is enough to leave promptly; each look costs the bot CPU for the whole call.
_CALL_POLL_S = 0.5

Scope = Page | Frame | Locator  # where to look for an element


@dataclass(frozen=True)
class CallReading:
    """What one look at the page says about a call the bot is in."""

    end: EndReason | None = None  # the page says the call is over for the bot, and why
    participants: int | None = None  # people in the call, the bot included; None: cannot tell


class PagePlatform(Platform):
    """A platform adapter that reads its page every `poll_s` and acts on what it shows.

    Subclasses set `name` and `label`, implement `join`, `_read_call` (one `CallReading`, doing any chore
    the page asks for meanwhile) and `_leave_in_page` (their leave buttons), and set `_inside` while the
    bot is somewhere `_leave_in_page` has to get it out of, and `_joined_at` once in the call.
    """

    label: str  # for messages: "Meet", "Zoom"

    def __init__(
        self,
        browser: Browser,
        meeting: MeetingUrl,
        *,
        poll_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(browser, meeting)
        self.poll_s = poll_s
        self._now = clock
        self._inside = False  # in a lobby or the call: leave() has something to undo in the page
        self._joined_at: float | None = None
        self._left = False

    # ---- failing -------------------------------------------------------------------------------------

    async def _fail(self, code: FailureCode, message: str, step: str) -> NoReturn:
        """Fails the join with the page saved as it is now."""
        raise JoinFailure(code, message, step=step, artifacts=await self._save_page(code))

    async def _give_up(self, code: FailureCode, message: str, step: str) -> NoReturn:
        """Our own bound ran out while waiting: save the page, withdraw the request (so nobody lets the bot
        in later), then fail."""
        artifacts = await self._save_page(code)
        await self.leave()
        raise JoinFailure(code, message, step=step, artifacts=artifacts)

    async def _fail_stuck(self, screen: str, title: str, policy: JoinPolicy) -> NoReturn:
        await self._fail(
            FailureCode.UI_CHANGED,
            f"stuck on the {screen!r} screen for {policy.ui_timeout_s:g} s (page title {title!r}); "
            f"{self.label}'s page may have changed",
            screen,
        )

    async def _save_page(self, code: FailureCode) -> list[Path]:
        # Named by platform, code and time; the browser never overwrites (a retried join keeps each page).
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return await self.browser.save_artifacts(f"{self.name}-{code.value}-{stamp}")

    # ---- acting on the page --------------------------------------------------------------------------

    async def _goto(self, url: str) -> None:
        try:
            await self.page.goto(url, wait_until="domcontentloaded", timeout=_GOTO_TIMEOUT_MS)
        except PlaywrightError as e:
            await self._fail(FailureCode.UI_CHANGED, f"could not open {self.label}: {e}", "open")

    async def _evaluate(self, frame: Frame, script: str, arg: object) -> dict[str, object]:
        """One run of a page script in `frame`; {} while the frame navigates (the next tick reads the new
        page). Raises only when the page itself is gone."""
        try:
            raw = await frame.evaluate(script, arg)
        except PlaywrightError:
            if self.page.is_closed():
                raise
            return {}
        return raw if isinstance(raw, dict) else {}

    @staticmethod
    def _css(scope: Scope, selectors: tuple[str, ...]) -> Locator:
        """The first visible element matching any of `selectors`."""
        return scope.locator(", ".join(selectors)).filter(visible=True).first

    @staticmethod
    def _button(scope: Scope, texts: tuple[str, ...]) -> Locator:
        """The first visible button or link whose whole text is one of `texts` (folded, see `ui.fold`)."""
        return (
            scope.locator("button, a, [role=button]").filter(has_text=exact_text(texts), visible=True).first
        )

    async def _click(self, target: Locator, wait: bool = False) -> bool:
        """Clicks `target` if it is visible now (or, with `wait`, once it is); True when clicked."""
        try:
            if not wait and not await target.is_visible():
                return False
            try:
                await target.click(timeout=_CLICK_TIMEOUT_MS)
            except PlaywrightError:
                # An overlay can swallow pointer clicks; a focused button still takes Enter.
                await target.focus(timeout=_CLICK_TIMEOUT_MS)
                await target.press("Enter", timeout=_CLICK_TIMEOUT_MS)
            return True
        except PlaywrightError as e:
            log.info("%s: click failed: %s", self.name, e)
            return False

    async def _type(self, field: Locator, text: str, delay_ms: float = 15) -> bool:
        """Replaces the field's value with real key events, as a person would: both clients listen to
        input events and keep Join disabled when a value is set by script. True when it typed."""
        try:
            await field.click(timeout=_CLICK_TIMEOUT_MS)
            await field.press("ControlOrMeta+a")
            await field.press("Backspace")
            await field.press_sequentially(text, delay=delay_ms)
            return True
        except PlaywrightError as e:
            log.info("%s: typing failed: %s", self.name, e)
            return False

    async def _wake_controls(self) -> None:
        """The control bar auto-hides after a few seconds without pointer movement; moving brings it back."""
        size = self.page.viewport_size or {"width": 1280, "height": 720}
        await self.page.mouse.move(size["width"] / 2, size["height"] / 2)
        await self.page.mouse.move(size["width"] / 2, size["height"] - 40)

    # ---- in the call ---------------------------------------------------------------------------------

    @abc.abstractmethod
    async def _read_call(self) -> CallReading:
        """One look at the call (and any chore it asks for, e.g. a late consent dialog)."""

    async def wait_for_end(self, policy: CallPolicy) -> EndReason:
        started = self._joined_at if self._joined_at is not None else self._now()
        alone_since: float | None = None
        pending: EndReason | None = None  # an end must be read twice in a row: one reading is a flicker
        while True:
            reading = await self._read_call()
            now = self._now()
            if reading.end is not None and reading.end is pending:
                self._inside = False
                log.info("%s: call over: %s", self.name, reading.end.value)
                return reading.end
            pending = reading.end
            # An unknown count (selectors gone) is not "alone": leaving a live meeting is the worse mistake.
            if reading.participants is not None and reading.participants <= 1:
                alone_since = alone_since if alone_since is not None else now
                if now - alone_since >= policy.alone_after_s:
                    return EndReason.ALONE
            elif reading.participants is not None:
                alone_since = None
            if now - started >= policy.max_duration_s:
                return EndReason.MAX_DURATION
            await asyncio.sleep(max(self.poll_s, _CALL_POLL_S))

    # ---- leaving -------------------------------------------------------------------------------------

    @abc.abstractmethod
    async def _leave_in_page(self) -> None:
        """Leave by the client's own controls (only called while `_inside`)."""

    async def leave(self) -> None:
        """Leaves by the client's controls when in a lobby or the call, then closes the client page
        (`about:blank`), which also ends whatever the controls could not. Idempotent; safe when never
        joined or already out."""
        if self._left or self.page.is_closed():
            return
        self._left = True
        try:
            if self._inside:
                await self._leave_in_page()
        except PlaywrightError as e:
            log.info(
                "%s: leaving by the client's controls failed (%s); closing the page instead", self.name, e
            )
        finally:
            self._inside = False
            if not self.page.is_closed():
                try:
                    await self.page.goto("about:blank", timeout=_CLOSE_TIMEOUT_MS)
                except PlaywrightError as e:
                    log.info("%s: could not close the client page: %s", self.name, e)
