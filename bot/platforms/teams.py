"""Microsoft Teams driven in one browser page as an anonymous guest: join, report states, watch for the end,
leave.

Teams shows its launcher, pre-join page, "Continue without audio or video" modal and lobby in varying order:
the join is the shared loop over page snapshots (`join_loop`), and this module gives it Teams' table and
what the bot does on the launcher, the modal, the pre-join page and in the lobby.

The launcher's `<iframe src="msteams:…">` (the deep link that would open the desktop app) makes Chromium
ignore every trusted click and key on the tab while it is in the page, and would pop up the browser's own
"Open xdg-open?" prompt, which no page script can answer. Before the first page loads, the bot has the
browser remove such frames as they are inserted, from a script world of its own (the DevTools protocol's
`Page.addScriptToEvaluateOnNewDocument` with a `worldName`): the page's scripts share nothing with it and it
writes no HTML, so the light client's Trusted Types policy has nothing to refuse.

Microphone policy: "Computer audio", microphone ON (the agent speaks through it), camera OFF. After
admission the bot reads the call's microphone button and unmutes if Teams muted it, checking that the click
took; in the call it looks again at every reading (a few unmutes at most: someone may mute the bot on
purpose).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Unpack
from urllib.parse import urlsplit

from playwright.async_api import CDPSession, Page
from playwright.async_api import Error as PlaywrightError

from bot.meeting_urls import MeetingUrl
from bot.outcome import EndReason, FailureCode
from bot.platforms.base import Browser, StateCallback
from bot.platforms.join_loop import Handler, JoiningPlatform, JoinTable, Step, Waiting, ended_before_admission
from bot.platforms.page import Timing, call_ends
from bot.platforms.policies import JoinPolicy
from bot.platforms.teams_ui import UI, Screen, Snapshot

log = logging.getLogger(__name__)

_TABLE = JoinTable(
    in_call=Screen.IN_CALL,
    unknown=Screen.UNKNOWN,
    # Screens that end a join attempt. BLOCKED is retryable by the caller (see outcome.RETRYABLE).
    terminal={
        Screen.SIGN_IN: (
            FailureCode.SIGN_IN_REQUIRED,
            "this Teams meeting does not admit anonymous guests: Teams asks to sign in",
        ),
        Screen.CAPTCHA: (FailureCode.CAPTCHA, "Teams asked the bot to verify it is a real person"),
        Screen.NOT_FOUND: (
            FailureCode.NOT_FOUND,
            "Teams says the meeting link is wrong or the meeting is gone",
        ),
        Screen.PASSCODE_WRONG: (FailureCode.PASSCODE_WRONG, "Teams says the meeting id or passcode is wrong"),
        Screen.EVENT_NOT_STARTED: (
            FailureCode.HOST_ABSENT,
            "the Teams event admits outside participants only once it has begun",
        ),
        Screen.BLOCKED: (FailureCode.BLOCKED, "Teams could not connect this browser to the meeting"),
        Screen.DENIED: (FailureCode.DENIED, "someone in the meeting declined the request to join"),
        Screen.LOBBY_TIMEOUT: (
            FailureCode.LOBBY_TIMEOUT,
            "nobody answered the request to join (Teams gave up)",
        ),
        Screen.DISCONNECTED: (
            FailureCode.NETWORK_ERROR,
            "Teams lost the connection while the bot was joining",
        ),
        **ended_before_admission(Screen.REMOVED, Screen.HOST_ENDED, Screen.CALL_ENDED),
        # The bot did not leave: while it asks to join, this is Teams putting it out.
        Screen.LEFT: (
            FailureCode.DENIED,
            'Teams turned to "You left the meeting" while the bot asked to join',
        ),
    },
    # The lobby keeps a Cancel button: leave() withdraws the request with it.
    waiting={Screen.LOBBY: Waiting("lobby", withdraw=True)},
    host_absent="the meeting did not start",
)
_ENDS: dict[Screen, EndReason] = {
    **call_ends(Screen.REMOVED, Screen.HOST_ENDED, Screen.CALL_ENDED),
    Screen.DISCONNECTED: EndReason.CALL_ENDED,
    Screen.LEFT: EndReason.CALL_ENDED,  # the page says so without our leave()
}
_TEAMS_HOSTS = ("teams.microsoft.com", "teams.live.com", "teams.cloud.microsoft")
_MAX_CLICKS = 6  # per control or dialog: more means the page does not react to the click
_MAX_TOGGLE_CLICKS = 3  # per pre-join switch or radio
_MAX_CALL_UNMUTES = 3  # in the call, after settling: more and someone is muting the bot on purpose
_UNMUTE_EVERY_S = 1.0  # the client takes a moment to show a click on the microphone button
_LAUNCH_EVERY_S = 3.0  # a click on the launcher navigates: no second click while it goes
DEEP_LINK_WORLD = "meeting-bot-teams"

# Runs at the start of every document of the page, in a world of its own: removes `msteams:` frames as the
# parser or a script inserts them (or points one there), before Chromium acts on them.
_NO_DEEP_LINK_JS = """
(() => {
  const deepLink = (el) => el.nodeType === 1 && el.tagName === "IFRAME"
    && /^\\s*msteams:/i.test(el.getAttribute("src") || "");
  const sweep = (el) => {
    if (deepLink(el)) { el.remove(); return; }
    if (el.nodeType === 1) for (const f of el.querySelectorAll("iframe")) if (deepLink(f)) f.remove();
  };
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === "attributes") sweep(r.target);
      else for (const n of r.addedNodes) sweep(n);
    }
  }).observe(document, { childList: true, subtree: true, attributes: true, attributeFilter: ["src"] });
})();
"""


async def remove_deep_links(page: Page) -> CDPSession:
    """Has the browser remove `msteams:` frames from every document `page` loads from now on. Returns the
    DevTools session that holds the script (it lives as long as the session)."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Page.enable")  # without it the script is registered but never runs
    await cdp.send(
        "Page.addScriptToEvaluateOnNewDocument", {"source": _NO_DEEP_LINK_JS, "worldName": DEEP_LINK_WORLD}
    )
    return cdp


