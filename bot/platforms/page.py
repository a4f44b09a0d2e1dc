"""What every adapter that drives a meeting client in a browser page does alike.

Each platform's module keeps its own data (`*_ui`: selectors, texts, `classify`, in one `ui.PlatformUi`)
and its own steps (what each screen of its join needs, the chores of its call, how its leave buttons work).
This base holds the rest: reading the page (and the client's frame) into one snapshot, opening the client,
clicking and typing as a person would, waking auto-hidden controls, failing with the page saved first,
watching the call until it ends, and leaving with closing the page as the fallback. The join loop itself is
`join_loop.JoiningPlatform`.

Acting: the adapter decides from what it reads with Playwright; the person's part — clicks, typing, the
pointer that wakes auto-hidden toolbars — goes through the browser's `hands` (`bot.browser.input`): OS-level
input on the bot's own display in `xvfb` mode, which is what Meet's and Zoom's entry checks accept, or input
synthesized by Playwright in `headless` mode.

Failure artifacts: a failing join has the browser save the page as it is *before* anything navigates. A join
that gives up on its own bound withdraws its request (leave → `about:blank`); saving after that would keep a
blank page.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, NoReturn, TypedDict

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Frame, Locator, Page

from bot.browser.input import InputError
from bot.meeting_urls import MeetingUrl, masked
from bot.outcome import EndReason, FailureCode
from bot.platforms.base import Browser, JoinFailure, Platform
from bot.platforms.policies import CallPolicy
from bot.platforms.ui import PlatformUi, S, T, exact_text

log = logging.getLogger(__name__)

_CLICK_TIMEOUT_MS = 3000
_GOTO_TIMEOUT_MS = 30000
_CLOSE_TIMEOUT_MS = 5000
# Twice a second is enough to leave promptly; each look costs the bot CPU for the whole call.
_CALL_POLL_S = 0.5

# Chromium's network errors while opening the client: the page then shows Chromium's own error page.
_NET_ERROR = re.compile(r"\bnet::(ERR_[A-Z_]+)")

# What covers an element where a click on it would land (an overlay, a scrim, a popup), described for logs
# and for the user: `<div#id.class> "its text"`.
_COVER_JS = """
(el) => {
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) return null;
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  if (!hit || hit === el || el.contains(hit)) return null;
  const id = hit.id ? "#" + hit.id : "";
  const cls = (hit.getAttribute("class") || "").trim().split(/\\s+/).filter(Boolean).slice(0, 3)
    .map((c) => "." + c).join("");
  const text = (hit.innerText || "").replace(/\\s+/g, " ").trim().slice(0, 40);
  return "<" + hit.tagName.toLowerCase() + id + cls + ">" + (text ? ' "' + text + '"' : "");
}
"""

Scope = Page | Frame | Locator  # where to look for an element


@dataclass(frozen=True)
class CallReading:
    """What one look at the page says about a call the bot is in."""

    end: EndReason | None = None  # the page says the call is over for the bot, and why
    participants: int | None = None  # people in the call, the bot included; None: cannot tell


class Timing(TypedDict, total=False):
    """How a page adapter paces itself, for subclasses to pass on: `poll_s` between readings, `clock` for
    its bounds (tests pass a fake one)."""

    poll_s: float
    clock: Callable[[], float]


def call_ends(removed: S, host_ended: S, call_ended: S) -> dict[S, EndReason]:
    """The `ends` rows every platform shares: removed, ended by the host, ended."""
    return {removed: EndReason.REMOVED, host_ended: EndReason.HOST_ENDED, call_ended: EndReason.CALL_ENDED}


class PagePlatform(Platform, Generic[S, T]):
    """A platform adapter that reads its page every `poll_s` and acts on what it shows.

    Subclasses set `name`, `label`, `ui` and `ends`, implement `join`, `_in_client` (where the call lives),
    `_count` (people in the call) and `_leave_in_page` (their leave buttons), may add chores to `_tidy_call`
    and `_dismiss_popup`, and set `_inside` while the bot is somewhere `_leave_in_page` has to get it out
    of, and `_joined_at` once in the call.
    """

    label: str  # for messages: "Meet", "Zoom"
    ui: PlatformUi[S, T]  # the platform's page, as data
    ends: Mapping[S, EndReason]  # screens that say the call is over for the bot
    css_click_timeout_ms: float = _CLICK_TIMEOUT_MS  # how long a click on a selector's element may wait

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
        self._target = meeting.join_url  # the last URL the bot opened (network errors name its host)
        self._cover: str | None = None  # what last took a click meant for an element
        self._blocked_clicks = 0  # clicks in a row taken by `_cover`
        self._frames: list[Frame] = []  # the frames the last snapshot read: the page's, then the client's
        self._dismissing = False

    # ---- failing -------------------------------------------------------------------------------------

    async def _fail(self, code: FailureCode, message: str, step: str) -> NoReturn:
        """Fails the join with the page saved as it is now. A UI change says what covered the page when
        the last click was taken by something else."""
        if code is FailureCode.UI_CHANGED and self._cover:
            message += f"; the clicks were taken by {self._cover}, which covers the page"
        raise JoinFailure(code, message, step=step, artifacts=await self._save_page(code))

    async def _give_up(self, code: FailureCode, message: str, step: str) -> NoReturn:
        """Our own bound ran out while waiting: save the page, withdraw the request (so nobody lets the bot
        in later), then fail."""
        artifacts = await self._save_page(code)
        await self.leave()
        raise JoinFailure(code, message, step=step, artifacts=artifacts)

    async def _save_page(self, code: FailureCode) -> list[Path]:
        # Named by platform, code and time; the browser never overwrites (a retried join keeps each page).
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return await self.browser.save_artifacts(f"{self.name}-{code.value}-{stamp}")

    # ---- acting on the page --------------------------------------------------------------------------

    async def _goto(self, url: str) -> None:
        """Opens `url`. A network error is not a failure here: the page then shows Chromium's error page,
        which the join loop retries (`_network_error`)."""
        self._target = url
        try:
            await self.page.goto(url, wait_until="domcontentloaded", timeout=_GOTO_TIMEOUT_MS)
        except PlaywrightError as e:
            found = _NET_ERROR.search(str(e))
            if found is not None:
                log.info("%s: opening %s: %s", self.name, masked(url), found.group(1))
                return
            if self.page.is_closed():
                raise
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

    async def _snapshot(self) -> T:
        """One reading of the page and, when the platform's client runs in a frame, of that frame."""
        frames: list[Frame] = [self.page.main_frame]
        snap = self.ui.snapshot()
        index = 0
        while index < len(frames):
            raw = await self._evaluate(frames[index], self.ui.script, self.ui.script_arg)
            snap.merge(raw, index)
            if index == 0 and self.ui.client_frame and raw.get("clientFrame"):
                client = await self._client_frame(self.ui.client_frame)
                if client is not None:
                    frames.append(client)
            index += 1
        self._frames = frames
        return snap

    async def _client_frame(self, selector: str) -> Frame | None:
        try:
            handle = await self.page.query_selector(selector)
            return await handle.content_frame() if handle is not None else None
        except PlaywrightError:
            return None

    def _frame(self, key: str, snap: T | None) -> Frame:
        """The frame that showed `key` in `snap` (the page's when it is not known)."""
        index = snap.frame_of.get(key, 0) if snap is not None else 0
        return self._frames[index] if index < len(self._frames) else self.page.main_frame

    async def _click_css(self, key: str, snap: T | None = None, wait: bool = False) -> bool:
        target = self._css(self._frame(key, snap), self.ui.selectors[key])
        return await self._click(target, wait, timeout_ms=self.css_click_timeout_ms)

    async def _click_button(self, key: str, snap: T | None = None, in_dialog: bool = False) -> bool:
        scope: Scope = self._frame(f"button:{key}", snap)
        if in_dialog:
            scope = scope.locator("[role=dialog], [role=alertdialog]")
        return await self._click(self._button(scope, self.ui.buttons[key]))

    async def _type_into(self, key: str, text: str, snap: T | None = None) -> bool:
        return await self._type(self._css(self._frame(key, snap), self.ui.selectors[key]), text)

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

    async def _click(
        self, target: Locator, wait: bool = False, timeout_ms: float = _CLICK_TIMEOUT_MS
    ) -> bool:
        """Clicks `target` if it is visible now (or, with `wait`, once it is); True when clicked. A click
        that something else takes (a popup, a scrim) is not retried here and never replaced by Enter (on
        Zoom's leave dialog Enter cancels): what covers the target is noted (`_cover`, named in a later
        UI_CHANGED), known popups are dismissed, and the caller's loop tries again."""
        return await self._act(
            target, lambda: self.browser.hands.click(target, timeout_s=timeout_ms / 1000), look_first=not wait
        )

    async def _act(
        self, target: Locator, act: Callable[[], Awaitable[object]], look_first: bool = False
    ) -> bool:
        """Does `act` to `target` (a click, typing), if `target` is visible when `look_first`; True when it
        went through. One that fails is noted by `_blocked_click`, for the caller's loop to try again."""
        try:
            if look_first and not await target.is_visible():
                return False
            await act()
            self._cover, self._blocked_clicks = None, 0
            return True
        except (PlaywrightError, InputError) as e:
            if self.page.is_closed():
                raise
            await self._blocked_click(target, e)
            return False

    async def _blocked_click(self, target: Locator, error: PlaywrightError | InputError) -> None:
        cover: str | None = None
        with contextlib.suppress(PlaywrightError):
            cover = await target.evaluate(_COVER_JS, timeout=1000)
        if cover:
            self._blocked_clicks = self._blocked_clicks + 1 if cover == self._cover else 1
            self._cover = cover
            log.info("%s: click taken by %s; dismissing known popups", self.name, cover)
            await self._dismiss_popups()
        else:
            log.info("%s: click failed: %s", self.name, str(error).splitlines()[0])

    async def _dismiss_popups(self) -> bool:
        """Clicks away a popup this platform knows, wherever it is; True when one was. Not again from
        within: dismissing clicks too, and a click taken by something comes back here."""
        if self._dismissing:
            return False
        self._dismissing = True
        try:
            return await self._dismiss_popup(await self._snapshot())
        finally:
            self._dismissing = False

    async def _dismiss_popup(self, snap: T) -> bool:
        """Clicks away the popup `snap` shows, if the platform knows it; the base knows none."""
        return False

    async def _type(self, field: Locator, text: str) -> bool:
        """Replaces the field's value with real key events, as a person would: both clients listen to
        input events and keep Join disabled when a value is set by script. True when it typed."""
        return await self._act(
            field, lambda: self.browser.hands.replace_text(field, text, timeout_s=_CLICK_TIMEOUT_MS / 1000)
        )

    async def _wake_controls_quietly(self) -> None:
        try:
            await self._wake_controls()
        except (PlaywrightError, InputError):
            if self.page.is_closed():
                raise

    async def _wake_controls(self) -> None:
        """The control bar auto-hides after a few seconds without pointer movement; moving brings it back."""
        await self.browser.hands.wake()

    # ---- in the call ---------------------------------------------------------------------------------

    async def _read_call(self) -> CallReading:
        """One look at the call, and any chore it asks for meanwhile (e.g. a late consent dialog)."""
        snap = await self._snapshot()
        screen = self.ui.classify(snap)
        await self._tidy_call(snap, screen)
        end = self.ends.get(screen)
        if end is None and self._left_the_client():
            log.info("%s: the page left the meeting (now %s)", self.name, self._client_url())
            end = EndReason.CALL_ENDED  # the call ended by navigating away, with no end text
        return CallReading(end, self._count(snap, screen))

    async def _tidy_call(self, snap: T, screen: S) -> None:
        """Clicks away what the call shows over itself (cards, late dialogs); the base knows nothing."""

    @abc.abstractmethod
    def _count(self, snap: T, screen: S) -> int | None:
        """People in the call, the bot included; None when the page does not say."""

    @abc.abstractmethod
    def _in_client(self, url: str) -> bool:
        """`url` is a page of the platform's client where the call lives."""

    def _client_url(self) -> str:
        """Where the client is: its frame's URL (when it runs in one) or the page's."""
        frame = self._frames[-1] if self._frames else self.page.main_frame
        return frame.url if not frame.is_detached() else self.page.url

    def _left_the_client(self) -> bool:
        """The client is no longer on a page of the call: the meeting is over for the bot. An empty URL is
        a page between two navigations: not known yet."""
        url = self._client_url()
        return bool(url) and not self._in_client(url)

    async def wait_for_end(self, policy: CallPolicy) -> EndReason:
        started = self._joined_at if self._joined_at is not None else self._now()
        alone_since: float | None = None
        pending: EndReason | None = None  # an end must be read twice in a row: one reading is a flicker
        while True:
            # Auto-hiding controls take the call's signals and the count with them: bring them back
            # before each look (a hidden bar is never the end of a call).
            await self._wake_controls_quietly()
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
