"""Zoom's web client driven in one browser page: join as a guest, report states, watch for the end, leave.

Zoom shows its cookie banner, permission prompts, launch page and dialogs in varying order: the join is the
shared loop over page snapshots (`join_loop`), and this module gives it Zoom's table and what the bot does
on each of those screens. The client may run top level or inside `iframe#webclient` (`fromPWA=1`); both
frames are read (`zoom_ui.UI.client_frame`) and each action goes to the frame that showed its element.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Unpack
from urllib.parse import urlsplit

from playwright.async_api import Error as PlaywrightError

from bot.meeting_urls import MeetingUrl
from bot.outcome import EndReason, FailureCode
from bot.platforms.base import Browser
from bot.platforms.join_loop import Handler, JoiningPlatform, JoinTable, Step, Waiting, ended_before_admission
from bot.platforms.page import Timing, call_ends
from bot.platforms.zoom_ui import UI, Screen, Snapshot

log = logging.getLogger(__name__)

_TABLE = JoinTable(
    in_call=Screen.IN_CALL,
    unknown=Screen.UNKNOWN,
    # Screens that end the join attempt at once: retrying does not help (an anti-bot wall only gets firmer).
    terminal={
        Screen.BOT_WALL: (FailureCode.BOT_DETECTED, "Zoom showed its anti-bot wall"),
        Screen.CAPTCHA: (FailureCode.CAPTCHA, "Zoom asked for a captcha"),
        Screen.SIGN_IN: (FailureCode.SIGN_IN_REQUIRED, "this Zoom meeting only admits signed-in users"),
        Screen.PASSCODE_WRONG: (FailureCode.PASSCODE_WRONG, "Zoom says the passcode is wrong"),
        Screen.NOT_FOUND: (FailureCode.NOT_FOUND, "Zoom says this meeting does not exist"),
        **ended_before_admission(Screen.REMOVED, Screen.HOST_ENDED, Screen.CALL_ENDED),
    },
    # Zoom has no control that withdraws a waiting bot: leave() closes the page.
    waiting={
        # The error page of a meeting not started yet: not a request to join (reloaded: `_host_absent`).
        Screen.HOST_ABSENT: Waiting("host", admission=False),
        Screen.HOST_WAIT: Waiting("host"),  # Zoom lets the bot in once the host starts
        Screen.WAITING_ROOM: Waiting("lobby"),
    },
    host_absent="the host did not start the meeting",
)
_ENDS: dict[Screen, EndReason] = call_ends(Screen.REMOVED, Screen.HOST_ENDED, Screen.CALL_ENDED)
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


class ZoomPlatform(JoiningPlatform[Screen, Snapshot]):
    """Zoom web client. `host_retry_s`: how often to reload while the host has not started."""

    name = "zoom"
    label = "Zoom"
    ui = UI
    ends = _ENDS
    table = _TABLE

    def __init__(
        self,
        browser: Browser,
        meeting: MeetingUrl,
        *,
        host_retry_s: float = 15.0,
        audio_wait_s: float = 8.0,
        **timing: Unpack[Timing],
    ) -> None:
        super().__init__(browser, meeting, **timing)
        self.host_retry_s = host_retry_s
        self.audio_wait_s = audio_wait_s
        self.wall_reloads = 0
        self._host_reload_at: float | None = None

    # ---- joining -------------------------------------------------------------------------------------

    def _handlers(self) -> Mapping[Screen, Handler[Snapshot]]:
        return {
            Screen.SHADOW_WALL: self._shadow_wall,
            Screen.HOST_ABSENT: self._host_absent,
            Screen.COOKIES: self._cookies,
            Screen.PERMISSION: self._permission,
            Screen.TERMS: self._terms,
            Screen.LAUNCH: self._launch,
            Screen.PREVIEW: self._preview,
        }

    async def _read_join(self) -> Snapshot:
        snap = await self._snapshot()
        if snap.cover is not None:
            snap.shadow_wall = await self._closed_shadow_text()
        return snap

    async def _shadow_wall(self, snap: Snapshot) -> Step:
        where = f"a modal in a closed shadow root, {snap.cover}, saying {snap.shadow_wall!r}"
        if self.wall_reloads >= _WALL_RELOADS:
            await self._fail(
                FailureCode.CAPTCHA,
                f"Zoom's anti-bot wall ({where}) stayed after {_WALL_RELOADS} reloads",
                Screen.SHADOW_WALL.value,
            )
        self.wall_reloads += 1
        log.warning(
            "zoom: anti-bot wall (%s); reloading (%d of %d), which often clears it",
            where,
            self.wall_reloads,
            _WALL_RELOADS,
        )
        await self._goto(self.meeting.join_url)
        return Step.RELOADED

    async def _host_absent(self, snap: Snapshot) -> Step:
        """The error page never updates itself: ask again every `host_retry_s`."""
        now = self._now()
        if self._host_reload_at is None:
            self._host_reload_at = now + self.host_retry_s
        elif now >= self._host_reload_at:
            self._host_reload_at = None
            await self._goto(self.meeting.join_url)
            return Step.RELOADED
        return Step.NOTHING

    async def _cookies(self, snap: Snapshot) -> Step:
        return Step.ACTED if await self._click_css("cookie_accept", snap) else Step.NOTHING

    async def _permission(self, snap: Snapshot) -> Step:
        return await self._answer_permission(
            snap, _MAX_PERMISSION_CLICKS, "Zoom keeps asking for permissions"
        )

    async def _terms(self, snap: Snapshot) -> Step:
        return Step.ACTED if await self._accept_terms(snap) else Step.NOTHING

    async def _launch(self, snap: Snapshot) -> Step:
        return Step.ACTED if await self._click_button("launch_browser", snap) else Step.NOTHING

    async def _preview(self, snap: Snapshot) -> Step:
        if await self._fill_preview(snap):
            message = "the name or passcode field does not keep what is typed"
            await self._at_most("typing", _MAX_TYPING, message, Screen.PREVIEW.value)
            return Step.ACTED
        # A click on Join is no progress: a Join that does nothing ends in UI_CHANGED after ui_timeout_s.
        await self._press_join(snap, lambda: self._click_css("join_button", snap))
        return Step.NOTHING

    async def _accept_terms(self, snap: Snapshot) -> bool:
        """The terms/consent dialog over a mask: tick its checkbox, then its agree button."""
        if snap.terms_checked is False and self._may_try("terms_checkbox", _MAX_TOGGLE_CLICKS):
            return await self._click_css("terms_checkbox", snap)
        if snap.visible.get("disclaimer_agree") and self._may_try("disclaimer_agree", _MAX_TOGGLE_CLICKS):
            return await self._click_css("disclaimer_agree", snap)
        if snap.buttons.get("terms_accept") and self._may_try("terms_accept", _MAX_TOGGLE_CLICKS):
            return await self._click_button("terms_accept", snap)
        return False

    async def _fill_preview(self, snap: Snapshot) -> bool:
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
        if snap.visible.get("name_input") and snap.name_value != self.display_name:
            return await self._type_into("name_input", self.display_name, snap)
        if snap.visible.get("terms_agree") and not snap.terms_agreed:
            # Ticked once: clicking a ticked checkbox again would untick it.
            return await self._click_css("terms_agree", snap)
        # The agent speaks through the microphone; the bot has no picture to show.
        if snap.preview_audio_on is False and self._may_try("preview_audio", _MAX_TOGGLE_CLICKS):
            return await self._click_css("preview_audio", snap)
        if snap.preview_video_on is True and self._may_try("preview_video", _MAX_TOGGLE_CLICKS):
            return await self._click_css("preview_video", snap)
        return False

    async def _settle_in_call(self) -> None:
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

    async def _tidy_call(self, snap: Snapshot, screen: Screen) -> None:
        if snap.buttons.get("computer_audio"):  # the dialog can come late
            await self._click_button("computer_audio", snap)
        elif snap.on_top.get("dismiss"):
            await self._click_button("dismiss", snap)

    def _count(self, snap: Snapshot, screen: Screen) -> int | None:
        return snap.participants

    def _in_client(self, url: str) -> bool:
        """A Zoom web client page (/wc/…): anything else (home, sign-in, post-meeting) ends the call."""
        where = urlsplit(url)
        host = where.hostname or ""
        on_zoom = host == "zoom.us" or host.endswith(".zoom.us")
        return on_zoom and where.path.startswith("/wc/")

    async def _dismiss_popup(self, snap: Snapshot) -> bool:
        """Clicks away what Zoom puts over its pages: the cookie banner, a terms dialog, tips."""
        if snap.visible.get("cookie_accept"):
            return await self._click_css("cookie_accept", snap)
        if snap.visible.get("terms_dialog"):
            return await self._accept_terms(snap)
        if snap.on_top.get("dismiss"):
            return await self._click_button("dismiss", snap)
        return False

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
        if UI.classify(snap) in _ENDS or not await self._click_css("leave_button", snap, wait=True):
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


def _texts(node: dict[str, Any], into: list[str]) -> None:
    """The text of a DevTools DOM node and its descendants, without style and script contents."""
    if node.get("nodeName") in ("STYLE", "SCRIPT"):
        return
    if node.get("nodeType") == 3 and str(node.get("nodeValue", "")).strip():
        into.append(" ".join(str(node["nodeValue"]).split()))
    for child in node.get("children") or []:
        _texts(child, into)
