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
from urllib.parse import urlsplit

from bot.outcome import CallState, EndReason, FailureCode
from bot.platforms.base import Browser, JoinPolicy, StateCallback
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
    Screen.CAPTCHA: (FailureCode.CAPTCHA, "Google showed a reCAPTCHA while the bot was joining"),
    Screen.BLOCKED: (
        FailureCode.BLOCKED,
        'Google refused this browser ("You can\'t join this video call" / "…this meeting")',
    ),
    Screen.DENIED: (FailureCode.DENIED, "someone in the call denied the request to join"),
    Screen.LOBBY_TIMEOUT: (FailureCode.LOBBY_TIMEOUT, "nobody answered the request to join (Meet gave up)"),
    Screen.REMOVED: (FailureCode.DENIED, "the bot was removed before it was let in"),
    Screen.HOST_ENDED: (FailureCode.NOT_FOUND, "the meeting ended before the bot was let in"),
    Screen.CALL_ENDED: (FailureCode.NOT_FOUND, "the meeting ended before the bot was let in"),
    # The bot did not leave: while it asks to join, this is how Meet now shows a refusal.
    Screen.LEFT: (
        FailureCode.DENIED,
        'the request to join was refused: Meet turned to "You left the meeting" while the bot asked to join',
    ),
}
_ENDS: dict[Screen, EndReason] = {
    Screen.REMOVED: EndReason.REMOVED,
    Screen.HOST_ENDED: EndReason.HOST_ENDED,
    Screen.CALL_ENDED: EndReason.CALL_ENDED,
    Screen.LEFT: EndReason.CALL_ENDED,  # the page says so without our leave(): another tab, or Meet itself
}
_MAX_CLICKS = 6  # per toggle/dialog: more means the page does not react to the click
_COUNT_FALLBACK_S = 10.0  # no participant count this long in the call: count the participant tiles


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
        self._no_count_since: float | None = None
        self._counting_tiles = False
        self._dismissing = False

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
            if await self._network_error(snap, policy):
                progress_at = now
                await asyncio.sleep(self.poll_s)
                continue
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
                else:  # in a dialog or a card on top of the page, wherever it is
                    acted = await self._click_button("dismiss", in_dialog=bool(snap.dialog))
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
            await self._check_stuck(screen.value, screen is Screen.UNKNOWN, snap, progress_at, policy)
            if screen is Screen.UNKNOWN:
                # The call's control bar may have hidden (and the call's signals with it) before this
                # look: bring it back for the next one.
                await self._wake_controls_quietly()
            await asyncio.sleep(self.poll_s)

    async def _prepare(self, display_name: str, snap: Snapshot, clicks: dict[str, int]) -> bool:
        """Name typed, camera off, microphone on; True when it did something this tick."""
        if snap.visible.get("name_input") and snap.name_value != display_name:
            if not await self._type(self._css(self.page, SELECTORS["name_input"]), display_name):
                return False  # covered or gone: the join loop's bounds decide
            clicks["name"] = clicks.get("name", 0) + 1
            if clicks["name"] > _MAX_CLICKS:
                await self._fail(FailureCode.UI_CHANGED, "the name field does not keep what is typed", "name")
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
        in_call = screen in (Screen.IN_CALL, Screen.POPUP, Screen.UNKNOWN)  # the call, maybe under a card
        if in_call and snap.on_top.get("dismiss"):
            await self._click_button("dismiss")  # "Got it" cards, in a dialog or not
        elif snap.dialog and snap.buttons.get("consent") and screen is Screen.IN_CALL:
            await self._click_button("consent", in_dialog=True)  # notices can come at any time
        end = _ENDS.get(screen)
        if end is None and self._left_the_meeting(snap.url):
            log.info("meet: the page left the meeting (now %s)", snap.url)
            end = EndReason.CALL_ENDED  # the call ended by navigating away, with no end text
        return CallReading(end, self._count(snap) if in_call else None)

    def _left_the_meeting(self, url: str) -> bool:
        """The page is no longer meet.google.com/<code> (the landing page, another site, an error page).
        An empty URL is a page between two navigations: not known yet."""
        if not url:
            return False
        where = urlsplit(url)
        code = self.meeting.meeting_id.lower()
        return where.hostname != "meet.google.com" or where.path.strip("/").lower() != code

    def _count(self, snap: Snapshot) -> int | None:
        """People in the call: the page's count when it shows one; after `_COUNT_FALLBACK_S` without any,
        the participant tiles (said once in the log): an unknown count would keep the bot in an empty
        meeting until `call.max_duration_s`."""
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

    async def _dismiss_popups(self) -> bool:
        """Clicks away a "Got it"/"Dismiss" card or a consent notice, wherever it is on top."""
        if self._dismissing:
            return False
        self._dismissing = True
        try:
            snap = await self._snapshot()
            if snap.on_top.get("dismiss"):
                return await self._click_button("dismiss")
            if snap.dialog and snap.on_top.get("consent"):
                return await self._click_button("consent", in_dialog=True)
            return False
        finally:
            self._dismissing = False

    async def _leave_in_page(self) -> None:
        """Click "Leave call" (the call's and the lobby's) and wait a little for Meet to say so. A card on
        a scrim over the bar ("Got it") is clicked away first."""
        await self._wake_controls()
        screen = classify(await self._snapshot())
        if screen in _ENDS or screen in _TERMINAL:
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
            if classify(await self._snapshot()) in _ENDS or self.page.is_closed():
                return
            await asyncio.sleep(0.1)

    # ---- page access ---------------------------------------------------------------------------------

    async def _snapshot(self) -> Snapshot:
        raw = await self._evaluate(self.page.main_frame, SNAPSHOT_JS, [SNAPSHOT_SELECTORS, BUTTONS, TEXTS])
        return Snapshot.parse(raw)

    async def _click_css(self, key: str, wait: bool = False) -> bool:
        return await self._click(self._css(self.page, SELECTORS[key]), wait, timeout_ms=1500)

    async def _click_button(self, key: str, in_dialog: bool = False) -> bool:
        scope = self.page.locator("[role=dialog], [role=alertdialog]") if in_dialog else self.page
        return await self._click(self._button(scope, BUTTONS[key]))