class TeamsPlatform(JoiningPlatform[Screen, Snapshot]):
    """Microsoft Teams guest join (launcher, light-meetings client). `audio_wait_s`: how long, after
    admission, the bot tries to get its microphone confirmed on."""

    name = "teams"
    label = "Teams"
    ui = UI
    ends = _ENDS
    table = _TABLE

    def __init__(
        self,
        browser: Browser,
        meeting: MeetingUrl,
        *,
        audio_wait_s: float = 8.0,
        **timing: Unpack[Timing],
    ) -> None:
        super().__init__(browser, meeting, **timing)
        self.audio_wait_s = audio_wait_s
        self._deep_links: CDPSession | None = None
        self._call_unmutes = 0
        self._unmuted_at = -1e9
        self._mic_warned = False
        self._launched_at = -1e9

    async def join(self, display_name: str, policy: JoinPolicy, on_state: StateCallback) -> None:
        if self._deep_links is None:
            self._deep_links = await remove_deep_links(self.page)
        await super().join(display_name, policy, on_state)

    # ---- joining -------------------------------------------------------------------------------------

    def _handlers(self) -> Mapping[Screen, Handler[Snapshot]]:
        return {
            Screen.LAUNCHER: self._launcher,
            Screen.AV_MODAL: self._av_modal,
            Screen.PREJOIN: self._prejoin,
            Screen.LOBBY: self._lobby,
        }

    async def _launcher(self, snap: Snapshot) -> Step:
        """The launcher: "Continue on this browser" (or "Join on the web instead"), never the desktop app."""
        now = self._now()
        if now - self._launched_at < _LAUNCH_EVERY_S:
            return Step.NOTHING  # the last click's navigation may still be on its way
        self._launched_at = now
        await self._at_most(
            "launcher", _MAX_CLICKS, "the launcher does not go on to the web client", "launcher"
        )
        if snap.visible.get("launch_button") and await self._click_css("launch_button", snap):
            return Step.ACTED
        return Step.ACTED if await self._click_button("launch_browser", snap) else Step.NOTHING

    async def _av_modal(self, snap: Snapshot) -> Step:
        """Left alone it blocks the join (and leaves "Join now" on the page, which would read as a lobby
        that never ends). The bot's devices are granted, so Teams still joins with them."""
        await self._at_most("av_modal", _MAX_CLICKS, "the audio and video modal does not go away", "av_modal")
        return Step.ACTED if await self._click_button("av_continue", snap) else Step.NOTHING

    async def _prejoin(self, snap: Snapshot) -> Step:
        if await self._prepare(snap):
            return Step.ACTED
        # A click on Join is no progress: a Join that does nothing ends in UI_CHANGED after ui_timeout_s.
        await self._press_join(snap, lambda: self._click_css("join_button", snap))
        return Step.NOTHING

    async def _lobby(self, snap: Snapshot) -> Step:
        """In the lobby, an enabled "Join now" means Teams reset the lobby connection (peers saw it): ask
        again."""
        if snap.join_enabled:
            log.info("teams: Join is enabled again in the lobby; asking again")
            await self._press_join(snap, lambda: self._click_css("join_button", snap))
        return Step.NOTHING

    async def _prepare(self, snap: Snapshot) -> bool:
        """Name typed, "Computer audio" chosen, microphone on, camera off; True when it did something."""
        if snap.visible.get("name_input") and snap.name_value != self.display_name:
            if not await self._type_into("name_input", self.display_name, snap):
                return False  # covered or gone: the join loop's bounds decide
            await self._at_most("name", _MAX_CLICKS, "the name field does not keep what is typed", "name")
            return True
        # "Don't use audio" would leave the agent unheard and deaf.
        if snap.computer_audio is False and self._may_try("computer_audio", _MAX_TOGGLE_CLICKS):
            return await self._click_css("computer_audio", snap)
        if snap.mic_toggle_on is False and self._may_try("mic_toggle", _MAX_TOGGLE_CLICKS):
            return await self._click_css("mic_toggle", snap)
        if snap.camera_toggle_on is True and self._may_try("camera_toggle", _MAX_TOGGLE_CLICKS):
            return await self._click_css("camera_toggle", snap)
        return False

    async def _settle_in_call(self) -> None:
        """Right after admission: a late modal answered, and the microphone on (Teams may join a guest
        muted). Every click on the microphone is checked by reading its button again. Bounded: a call
        whose microphone cannot be confirmed is still a call."""
        deadline = self._now() + self.audio_wait_s
        clicks = 0
        clicked_at = -1e9
        while self._now() < deadline:
            snap = await self._snapshot()
            now = self._now()
            if snap.buttons.get("av_continue"):
                await self._click_button("av_continue", snap)
            elif snap.present.get("mic_is_on"):
                log.info("teams: microphone on")
                return
            elif snap.present.get("mic_is_off") and now - clicked_at >= _UNMUTE_EVERY_S:
                if clicks >= _MAX_TOGGLE_CLICKS:
                    break
                if clicks:
                    log.info("teams: the microphone still reads muted after a click; clicking again")
                clicks, clicked_at = clicks + 1, now
                await self._click_css("mic_is_off", snap)
            await asyncio.sleep(self.poll_s)
        log.warning("teams: microphone not confirmed on after admission; the agent may not be heard")

    # ---- in the call ---------------------------------------------------------------------------------

    async def _tidy_call(self, snap: Snapshot, screen: Screen) -> None:
        if snap.buttons.get("av_continue"):
            await self._click_button("av_continue", snap)
        elif snap.on_top.get("dismiss"):
            await self._click_button("dismiss", snap)
        elif screen is Screen.IN_CALL and snap.visible.get("mic_is_off"):
            await self._unmute_again(snap)

    async def _unmute_again(self, snap: Snapshot) -> None:
        """The microphone reads muted in the call: unmute, a few times at most over the call."""
        now = self._now()
        if now - self._unmuted_at < _UNMUTE_EVERY_S:
            return  # the last click may not show yet
        if self._call_unmutes >= _MAX_CALL_UNMUTES:
            if not self._mic_warned:
                self._mic_warned = True
                log.warning(
                    "teams: the microphone keeps being muted; leaving it muted (the agent is not heard)"
                )
            return
        self._call_unmutes += 1
        self._unmuted_at = now
        log.info("teams: the microphone reads muted in the call; unmuting (%d)", self._call_unmutes)
        await self._click_css("mic_is_off", snap)

    def _count(self, snap: Snapshot, screen: Screen) -> int | None:
        return snap.participants if screen is Screen.IN_CALL else None

    def _in_client(self, url: str) -> bool:
        """A page on a Teams host (the launcher, /v2/, the light client): anything else ends the call."""
        return (urlsplit(url).hostname or "") in _TEAMS_HOSTS

    async def _dismiss_popup(self, snap: Snapshot) -> bool:
        if snap.buttons.get("av_continue"):
            return await self._click_button("av_continue", snap)
        if snap.on_top.get("dismiss"):
            return await self._click_button("dismiss", snap)
        return False

    async def _leave_in_page(self) -> None:
        """From the lobby: Cancel. From the call: the hang-up button, then "Leave" if Teams asks to
        confirm (never "End meeting", which ends it for everyone); then wait a little for Teams to say so."""
        snap = await self._snapshot()
        screen = UI.classify(snap)
        if screen in _ENDS or screen in _TABLE.terminal:
            return
        if screen is Screen.LOBBY or (snap.visible.get("cancel_button") and screen is not Screen.IN_CALL):
            await self._click_css("cancel_button", snap)
        elif not await self._click_css("leave_button", snap, wait=True):
            return
        deadline = self._now() + 3.0
        while self._now() < deadline:
            snap = await self._snapshot()
            if UI.classify(snap) in _ENDS or self.page.is_closed():
                return
            if snap.buttons.get("leave_confirm"):  # only a dialog's "Leave": the hang-up button says it too
                await self._click_button("leave_confirm", snap, in_dialog=True)
            await asyncio.sleep(0.1)
        log.warning("teams: Teams did not confirm the bot left; closing the page")

    async def leave(self) -> None:
        try:
            await super().leave()
        finally:
            if self._deep_links is not None:
                with contextlib.suppress(PlaywrightError):
                    await self._deep_links.detach()
                self._deep_links = None
