"""Google Meet driven in one browser page as a guest: join, report states, watch for the end, leave.

Like the Zoom adapter this is a loop over page snapshots rather than a fixed script: Meet shows its
"Getting ready" spinner, permission dialog, sign-in suggestion and tips in varying order, so each tick reads
the page (`meet_ui`) and does the one thing the current screen needs.

Microphone policy: the bot keeps its microphone ON (the agent speaks through it) and its camera OFF.
Admission needs two call-only signals and no lobby text: the lobby shows "Leave call", the toggles and a
self tile too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator, Page

from bot.platforms.base import (
    CallPolicy,
    CallState,
    EndReason,
    FailureCode,
    JoinFailure,
    JoinPolicy,
    Platform,
    StateCallback,
)
from bot.platforms.meet_ui import (
    BUTTONS,
    SELECTORS,
    SNAPSHOT_JS,
    TEXTS,
    Screen,
    Snapshot,
    classify,
    exact_text,
    snapshot_selectors,
)
from bot.platforms.urls import MeetingUrl

log = logging.getLogger(__name__)

# Screens that end a join attempt. BLOCKED is retryable by the caller (see base.RETRYABLE).
_TERMINAL: dict[Screen, tuple[FailureCode, str]] = {
    Screen.NOT_FOUND: (FailureCode.NOT_FOUND, "Meet says the meeting code does not work"),
    Screen.SIGN_IN: (FailureCode.SIGN_IN_REQUIRED, "this meeting only admits signed-in Google accounts"),
    Screen.BLOCKED: (FailureCode.BLOCKED, 'Google refused this browser: "You can\'t join this video call"'),
    Screen.DENIED: (FailureCode.DENIED, "someone in the call denied the request to join"),
    Screen.LOBBY_TIMEOUT: (FailureCode.LOBBY_TIMEOUT, "nobody answered the request to join (Meet gave up)"),
    Screen.REMOVED: (FailureCode.DENIED, "the bot was removed before it was let in"),
    Screen.HOST_ENDED: (FailureCode.NOT_FOUND, "the meeting ended before the bot was let in"),
    Screen.CALL_ENDED: (FailureCode.NOT_FOUND, "the meeting ended before the bot was let in"),
    Screen.LEFT: (FailureCode.UI_CHANGED, "Meet says the bot left while it was joining"),
}
_ENDS: dict[Screen, EndReason] = {
    Screen.REMOVED: EndReason.REMOVED,
    Screen.HOST_ENDED: EndReason.HOST_ENDED,
    Screen.CALL_ENDED: EndReason.CALL_ENDED,
    Screen.LEFT: EndReason.CALL_ENDED,  # the page says so without our leave(): another tab, or Meet itself
}
_CLICK_TIMEOUT_MS = 3000
_MAX_CLICKS = 6  # per toggle/dialog: more means the page does not react to the click


class MeetPlatform(Platform):
    """Google Meet guest join. `artifacts_dir`: where a failed join saves a screenshot and the page HTML
    (the session saves its own when it is None). `audio_reload_s`: how long a pre-join page without any
    `<audio>` element (Meet's alternate audio setup, which delivers no remote audio) is tolerated before
    a reload, at most `max_reloads` times."""

    name = "meet"

    def __init__(
        self,
        page: Page,
        meeting: MeetingUrl,
        *,
        artifacts_dir: Path | None = None,
        poll_s: float = 0.25,
        audio_reload_s: float = 3.0,
        max_reloads: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(page, meeting)
        self.artifacts_dir = artifacts_dir
        self.poll_s = poll_s
        self.audio_reload_s = audio_reload_s
        self.max_reloads = max_reloads
        self._now = clock
        self._selectors = snapshot_selectors()
        self._stage = "out"  # "out" | "lobby" | "call": what leave() has to undo
        self._joined_at: float | None = None
        self._left = False
        self.screen = Screen.UNKNOWN  # the last screen seen, for logs and tests
        self.reloads = 0

    # ---- joining -------------------------------------------------------------------------------------

    async def join(self, display_name: str, policy: JoinPolicy, on_state: StateCallback) -> None:
        on_state(CallState.JOINING)
        await self._goto(self.meeting.join_url)
        now = self._now()
        progress_at = now  # last time the page changed or the bot acted: UI_CHANGED after ui_timeout_s
        awaiting = False
        lobby_since: float | None = None
        host_wait_since: float | None = None
        prejoin_since: float | None = None
        last_join_click = -1e9
        clicks: dict[str, int] = {}
        while True:
            snap = await self._snapshot()
            screen = classify(snap)
            now = self._now()
            if screen is not self.screen:
                log.info("meet: %s -> %s", self.screen.value, screen.value)
                self.screen, progress_at = screen, now
            if screen in _TERMINAL:
                self._stage = "out"  # Meet already put the bot out: nothing for leave() to withdraw
                code, message = _TERMINAL[screen]
                await self._fail(code, message, screen.value)
            if screen in (Screen.LOBBY, Screen.HOST_WAIT):
                self._stage = "lobby"  # both keep "Leave call" on screen: leave() withdraws
                if not awaiting:
                    awaiting = True
                    on_state(CallState.AWAITING_ADMISSION)
            if screen is Screen.LOBBY:
                lobby_since = lobby_since if lobby_since is not None else now
                if now - lobby_since >= policy.lobby_timeout_s:
                    await self._give_up(
                        FailureCode.LOBBY_TIMEOUT,
                        f"nobody let the bot in within {policy.lobby_timeout_s:g} s",
                        screen.value,
                    )
                progress_at = now
            elif screen is Screen.HOST_WAIT:
                host_wait_since = host_wait_since if host_wait_since is not None else now
                if now - host_wait_since >= policy.host_absent_timeout_s:
                    await self._give_up(
                        FailureCode.HOST_ABSENT,
                        f"the host did not join within {policy.host_absent_timeout_s:g} s",
                        screen.value,
                    )
                progress_at = now
            elif screen is Screen.IN_CALL:
                self._stage, self._joined_at = "call", now
                log.info("meet: in the call (%d call signals)", snap.in_call_signals)
                on_state(CallState.IN_CALL)
                await self._settle_in_call()
                return
            elif screen in (Screen.PERMISSION, Screen.POPUP):
                key = screen.value
                clicks[key] = clicks.get(key, 0) + 1
                if clicks[key] > _MAX_CLICKS:
                    await self._fail(FailureCode.UI_CHANGED, f"the {key} dialog does not go away", key)
                if screen is Screen.PERMISSION:
                    allow = "permission_allow" if snap.buttons.get("permission_allow") else "permission_skip"
                    if allow == "permission_skip":
                        log.warning("meet: no way to allow the microphone; the agent will not be heard")
                    acted = await self._click_button(allow)
                else:
                    acted = await self._click_button("dismiss", in_dialog=True)
                if acted:
                    progress_at = now
            elif screen is Screen.PREJOIN:
                prejoin_since = prejoin_since if prejoin_since is not None else now
                # Meet's alternate audio setup has no <audio> elements and plays nothing: joining
                # would give a silent call. Wait a little for them, then reload (bounded).
                silent = snap.audio_elements == 0 and self.reloads < self.max_reloads
                if silent and now - prejoin_since >= self.audio_reload_s:
                    self.reloads += 1
                    log.info("meet: pre-join page has no <audio> elements; reloading (%d)", self.reloads)
                    await self._goto(self.meeting.join_url)
                    prejoin_since, progress_at = None, self._now()
                    continue
                acted = await self._prepare(display_name, snap, clicks)
                if acted:
                    progress_at = now
                elif not silent and snap.join_enabled and now - last_join_click >= 2.0:
                    last_join_click = now
                    if await self._click_button("join"):
                        progress_at = now
            if now - progress_at >= policy.ui_timeout_s:
                await self._fail(
                    FailureCode.UI_CHANGED,
                    f"stuck on the {screen.value!r} screen for {policy.ui_timeout_s:g} s "
                    f"(page title {snap.title!r}); Meet's page may have changed",
                    screen.value,
                )
            await asyncio.sleep(self.poll_s)

    async def _prepare(self, display_name: str, snap: Snapshot, clicks: dict[str, int]) -> bool:
        """Name typed, camera off, microphone on; True when it did something this tick."""
        if snap.visible.get("name_input") and snap.name_value != display_name:
            clicks["name"] = clicks.get("name", 0) + 1
            if clicks["name"] > _MAX_CLICKS:
                await self._fail(FailureCode.UI_CHANGED, "the name field does not keep what is typed", "name")
            await self._type_name(display_name)
            return True
        for key in ("cam_is_on", "mic_is_off"):  # turn the camera off, the microphone on
            if snap.visible.get(key):
                clicks[key] = clicks.get(key, 0) + 1
                if clicks[key] <= _MAX_CLICKS:
                    return await self._click_css(key)
                log.warning("meet: %s does not change when clicked", key)
        return False

    async def _settle_in_call(self) -> None:
        """Right after admission: consent modals ("being recorded" → Join now) and the microphone back on
        if Meet muted it. Bounded: a call without either is still a call."""
        deadline = self._now() + 3.0
        mic_clicks = 0
        while self._now() < deadline:
            snap = await self._snapshot()
            if snap.dialog and snap.buttons.get("consent"):
                await self._click_button("consent", in_dialog=True)
            elif snap.visible.get("mic_is_off") and mic_clicks < 2:
                mic_clicks += 1
                await self._click_css("mic_is_off")
            elif snap.present.get("mic_is_on") and not snap.dialog:
                return
            await asyncio.sleep(self.poll_s)
        log.warning("meet: microphone not confirmed on after admission")

    async def _give_up(self, code: FailureCode, message: str, step: str) -> None:
        """Our own bound while waiting: withdraw the request (so nobody lets the bot in later) and fail."""
        artifacts = await self.save_artifacts(code.value)
        await self.leave()
        raise JoinFailure(code, message, step=step, artifacts=artifacts)

    async def _fail(self, code: FailureCode, message: str, step: str) -> None:
        raise JoinFailure(code, message, step=step, artifacts=await self.save_artifacts(code.value))

    # ---- in the call ---------------------------------------------------------------------------------

    async def wait_for_end(self, policy: CallPolicy) -> EndReason:
        started = self._joined_at if self._joined_at is not None else self._now()
        alone_since: float | None = None
        pending: Screen | None = None  # an end screen must be seen twice in a row (debounce)
        while True:
            snap = await self._snapshot()
            screen = classify(snap)
            now = self._now()
            if screen in _ENDS:
                if pending is screen:
                    self._stage = "out"
                    log.info("meet: call over: %s", screen.value)
                    return _ENDS[screen]
                pending = screen
            else:
                pending = None
            if snap.dialog and snap.buttons.get("consent") and screen is Screen.IN_CALL:
                await self._click_button("consent", in_dialog=True)  # notices can come at any time
            # Unknown count (selectors gone) is not "alone": leaving a live meeting is the worse mistake.
            if screen is Screen.IN_CALL and snap.participants is not None and snap.participants <= 1:
                alone_since = alone_since if alone_since is not None else now
                if now - alone_since >= policy.alone_after_s:
                    return EndReason.ALONE
            elif snap.participants is not None and snap.participants > 1:
                alone_since = None
            if now - started >= policy.max_duration_s:
                return EndReason.MAX_DURATION
            # Twice a second is enough to leave promptly; each look costs the bot CPU for the whole call.
            await asyncio.sleep(max(self.poll_s, 0.5))

    async def leave(self) -> None:
        """Click "Leave call" (in the call or the lobby); fall back to closing the page. Idempotent."""
        if self._left or self.page.is_closed():
            return
        self._left = True
        try:
            if self._stage != "out":
                await self._leave_by_button()
        except PlaywrightError as e:
            log.info("meet: leave by button failed (%s); closing the client instead", e)
        finally:
            self._stage = "out"
            if not self.page.is_closed():
                try:
                    await self.page.goto("about:blank", timeout=5000)
                except PlaywrightError as e:
                    log.info("meet: could not close the client page: %s", e)

    async def _leave_by_button(self) -> None:
        size = self.page.viewport_size or {"width": 1280, "height": 720}
        # The control bar auto-hides after a few seconds without pointer movement; moving brings it back.
        await self.page.mouse.move(size["width"] / 2, size["height"] / 2)
        await self.page.mouse.move(size["width"] / 2, size["height"] - 40)
        screen = classify(await self._snapshot())
        if screen in _ENDS or screen in _TERMINAL:
            return
        if not await self._click_css("leave_button", wait=True):
            return
        deadline = self._now() + 3.0
        while self._now() < deadline:
            if classify(await self._snapshot()) in _ENDS or self.page.is_closed():
                return
            await asyncio.sleep(0.1)

    # ---- artifacts -----------------------------------------------------------------------------------

    async def save_artifacts(self, label: str) -> list[Path]:
        """A screenshot and the page HTML into `artifacts_dir` (nothing when it is None or the page is
        gone): what the page showed when the bot gave up."""
        if self.artifacts_dir is None or self.page.is_closed():
            return []
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        stem = (
            self.artifacts_dir
            / f"meet-{label}-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 1000:03d}"
        )
        saved: list[Path] = []
        try:
            png = stem.with_suffix(".png")
            await self.page.screenshot(path=str(png), full_page=True, timeout=5000)
            saved.append(png)
            html = stem.with_suffix(".html")
            html.write_text(await self.page.content(), encoding="utf-8")
            saved.append(html)
        except PlaywrightError as e:
            log.warning("meet: could not save artifacts: %s", e)
        return saved

    # ---- page access ---------------------------------------------------------------------------------

    async def _goto(self, url: str) -> None:
        try:
            await self.page.goto(url, wait_until="domcontentloaded", timeout=30000)
        except PlaywrightError as e:
            await self._fail(FailureCode.UI_CHANGED, f"could not open Meet: {e}", "open")

    async def _snapshot(self) -> Snapshot:
        try:
            raw = await self.page.evaluate(SNAPSHOT_JS, [self._selectors, BUTTONS, TEXTS])
        except PlaywrightError:
            if self.page.is_closed():
                raise
            raw = {}  # mid-navigation: the next tick reads the new page
        return Snapshot.parse(raw)

    async def _click(self, target: Locator, wait: bool) -> bool:
        try:
            if not wait and not await target.is_visible():
                return False
            await target.click(timeout=_CLICK_TIMEOUT_MS)
            return True
        except PlaywrightError as e:
            log.info("meet: click failed: %s", e)
            return False

    async def _click_css(self, key: str, wait: bool = False) -> bool:
        return await self._click(
            self.page.locator(", ".join(SELECTORS[key])).filter(visible=True).first, wait
        )

    async def _click_button(self, key: str, in_dialog: bool = False) -> bool:
        scope = self.page.locator("[role=dialog], [role=alertdialog]") if in_dialog else self.page
        target = (
            scope.locator("button, a, [role=button]")
            .filter(has_text=exact_text(BUTTONS[key]), visible=True)
            .first
        )
        return await self._click(target, wait=False)

    async def _type_name(self, text: str) -> None:
        """Types with real key events, as a person would (Meet listens to input events)."""
        field = self.page.locator(", ".join(SELECTORS["name_input"])).filter(visible=True).first
        try:
            await field.click(timeout=_CLICK_TIMEOUT_MS)
            await field.press("ControlOrMeta+a")
            await field.press("Backspace")
            await field.press_sequentially(text, delay=10)
        except PlaywrightError as e:
            log.info("meet: typing the name failed: %s", e)
