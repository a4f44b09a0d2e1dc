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

from bot.platforms.base import Browser, CallState, EndReason, FailureCode, JoinPolicy, StateCallback
from bot.platforms.meet_ui import (
    BUTTONS,
    SELECTORS,
    SNAPSHOT_JS,
    SNAPSHOT_SELECTORS,
    TEXTS,
    Screen,
    Snapshot,
    classify,
)
from bot.platforms.page import CallReading, PagePlatform
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
_MAX_CLICKS = 6  # per toggle/dialog: more means the page does not react to the click


class MeetPlatform(PagePlatform):
    """Google Meet guest join. `audio_reload_s`: how long a pre-join page without any `<audio>` element
    (Meet's alternate audio setup, which delivers no remote audio) is tolerated before a reload, at most
    `max_reloads` times."""

    name = "meet"
    label = "Meet"

    def __init__(
        self,
        browser: Browser,
        meeting: MeetingUrl,
        *,
        poll_s: float = 0.25,
        audio_reload_s: float = 3.0,
        max_reloads: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(browser, meeting, poll_s=poll_s, clock=clock)
        self.audio_reload_s = audio_reload_s
        self.max_reloads = max_reloads
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
                self._inside = False  # Meet already put the bot out: nothing for leave() to withdraw
                code, message = _TERMINAL[screen]
                await self._fail(code, message, screen.value)
            if screen in (Screen.LOBBY, Screen.HOST_WAIT):
                self._inside = True  # both keep "Leave call" on screen: leave() withdraws
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
                self._inside, self._joined_at = True, now
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
                await self._fail_stuck(screen.value, snap.title, policy)
            await asyncio.sleep(self.poll_s)

    async def _prepare(self, display_name: str, snap: Snapshot, clicks: dict[str, int]) -> bool:
        """Name typed, camera off, microphone on; True when it did something this tick."""
        if snap.visible.get("name_input") and snap.name_value != display_name:
            clicks["name"] = clicks.get("name", 0) + 1
            if clicks["name"] > _MAX_CLICKS:
                await self._fail(FailureCode.UI_CHANGED, "the name field does not keep what is typed", "name")
            await self._type(self._css(self.page, SELECTORS["name_input"]), display_name, delay_ms=10)
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

    # ---- in the call ---------------------------------------------------------------------------------

    async def _read_call(self) -> CallReading:
        snap = await self._snapshot()
        screen = classify(snap)
        if snap.dialog and snap.buttons.get("consent") and screen is Screen.IN_CALL:
            await self._click_button("consent", in_dialog=True)  # notices can come at any time
        # The count means something only on the call's own screen.
        return CallReading(_ENDS.get(screen), snap.participants if screen is Screen.IN_CALL else None)

    async def _leave_in_page(self) -> None:
        """Click "Leave call" (the call's and the lobby's) and wait a little for Meet to say so."""
        await self._wake_controls()
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

    # ---- page access ---------------------------------------------------------------------------------

    async def _snapshot(self) -> Snapshot:
        raw = await self._evaluate(self.page.main_frame, SNAPSHOT_JS, [SNAPSHOT_SELECTORS, BUTTONS, TEXTS])
        return Snapshot.parse(raw)

    async def _click_css(self, key: str, wait: bool = False) -> bool:
        return await self._click(self._css(self.page, SELECTORS[key]), wait)

    async def _click_button(self, key: str, in_dialog: bool = False) -> bool:
        scope = self.page.locator("[role=dialog], [role=alertdialog]") if in_dialog else self.page
        return await self._click(self._button(scope, BUTTONS[key]))
