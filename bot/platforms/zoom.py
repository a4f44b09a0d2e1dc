"""Zoom's web client driven in one browser page: join as a guest, report states, watch for the end, leave.

The adapter is a loop over page snapshots rather than a fixed script: Zoom shows its cookie banner,
permission prompts, launch page and dialogs in varying order, so each tick reads the page (`zoom_ui`) and
does the one thing the current screen needs. The client may run top level or inside `iframe#webclient`
(`fromPWA=1`); both frames are read and each action goes to the frame that showed its element.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Frame

from bot.platforms.base import Browser, CallState, EndReason, FailureCode, JoinPolicy, StateCallback
from bot.platforms.page import CallReading, PagePlatform
from bot.platforms.urls import MeetingUrl
from bot.platforms.zoom_ui import (
    BUTTONS,
    SELECTORS,
    SNAPSHOT_JS,
    SNAPSHOT_SELECTORS,
    TEXTS,
    Screen,
    Snapshot,
    classify,
)

log = logging.getLogger(__name__)

# Screens that end the join attempt at once: retrying does not help (an anti-bot wall only gets firmer).
_TERMINAL: dict[Screen, tuple[FailureCode, str]] = {
    Screen.BOT_WALL: (FailureCode.BOT_DETECTED, "Zoom showed its anti-bot wall"),
    Screen.CAPTCHA: (FailureCode.CAPTCHA, "Zoom asked for a captcha"),
    Screen.SIGN_IN: (FailureCode.SIGN_IN_REQUIRED, "this Zoom meeting only admits signed-in users"),
    Screen.PASSCODE_WRONG: (FailureCode.PASSCODE_WRONG, "Zoom says the passcode is wrong"),
    Screen.NOT_FOUND: (FailureCode.NOT_FOUND, "Zoom says this meeting does not exist"),
    Screen.REMOVED: (FailureCode.DENIED, "the bot was removed before it was let in"),
    Screen.HOST_ENDED: (FailureCode.NOT_FOUND, "the meeting ended before the bot was let in"),
    Screen.CALL_ENDED: (FailureCode.NOT_FOUND, "the meeting ended before the bot was let in"),
}
_ENDS: dict[Screen, EndReason] = {
    Screen.REMOVED: EndReason.REMOVED,
    Screen.HOST_ENDED: EndReason.HOST_ENDED,
    Screen.CALL_ENDED: EndReason.CALL_ENDED,
}
_MAX_PERMISSION_CLICKS = 6  # Zoom asks twice (camera and microphone, then microphone only)
_MAX_TYPING = 6  # more means the name or passcode field does not keep what is typed


class ZoomPlatform(PagePlatform):
    """Zoom web client. `host_retry_s`: how often to reload while the host has not started."""

    name = "zoom"
    label = "Zoom"

    def __init__(
        self,
        browser: Browser,
        meeting: MeetingUrl,
        *,
        host_retry_s: float = 15.0,
        poll_s: float = 0.25,
        audio_wait_s: float = 8.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(browser, meeting, poll_s=poll_s, clock=clock)
        self.host_retry_s = host_retry_s
        self.audio_wait_s = audio_wait_s
        self._frames: list[Frame] = []
        self.screen = Screen.UNKNOWN  # the last screen seen, for logs and tests

    # ---- joining -------------------------------------------------------------------------------------

    async def join(self, display_name: str, policy: JoinPolicy, on_state: StateCallback) -> None:
        on_state(CallState.JOINING)
        await self._goto(self.meeting.join_url)
        now = self._now()
        progress_at = now  # last time the page changed or the bot acted: UI_CHANGED after ui_timeout_s
        lobby_since: float | None = None
        host_absent_since: float | None = None
        reload_at: float | None = None
        last_join_click = -1e9
        typing_attempts = 0
        permission_clicks = 0
        while True:
            snap = await self._snapshot()
            screen = classify(snap)
            now = self._now()
            if screen is not self.screen:
                log.info("zoom: %s -> %s", self.screen.value, screen.value)
                self.screen, progress_at = screen, now
            if screen in _TERMINAL:
                code, message = _TERMINAL[screen]
                await self._fail(code, message, screen.value)
            if screen in (Screen.HOST_ABSENT, Screen.HOST_WAIT):
                host_absent_since = host_absent_since if host_absent_since is not None else now
                if now - host_absent_since >= policy.host_absent_timeout_s:
                    await self._give_up(
                        FailureCode.HOST_ABSENT,
                        f"the host did not start the meeting within {policy.host_absent_timeout_s:g} s",
                        screen.value,
                    )
                progress_at = now
                if screen is Screen.HOST_WAIT:
                    if lobby_since is None:  # Zoom lets the bot in once the host starts
                        lobby_since = now
                        on_state(CallState.AWAITING_ADMISSION)
                elif reload_at is None:
                    reload_at = now + self.host_retry_s
                elif now >= reload_at:  # the error page never updates itself: ask again
                    reload_at = None
                    await self._goto(self.meeting.join_url)
                    continue
            elif screen is Screen.WAITING_ROOM:
                if lobby_since is None:
                    lobby_since = now
                    on_state(CallState.AWAITING_ADMISSION)
                if now - lobby_since >= policy.lobby_timeout_s:
                    await self._give_up(
                        FailureCode.LOBBY_TIMEOUT,
                        f"nobody let the bot in within {policy.lobby_timeout_s:g} s",
                        screen.value,
                    )
                progress_at = now
            elif screen is Screen.IN_CALL:
                self._inside, self._joined_at = True, now
                on_state(CallState.IN_CALL)
                await self._join_computer_audio()
                return
            elif screen is Screen.COOKIES:
                if await self._click_css("cookie_accept", snap):
                    progress_at = now
            elif screen is Screen.PERMISSION:
                permission_clicks += 1
                if permission_clicks > _MAX_PERMISSION_CLICKS:
                    await self._fail(
                        FailureCode.UI_CHANGED, "Zoom keeps asking for permissions", "permission"
                    )
                key = "permission_allow" if snap.buttons.get("permission_allow") else "permission_skip"
                if await self._click_button(key, snap):
                    progress_at = now
            elif screen is Screen.LAUNCH:
                if await self._click_button("launch_browser", snap):
                    progress_at = now
            elif screen is Screen.PREVIEW:
                acted = await self._fill_preview(display_name, snap)
                if acted:
                    typing_attempts += 1
                    progress_at = now
                    if typing_attempts > _MAX_TYPING:
                        await self._fail(
                            FailureCode.UI_CHANGED,
                            "the name or passcode field does not keep what is typed",
                            screen.value,
                        )
                elif snap.join_enabled and now - last_join_click >= 2.0:
                    last_join_click = now
                    await self._click_css("join_button", snap)
            if now - progress_at >= policy.ui_timeout_s:
                await self._fail_stuck(screen.value, snap.title, policy)
            await asyncio.sleep(self.poll_s)

    async def _fill_preview(self, display_name: str, snap: Snapshot) -> bool:
        """Types what is missing (passcode, name) or ticks the terms; True when it did something."""
        if snap.visible.get("passcode_input") and not snap.passcode_value:
            if not self.meeting.passcode:
                await self._fail(
                    FailureCode.PASSCODE_WRONG,
                    "Zoom asks for a passcode and the link has none: use the invite link with ?pwd=",
                    "passcode",
                )
            await self._type_into("passcode_input", self.meeting.passcode, snap)
            return True
        if snap.visible.get("name_input") and snap.name_value != display_name:
            await self._type_into("name_input", display_name, snap)
            return True
        if snap.visible.get("terms_agree") and not snap.terms_agreed:
            # Ticked once: clicking a ticked checkbox again would untick it.
            return await self._click_css("terms_agree", snap)
        return False

    async def _join_computer_audio(self) -> None:
        """Joins computer audio (dialog or audio button) and makes sure the mic is on: the agent speaks
        through it. Bounded: a call without the dialog is still a call."""
        deadline = self._now() + self.audio_wait_s
        unmuted = False
        while self._now() < deadline:
            snap = await self._snapshot()
            label = (snap.audio_label or "").lower()
            if snap.buttons.get("computer_audio"):
                await self._click_button("computer_audio", snap)
            elif label == "join audio":
                await self._wake_controls()
                await self._click_css("audio_button", snap)
            elif label == "unmute" and not unmuted:
                await self._wake_controls()
                unmuted = await self._click_css("audio_button", snap)
            elif label == "mute":
                return
            await asyncio.sleep(self.poll_s)
        log.warning(
            "zoom: computer audio not confirmed within %.0f s (audio button %r)", self.audio_wait_s, label
        )

    # ---- in the call ---------------------------------------------------------------------------------

    async def _read_call(self) -> CallReading:
        snap = await self._snapshot()
        if snap.buttons.get("computer_audio"):  # the dialog can come late
            await self._click_button("computer_audio", snap)
        return CallReading(_ENDS.get(classify(snap)), snap.participants)

    async def _leave_in_page(self) -> None:
        """Leave, then confirm "Leave Meeting"."""
        await self._wake_controls()
        snap = await self._snapshot()
        if classify(snap) in _ENDS or not await self._click_css("leave_button", snap, wait=True):
            return
        deadline = self._now() + 3.0
        while self._now() < deadline:
            snap = await self._snapshot()
            if snap.visible.get("leave_confirm"):
                await self._click_css("leave_confirm", snap)
            elif snap.buttons.get("leave_confirm"):
                await self._click_button("leave_confirm", snap)
            elif snap.in_call_signals < 2:
                return
            await asyncio.sleep(0.1)

    # ---- page access ---------------------------------------------------------------------------------

    async def _snapshot(self) -> Snapshot:
        """One reading of the main frame and, when present, the client's `iframe#webclient`."""
        frames: list[Frame] = [self.page.main_frame]
        snap = Snapshot()
        index = 0
        while index < len(frames):
            raw = await self._evaluate(frames[index], SNAPSHOT_JS, [SNAPSHOT_SELECTORS, BUTTONS, TEXTS])
            snap.merge(raw, index)
            if index == 0 and raw.get("webclientFrame"):
                client = await self._client_frame()
                if client is not None:
                    frames.append(client)
            index += 1
        self._frames = frames
        return snap

    async def _client_frame(self) -> Frame | None:
        try:
            handle = await self.page.query_selector("iframe#webclient")
            return await handle.content_frame() if handle is not None else None
        except PlaywrightError:
            return None

    def _frame(self, key: str, snap: Snapshot) -> Frame:
        index = snap.frame_of.get(key, 0)
        return self._frames[index] if index < len(self._frames) else self.page.main_frame

    async def _click_css(self, key: str, snap: Snapshot, wait: bool = False) -> bool:
        return await self._click(self._css(self._frame(key, snap), SELECTORS[key]), wait)

    async def _click_button(self, key: str, snap: Snapshot) -> bool:
        return await self._click(self._button(self._frame(f"button:{key}", snap), BUTTONS[key]))

    async def _type_into(self, key: str, text: str, snap: Snapshot) -> None:
        await self._type(self._css(self._frame(key, snap), SELECTORS[key]), text)
