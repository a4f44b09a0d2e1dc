"""Google Meet driven in one browser page as a guest: join, report states, watch for the end, leave.

Meet shows its "Getting ready" spinner, permission dialog, sign-in suggestion and tips in varying order: the
join is the shared loop over page snapshots (`join_loop`), and this module gives it Meet's table (which
screens end the join, which wait) and what the bot does on the permission dialog, a popup and the pre-join
page.

Microphone policy: the bot keeps its microphone ON (the agent speaks through it) and its camera OFF.
Admission needs two call-only signals and no lobby text: the lobby shows "Leave call", the toggles and a
self tile too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Unpack
from urllib.parse import urlsplit

from bot.meeting_urls import MeetingUrl
from bot.outcome import EndReason, FailureCode
from bot.platforms.base import Browser
from bot.platforms.join_loop import Handler, JoiningPlatform, JoinTable, Step, Waiting, ended_before_admission
from bot.platforms.meet_ui import UI, Screen, Snapshot
from bot.platforms.page import Timing, call_ends

log = logging.getLogger(__name__)

_TABLE = JoinTable(
    in_call=Screen.IN_CALL,
    unknown=Screen.UNKNOWN,
    # Screens that end a join attempt. BLOCKED is retryable by the caller (see base.RETRYABLE).
    terminal={
        Screen.NOT_FOUND: (FailureCode.NOT_FOUND, "Meet says the meeting code does not work"),
        Screen.SIGN_IN: (FailureCode.SIGN_IN_REQUIRED, "this meeting only admits signed-in Google accounts"),
        Screen.CAPTCHA: (FailureCode.CAPTCHA, "Google showed a reCAPTCHA while the bot was joining"),
        Screen.BLOCKED: (
            FailureCode.BLOCKED,
            'Google refused this browser ("You can\'t join this video call" / "…this meeting")',
        ),
        Screen.DENIED: (FailureCode.DENIED, "someone in the call denied the request to join"),
        Screen.LOBBY_TIMEOUT: (
            FailureCode.LOBBY_TIMEOUT,
            "nobody answered the request to join (Meet gave up)",
        ),
        **ended_before_admission(Screen.REMOVED, Screen.HOST_ENDED, Screen.CALL_ENDED),
        # The bot did not leave: while it asks to join, this is how Meet now shows a refusal.
        Screen.LEFT: (
            FailureCode.DENIED,
            'the request to join was refused: Meet turned to "You left the meeting" while the bot asked '
            "to join",
        ),
    },
    # Both keep "Leave call" on screen: leave() withdraws.
    waiting={
        Screen.LOBBY: Waiting("lobby", withdraw=True),
        Screen.HOST_WAIT: Waiting("host", withdraw=True),
    },
    host_absent="the host did not join",
)
_ENDS: dict[Screen, EndReason] = {
    **call_ends(Screen.REMOVED, Screen.HOST_ENDED, Screen.CALL_ENDED),
    Screen.LEFT: EndReason.CALL_ENDED,  # the page says so without our leave(): another tab, or Meet itself
}
_MAX_CLICKS = 6  # per toggle/dialog: more means the page does not react to the click
_COUNT_FALLBACK_S = 10.0  # no participant count this long in the call: count the participant tiles
_CALL_SCREENS = (Screen.IN_CALL, Screen.POPUP, Screen.UNKNOWN)  # the call, maybe under a card


class MeetPlatform(JoiningPlatform[Screen, Snapshot]):
    """Google Meet guest join. `audio_reload_s`: how long a pre-join page without any `<audio>` element
    (Meet's alternate audio setup, which delivers no remote audio) is tolerated before a reload, at most
    `max_reloads` times."""

    name = "meet"
    label = "Meet"
    ui = UI
    ends = _ENDS
    table = _TABLE
    css_click_timeout_ms = 1500
    wake_when_lost = True

    def __init__(
        self,
        browser: Browser,
        meeting: MeetingUrl,
        *,
        audio_reload_s: float = 3.0,
        max_reloads: int = 2,
        **timing: Unpack[Timing],
    ) -> None:
        super().__init__(browser, meeting, **timing)
        self.audio_reload_s = audio_reload_s
        self.max_reloads = max_reloads
        self.reloads = 0
        self._prejoin_since: float | None = None
        self._no_count_since: float | None = None
        self._counting_tiles = False

    # ---- joining -------------------------------------------------------------------------------------

    def _handlers(self) -> Mapping[Screen, Handler[Snapshot]]:
        return {Screen.PERMISSION: self._permission, Screen.POPUP: self._popup, Screen.PREJOIN: self._prejoin}

    async def _permission(self, snap: Snapshot) -> Step:
        return await self._answer_permission(snap, _MAX_CLICKS, "the permission dialog does not go away")

    async def _popup(self, snap: Snapshot) -> Step:
        """A dialog or a card on top of the page, wherever it is."""
        await self._at_most("popup", _MAX_CLICKS, "the popup dialog does not go away", "popup")
        return Step.ACTED if await self._click_button("dismiss", in_dialog=snap.dialog) else Step.NOTHING

    async def _prejoin(self, snap: Snapshot) -> Step:
        now = self._now()
        self._prejoin_since = self._prejoin_since if self._prejoin_since is not None else now
        # Meet's alternate audio setup has no <audio> elements and plays nothing: joining would give a
        # silent call. Wait a little for them, then reload (bounded).
        silent = snap.audio_elements == 0 and self.reloads < self.max_reloads
        if silent and now - self._prejoin_since >= self.audio_reload_s:
            self.reloads += 1
            log.info("meet: pre-join page has no <audio> elements; reloading (%d)", self.reloads)
            await self._goto(self.meeting.join_url)
            self._prejoin_since = None
            return Step.RELOADED
        if await self._prepare(snap):
            return Step.ACTED
        if not silent and await self._press_join(snap, lambda: self._click_button("join")):
            return Step.ACTED
        return Step.NOTHING

    async def _prepare(self, snap: Snapshot) -> bool:
        """Name typed, camera off, microphone on; True when it did something this tick."""
        if snap.visible.get("name_input") and snap.name_value != self.display_name:
            if not await self._type_into("name_input", self.display_name):
                return False  # covered or gone: the join loop's bounds decide
            await self._at_most("name", _MAX_CLICKS, "the name field does not keep what is typed", "name")
            return True
        for key in ("cam_is_on", "mic_is_off"):  # turn the camera off, the microphone on
            if snap.visible.get(key) and self._may_try(key, _MAX_CLICKS):
                return await self._click_css(key)
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

    async def _tidy_call(self, snap: Snapshot, screen: Screen) -> None:
        if screen in _CALL_SCREENS and snap.on_top.get("dismiss"):
            await self._click_button("dismiss")  # "Got it" cards, in a dialog or not
        elif snap.dialog and snap.buttons.get("consent") and screen is Screen.IN_CALL:
            await self._click_button("consent", in_dialog=True)  # notices can come at any time

    def _in_client(self, url: str) -> bool:
        """The page is meet.google.com/<code> (not the landing page, another site, an error page)."""
        where = urlsplit(url)
        code = self.meeting.meeting_id.lower()
        return where.hostname == "meet.google.com" and where.path.strip("/").lower() == code

    def _count(self, snap: Snapshot, screen: Screen) -> int | None:
        """People in the call: the page's count when it shows one; after `_COUNT_FALLBACK_S` without any,
        the participant tiles (said once in the log): an unknown count would keep the bot in an empty
        meeting until `call.max_duration_s`."""
        if screen not in _CALL_SCREENS:
            return None
        now = self._now()
        if snap.participants is not None:
            if self._counting_tiles:
                log.info("meet: participant count found again (%s)", snap.participants_from)
            self._no_count_since, self._counting_tiles = None, False
            return snap.participants
        self._no_count_since = self._no_count_since if self._no_count_since is not None else now
        if now - self._no_count_since < _COUNT_FALLBACK_S:
            return None
        tiles = snap.present.get("tiles", 0)
        if not self._counting_tiles:
            self._counting_tiles = True
            log.warning(
                "meet: no participant count on the page for %.0f s; counting the participant tiles "
                "instead ([data-participant-id]: %d)",
                _COUNT_FALLBACK_S,
                tiles,
            )
        return tiles or None

    async def _dismiss_popup(self, snap: Snapshot) -> bool:
        """Clicks away a "Got it"/"Dismiss" card or a consent notice, wherever it is on top."""
        if snap.on_top.get("dismiss"):
            return await self._click_button("dismiss")
        if snap.dialog and snap.on_top.get("consent"):
            return await self._click_button("consent", in_dialog=True)
        return False

    async def _leave_in_page(self) -> None:
        """Click "Leave call" (the call's and the lobby's) and wait a little for Meet to say so. A card on
        a scrim over the bar ("Got it") is clicked away first."""
        await self._wake_controls()
        screen = UI.classify(await self._snapshot())
        if screen in _ENDS or screen in _TABLE.terminal:
            return
        await self._dismiss_popups()
        clicked = False
        for _ in range(2):  # once more after dismissing what took the first click
            if await self._click_css("leave_button", wait=True):
                clicked = True
                break
            await self._wake_controls()
        if not clicked:
            return
        deadline = self._now() + 3.0
        while self._now() < deadline:
            if UI.classify(await self._snapshot()) in _ENDS or self.page.is_closed():
                return
            await asyncio.sleep(0.1)
