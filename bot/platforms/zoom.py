"""Zoom's web client driven in one browser page: join as a guest, report states, watch for the end, leave.

The adapter is a loop over page snapshots rather than a fixed script: Zoom shows its cookie banner,
permission prompts, launch page and dialogs in varying order, so each tick reads the page (`zoom_ui`) and
does the one thing the current screen needs. The client may run top level or inside `iframe#webclient`
(`fromPWA=1`); both frames are read and each action goes to the frame that showed its element.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Frame

from bot.outcome import CallState, EndReason, FailureCode
from bot.platforms.base import Browser, JoinPolicy, StateCallback
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
_MAX_TOGGLE_CLICKS = 3  # per preview toggle, terms control or mute click: more means it does not react
_WALL_RELOADS = 2  # reloads that often clear the anti-bot wall in a closed shadow root, before `captcha`

# Finds the blank layer over the middle of the page (see zoom_ui's `cover`), in the page or the client's
# frame, for a look inside its shadow root through the DevTools protocol.
_FIND_COVER_JS = """
(() => {
  const docs = [document];
  const frame = document.querySelector("iframe#webclient");
  if (frame && frame.contentDocument) docs.push(frame.contentDocument);
  for (const doc of docs) {
    const win = doc.defaultView;
    const el = doc.elementFromPoint(win.innerWidth / 2, win.innerHeight / 2);
    if (el && el !== doc.body && el !== doc.documentElement && !el.shadowRoot && el.childElementCount === 0
        && !(el.textContent || "").trim()) return el;
  }
  return null;
})()
"""


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
        self.wall_reloads = 0
        self._clicks: dict[str, int] = {}
        self._dismissing = False

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
            if snap.cover is not None:
                snap.shadow_wall = await self._closed_shadow_text()
            screen = classify(snap)
            now = self._now()
            if screen is not self.screen:
                log.info("zoom: %s -> %s", self.screen.value, screen.value)
                self.screen, progress_at = screen, now
            if await self._network_error(snap, policy):
                progress_at = now
                await asyncio.sleep(self.poll_s)
                continue
            if screen is Screen.SHADOW_WALL:
                where = f"a modal in a closed shadow root, {snap.cover}, saying {snap.shadow_wall!r}"
                if self.wall_reloads >= _WALL_RELOADS:
                    await self._fail(
                        FailureCode.CAPTCHA,
                        f"Zoom's anti-bot wall ({where}) stayed after {_WALL_RELOADS} reloads",
                        screen.value,
                    )
                self.wall_reloads += 1
                log.warning(
                    "zoom: anti-bot wall (%s); reloading (%d of %d), which often clears it",
                    where,
                    self.wall_reloads,
                    _WALL_RELOADS,
                )
                await self._goto(self.meeting.join_url)
                progress_at = self._now()
                continue
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
            elif screen is Screen.TERMS:
                if await self._accept_terms(snap):
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
            await self._check_stuck(screen.value, screen is Screen.UNKNOWN, snap, progress_at, policy)
            await asyncio.sleep(self.poll_s)

    async def _accept_terms(self, snap: Snapshot) -> bool:
        """The terms/consent dialog over a mask: tick its checkbox, then its agree button."""
        if snap.terms_checked is False and self._count_click("terms_checkbox"):
            return await self._click_css("terms_checkbox", snap)
        if snap.visible.get("disclaimer_agree") and self._count_click("disclaimer_agree"):
            return await self._click_css("disclaimer_agree", snap)
        if snap.buttons.get("terms_accept") and self._count_click("terms_accept"):
            return await self._click_button("terms_accept", snap)
        return False

    def _count_click(self, key: str) -> bool:
        """True while `key` has been clicked fewer than `_MAX_TOGGLE_CLICKS` times in this join."""
        self._clicks[key] = self._clicks.get(key, 0) + 1
        if self._clicks[key] > _MAX_TOGGLE_CLICKS:
            if self._clicks[key] == _MAX_TOGGLE_CLICKS + 1:
                log.warning("zoom: %s does not change when clicked", key)
            return False
        return True

    async def _fill_preview(self, display_name: str, snap: Snapshot) -> bool:
        """Types what is missing (passcode, name), ticks the terms, turns the microphone on and the camera
        off; True when it did something."""
        if snap.visible.get("passcode_input") and not snap.passcode_value:
            if not self.meeting.passcode:
                await self._fail(
                    FailureCode.PASSCODE_WRONG,
                    "Zoom asks for a passcode and the link has none: use the invite link with ?pwd=",
                    "passcode",
                )
            return await self._type_into("passcode_input", self.meeting.passcode, snap)
        if snap.visible.get("name_input") and snap.name_value != display_name:
            return await self._type_into("name_input", display_name, snap)
        if snap.visible.get("terms_agree") and not snap.terms_agreed:
            # Ticked once: clicking a ticked checkbox again would untick it.
            return await self._click_css("terms_agree", snap)
        # The agent speaks through the microphone; the bot has no picture to show.
        if snap.preview_audio_on is False and self._count_click("preview_audio"):
            return await self._click_css("preview_audio", snap)
        if snap.preview_video_on is True and self._count_click("preview_video"):
            return await self._click_css("preview_video", snap)
        return False

    async def _join_computer_audio(self) -> None:
        """Joins computer audio (dialog or audio button) and makes sure the mic is on: the agent speaks
        through it. The state comes from several cues (zoom_ui: label words, the words under the button,
        the icon), and every click is checked by reading the state again. Bounded: a call whose audio
        cannot be confirmed is still a call."""
        deadline = self._now() + self.audio_wait_s
        clicks = 0
        clicked_at: float | None = None
        snap = Snapshot()
        while self._now() < deadline:
            await self._wake_controls_quietly()
            snap = await self._snapshot()
            state, now = snap.audio_state, self._now()
            if snap.buttons.get("computer_audio"):
                await self._click_button("computer_audio", snap)
            elif state == "unmuted":
                log.info("zoom: microphone on (%s)", snap.audio_cues)
                return
            elif state in ("join", "muted") and (clicked_at is None or now - clicked_at >= 1.0):
                if clicks >= _MAX_TOGGLE_CLICKS:
                    break
                if clicked_at is not None:
                    log.info(
                        "zoom: audio still reads %s after a click (%s); clicking again",
                        state,
                        snap.audio_cues,
                    )
                clicks += 1
                clicked_at = now
                await self._click_css("audio_button", snap)
            await asyncio.sleep(self.poll_s)
        log.warning(
            "zoom: microphone not confirmed on (audio button %r, cues %s); the agent may not be heard",
            snap.audio_label,
            snap.audio_cues,
        )

    # ---- in the call ---------------------------------------------------------------------------------

    async def _read_call(self) -> CallReading:
        snap = await self._snapshot()
        if snap.buttons.get("computer_audio"):  # the dialog can come late
            await self._click_button("computer_audio", snap)
        elif snap.on_top.get("dismiss"):
            await self._click_button("dismiss", snap)
        end = _ENDS.get(classify(snap))
        if end is None and self._left_the_client():
            log.info("zoom: the page left the meeting (now %s)", self._client_url())
            end = EndReason.CALL_ENDED  # the meeting ended by navigating away (home, sign-in, post-meeting)
        return CallReading(end, snap.participants)

    def _client_url(self) -> str:
        """Where the client is: its frame's URL (the PWA's iframe#webclient) or the page's."""
        frame = self._frames[-1] if self._frames else self.page.main_frame
        return frame.url if not frame.is_detached() else self.page.url

    def _left_the_client(self) -> bool:
        """The client is no longer on a Zoom web client page (/wc/…): the meeting is over for the bot."""
        url = self._client_url()
        if not url:
            return False  # between two navigations: not known yet
        where = urlsplit(url)
        host = where.hostname or ""
        on_zoom = host == "zoom.us" or host.endswith(".zoom.us")
        return not (on_zoom and where.path.startswith("/wc/"))

    async def _dismiss_popups(self) -> bool:
        """Clicks away what Zoom puts over its pages: the cookie banner, a terms dialog, tips."""
        if self._dismissing:
            return False
        self._dismissing = True
        try:
            snap = await self._snapshot()
            if snap.visible.get("cookie_accept"):
                return await self._click_css("cookie_accept", snap)
            if snap.visible.get("terms_dialog"):
                return await self._accept_terms(snap)
            if snap.on_top.get("dismiss"):
                return await self._click_button("dismiss", snap)
            return False
        finally:
            self._dismissing = False

    async def _closed_shadow_text(self) -> str | None:
        """What the blank layer over the page says inside its closed shadow root (selectors and innerText
        cannot reach it; the DevTools protocol can), or None when it hosts none."""
        try:
            cdp = await self.page.context.new_cdp_session(self.page)
        except PlaywrightError:
            return None
        try:
            found = await cdp.send("Runtime.evaluate", {"expression": _FIND_COVER_JS})
            object_id = found.get("result", {}).get("objectId")
            if not object_id:
                return None
            described = await cdp.send(
                "DOM.describeNode", {"objectId": object_id, "depth": -1, "pierce": True}
            )
            roots = described.get("node", {}).get("shadowRoots") or []
            if not roots:
                return None
            words: list[str] = []
            for root in roots:
                _texts(root, words)
            return " ".join(words)[:200] or "(no text)"
        except PlaywrightError:
            return None
        finally:
            with contextlib.suppress(PlaywrightError):
                await cdp.detach()

    async def _leave_in_page(self) -> None:
        """Leave, then confirm "Leave Meeting", in whichever frame the client runs (the PWA's
        iframe#webclient too). Never Enter: on the leave dialog it cancels. Without a confirm button the
        bot knows, `leave()` closes the page."""
        snap = await self._snapshot()
        if not snap.visible.get("leave_button"):  # the footer has hidden: bring it back
            await self._wake_controls()
            snap = await self._snapshot()
        if classify(snap) in _ENDS or not await self._click_css("leave_button", snap, wait=True):
            return
        deadline = self._now() + 1.5
        while self._now() < deadline:
            snap = await self._snapshot()
            if snap.visible.get("leave_confirm"):
                await self._click_css("leave_confirm", snap)
            elif snap.buttons.get("leave_confirm"):
                await self._click_button("leave_confirm", snap)
            elif snap.in_call_signals < 2:
                return
            await asyncio.sleep(0.1)
        log.warning('zoom: no "Leave Meeting" button the bot knows in the leave dialog; closing the page')

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

    async def _type_into(self, key: str, text: str, snap: Snapshot) -> bool:
        return await self._type(self._css(self._frame(key, snap), SELECTORS[key]), text)


def _texts(node: dict[str, Any], into: list[str]) -> None:
    """The text of a DevTools DOM node and its descendants, without style and script contents."""
    if node.get("nodeName") in ("STYLE", "SCRIPT"):
        return
    if node.get("nodeType") == 3 and str(node.get("nodeValue", "")).strip():
        into.append(" ".join(str(node["nodeValue"]).split()))
    for child in node.get("children") or []:
        _texts(child, into)
