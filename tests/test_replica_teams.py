"""The Teams replica as a guest meets it, in a real headless Chromium and no bot: the links and the launcher,
the light client's pre-join, modal, lobby, admission by a simulated host, the call with audio both ways
(one mixed stream: every voice heard once), removal, denial, the end, and the refusal pages.

One replica server, one people's browser (the simulated host and speaker) and one guest browser on its own
PulseAudio serve the module (a distinct meeting per test, a fresh tab each): starting them per test would
cost most of the module's time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from bot.aio import cancel_and_wait
from bot.audio import AudioDevices, PcmCapture, PcmPlayback
from bot.audio.analysis import onsets, rms_dbfs, tone
from bot.audio.streams import wait_for_streams
from bot.browser.launch import BotBrowser
from bot.settings import BrowserSection
from bot.system.processes import descendants
from bot.testing.participant import PLATFORM_HOSTS, Participant, PeopleBrowser, to_pcm
from bot.testing.replica.room import Room, RoomConfig
from bot.testing.replica.server import ReplicaServer
from bot.testing.replica.teams_pages import (
    AV_MODAL_BUTTON,
    CAPTCHA,
    CSP,
    DENIED_DECLINED,
    LEFT,
    LOBBY_SOON,
    MEETING_ENDED,
    NOT_FOUND,
    SIGN_IN_ORG_POLICY,
    TeamsClientOptions,
    TeamsPages,
    meet_url,
    meetup_join_url,
)
from tests.adapter_support import PlatformReplica, module_replica, teams_thread
from tests.bridge_support import loud_frequency
from tests.cluster_support import KEPT_TREES

pytestmark = pytest.mark.asyncio(loop_scope="module")

GUEST = "Replica Guest"
# What Meeting BaaS's init script does: the launcher's msteams: iframe goes as soon as it is inserted (while
# it is in the page, this Chromium ignores trusted input on the tab).
DROP_DEEPLINK = """
new MutationObserver(() => {
  for (const f of document.querySelectorAll('iframe[src^="msteams:"]')) f.remove();
}).observe(document, { childList: true, subtree: true });
"""


Replica = PlatformReplica[TeamsPages]


replica = module_replica(TeamsPages)


@dataclass
class Browsers:
    people: PeopleBrowser
    guest: BotBrowser
    audio: AudioDevices


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browsers(replica: Replica, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browsers]:
    """The people's browser and the guest's (headless, on its own PulseAudio), kept for the module: conftest's
    leftover check leaves their process trees alone until the module is done."""
    before = descendants()
    audio = AudioDevices()
    people = PeopleBrowser(replica.server)
    guest = BotBrowser(
        replica.server.browser_section(BrowserSection(display="headless")),
        tmp_path_factory.mktemp("teams-guest"),
    )
    kept: set[int] = set()
    try:
        await audio.start()
        await people.start()
        await guest.start(audio.browser)
        kept = descendants() - before
        KEPT_TREES.update(kept)
        yield Browsers(people, guest, audio)
    finally:
        await guest.close()
        await people.close()
        await audio.close()
        KEPT_TREES.difference_update(kept)


@pytest_asyncio.fixture(loop_scope="module")
async def page(browsers: Browsers) -> AsyncIterator[Page]:
    """A fresh tab in the guest's browser, with the launcher's deep link removed as it appears."""
    tab = await browsers.guest.new_page()
    await tab.add_init_script(DROP_DEEPLINK)
    try:
        yield tab
    finally:
        await tab.close()


async def person(replica: Replica, browsers: Browsers, room_id: str, name: str, host: bool) -> Participant:
    p = Participant(replica.server, "teams", room_id, name=name, host=host, shared=browsers.people)
    await p.start()
    return p


def lobby_meeting(replica: Replica, tag: str, **options: object) -> tuple[str, Room]:
    """A new meeting (its thread id and room) with a lobby and these client options."""
    thread = teams_thread(tag)
    room = replica.room(thread)
    room.configure(lobby=True)
    replica.options(thread, **options)
    return thread, room


async def to_prejoin(page: Page, url: str) -> None:
    """The guest's way from a link to the pre-join: the launcher, then "Continue on this browser"."""
    await page.goto(url)
    await page.locator('[data-tid="joinOnWeb"]').click()
    await page.locator('[data-tid="prejoin-display-name-input"]').wait_for(state="visible", timeout=10_000)


class Recorder:
    """Everything a capture reads, kept (its own queue holds only the last second)."""

    def __init__(self, capture: PcmCapture) -> None:
        self.data = bytearray()
        self._capture = capture
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.data += (await self._capture.queue.get()).data

    def since(self, mark: int) -> bytes:
        return bytes(self.data[mark:])

    async def close(self) -> None:
        await cancel_and_wait(self._task)


def at(seconds: float) -> int:
    """The byte offset of a time in s16le mono 48 kHz."""
    return int(seconds * 48000) * 2


# ---- the server alone: paths, redirects, headers -----------------------------------------------------------


async def get(
    session: aiohttp.ClientSession, server: ReplicaServer, url: str
) -> tuple[int, str, dict[str, str]]:
    parts = urlsplit(url)
    async with session.get(
        f"https://127.0.0.1:{server.port}{parts.path}" + (f"?{parts.query}" if parts.query else ""),
        headers={"Host": parts.netloc},
        ssl=server.ssl_context(),
        server_hostname=parts.netloc,
        allow_redirects=False,
    ) as r:
        return r.status, await r.text(), dict(r.headers)


def coords_of(thread: str) -> str:
    data = {"conversationId": thread, "tenantId": "t", "organizerId": "o", "messageId": "0"}
    return base64.b64encode(json.dumps(data).encode()).decode()


async def test_links_lead_to_the_launcher_and_the_client_sends_a_trusted_types_policy(
    replica: Replica,
) -> None:
    thread = teams_thread("paths")
    async with aiohttp.ClientSession() as session:
        status, _, headers = await get(session, replica.server, meetup_join_url(thread))
        assert status == 302
        target = urlsplit(str(headers["Location"]))
        query = parse_qs(target.query)
        assert target.path == "/dl/launcher/launcher.html" and query["type"] == ["meetup-join"]
        assert query["url"][0].startswith("/_#/l/meetup-join/19%3Ameeting_")
        assert "anon=true" in query["url"][0] and "context=" in query["url"][0]
        status, body, _ = await get(
            session, replica.server, f"https://teams.microsoft.com{target.path}?{target.query}"
        )
        assert status == 200 and 'id="teamsLauncher" src="msteams:/l/meetup-join/' in body
        assert 'data-tid="joinOnWeb"' in body and "Continue on this browser" in body
        # /meet/ links, on either host.
        for host in ("teams.live.com", "teams.microsoft.com"):
            status, _, headers = await get(session, replica.server, meet_url("9312345678901", "Ab3xY9", host))
            url = parse_qs(urlsplit(str(headers["Location"])).query)["url"][0]
            assert status == 302 and url.startswith("/_#/meet/9312345678901?p=Ab3xY9")
        # The light client: a Trusted Types policy, as the real one; the room from the coordinates.
        launch = f"https://teams.microsoft.com/light-meetings/launch?agent=web&coords={coords_of(thread)}"
        status, body, headers = await get(session, replica.server, launch)
        assert status == 200 and headers["Content-Security-Policy"] == CSP
        assert json.dumps(thread) in body
        assert replica.pages.launches[-1]["conversationId"] == thread
        # A meeting that does not exist, and one that needs an account.
        replica.room(thread).configure(exists=False)
        status, body, _ = await get(session, replica.server, launch)
        assert status == 200 and NOT_FOUND in body
        replica.room(thread).configure(exists=True, sign_in_required=True)
        status, _, headers = await get(session, replica.server, launch)
        login = urlsplit(str(headers["Location"]))
        assert status == 302 and login.netloc == "login.microsoftonline.com"
        status, body, _ = await get(session, replica.server, str(headers["Location"]))
        assert status == 200 and 'name="loginfmt"' in body
        # The sign-in page is on its own host only; Teams' paths are not there.
        status, _, _ = await get(session, replica.server, f"https://teams.microsoft.com{login.path}")
        assert status == 404
        status, _, _ = await get(session, replica.server, "https://login.microsoftonline.com/v2/")
        assert status == 404
        status, _, _ = await get(session, replica.server, "https://teams.microsoft.com/light-meetings/launch")
        assert status == 404  # no coordinates


async def test_client_options_are_checked_and_kept_per_meeting(replica: Replica) -> None:
    with pytest.raises(ValueError, match="av_modal"):
        TeamsClientOptions(av_modal="sometimes")
    replica.pages.configure("a", lobby_text=LOBBY_SOON)
    assert replica.pages.options_for("a").lobby_text == LOBBY_SOON
    assert replica.pages.options_for("b").lobby_text != LOBBY_SOON


async def test_a_guest_taken_for_a_bot_waits_in_the_lobby_even_without_one() -> None:
    """Teams' external-bot policy: the organiser approves a detected bot, whatever the meeting's lobby."""
    room = Room("teams", teams_thread("bot-policy"), RoomConfig(entry_check=True))

    async def send(message: dict[str, object]) -> None:
        pass

    assert (await room.join("Person", "", False, send, entry={"bot": False}))[0] == "admitted"
    result, pid = await room.join("Bot", "", False, send, entry={"bot": True})
    assert result == "waiting" and pid is not None
    await room.admit("Bot")
    assert [p.state for p in room.in_call()] == ["in_call", "in_call"]
    await room.close()


# ---- a guest in a real browser -----------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.pulse
async def test_the_launcher_holds_the_deep_link_and_goes_on_to_the_light_client(
    replica: Replica, browsers: Browsers
) -> None:
    """The launcher's msteams: iframe is the real thing: in this Chromium it can leave the tab deaf to
    trusted input for good (measured: about every other fresh tab, even after the iframe is removed or the
    tab has gone on to the client), which is why the guests here drop it as it is inserted. A script click
    always goes through."""
    thread = teams_thread("launcher")
    tab = await browsers.guest.new_page()  # no init script: the deep link stays
    try:
        await tab.goto(meetup_join_url(thread))
        assert await tab.title() == "Join conversation"
        deep_link = tab.locator('iframe#teamsLauncher[src^="msteams:/l/meetup-join/19%3Ameeting_"]')
        assert await deep_link.count() == 1
        await tab.evaluate("() => document.querySelector('[data-tid=\"joinOnWeb\"]').click()")
        await tab.wait_for_url(re.compile(r"/light-meetings/launch\?"), timeout=10_000)
        coords = parse_qs(urlsplit(tab.url).query)["coords"][0]
        assert json.loads(base64.b64decode(coords))["conversationId"] == thread
        await tab.locator('[data-tid="prejoin-display-name-input"]').wait_for(state="visible", timeout=10_000)
    finally:
        await tab.close()


@pytest.mark.browser
@pytest.mark.pulse
async def test_guest_through_modals_and_lobby_into_the_call_hears_each_voice_once_and_is_heard(
    replica: Replica, browsers: Browsers, page: Page
) -> None:
    thread, room = lobby_meeting(replica, "call", av_modal="both", lobby_text=LOBBY_SOON)
    host = await person(replica, browsers, thread, "Host", host=True)
    speaker = await person(replica, browsers, thread, "Speaker", host=False)
    await room.admit("Speaker")
    audio = browsers.audio
    capture = PcmCapture(audio.address, audio.meeting_monitor)
    playback = PcmPlayback(audio.address, audio.names.agent_sink)
    try:
        await to_prejoin(page, meetup_join_url(thread))
        assert "/light-meetings/launch" in page.url
        # The modal over the pre-join as it loads.
        await page.get_by_role("button", name=AV_MODAL_BUTTON).click()
        name = page.locator('[data-tid="prejoin-display-name-input"]')
        assert await name.get_attribute("placeholder") == "Type your name"
        await name.fill(GUEST)
        mute, video = page.locator('[data-tid="toggle-mute"]'), page.locator('[data-tid="toggle-video"]')
        assert (
            await mute.get_attribute("aria-checked") == "true"
            and await mute.get_attribute("title") == "Mute mic"
        )
        assert await video.get_attribute("aria-checked") == "true"
        await video.click()
        assert await video.get_attribute("aria-checked") == "false"
        assert await page.get_by_role("radio", name="Computer audio").is_checked()
        join = page.locator('[data-tid="prejoin-join-button"]')
        assert (await join.inner_text()).strip() == "Join now"
        await join.click()
        # The modal again after "Join now": the join waits for it, "Join now" still on the page.
        await page.get_by_role("button", name=AV_MODAL_BUTTON).wait_for(state="visible")
        await asyncio.sleep(0.3)
        assert await join.is_visible() and GUEST not in room.events("waiting")
        await page.get_by_role("button", name=AV_MODAL_BUTTON).click()
        # The lobby: its text, "Join now" disabled, the cancel button.
        await page.get_by_text(LOBBY_SOON).wait_for(state="visible", timeout=5_000)
        assert await join.is_disabled()
        assert await page.locator('[data-tid="prejoin-cancel-button"]').is_visible()
        await room.wait_for(GUEST, "waiting", 5)
        await room.admit(GUEST)
        await page.locator("#hangup-button").wait_for(state="visible", timeout=5_000)
        for sel in (
            '[data-tid="hangup-main-btn"]',
            'button[aria-label="Leave"]',
            "#callingButtons-showMoreBtn",
        ):
            assert await page.locator(sel).is_visible(), sel
        assert not await page.get_by_text(LOBBY_SOON).is_visible()
        # People: the count, and the roster panel's items.
        roster = page.locator('[data-tid="roster-button"]')
        await page.wait_for_function(
            "() => document.querySelector('[data-tid=\"roster-button\"] .badge').textContent === '3'"
        )
        await roster.click()
        items = page.locator('[data-tid="roster"] [role="treeitem"]')
        assert await items.all_inner_texts() == ["Host", "Speaker", f"{GUEST} (You)"]
        # The mix plays the call: no element per person in the page.
        assert await page.evaluate("() => document.querySelectorAll('audio').length") == 0

        await room.wait_until(lambda r: GUEST in r.events("audio"), 5)
        await capture.start()
        await wait_for_streams(audio.address, [capture.pid])
        await audio.reclock()
        recorder = Recorder(capture)
        await asyncio.sleep(1.0)  # the peer connections come up
        # Each voice comes through once: one after the other, each at the level it was sent (0.5 of full
        # scale: -9 dBFS; played twice it would be 6 dB louder).
        mark = len(recorder.data)
        await host.play_tone(440, 1.5)
        await asyncio.sleep(2.1)
        await speaker.play_tone(660, 1.5)
        await asyncio.sleep(2.0)
        heard = recorder.since(mark)
        starts = onsets(heard, threshold_dbfs=-30)
        assert len(starts) == 2, starts
        first, second = (heard[at(t + 0.3) : at(t + 1.2)] for t in starts)
        assert abs(loud_frequency(first) - 440) < 5 and abs(loud_frequency(second) - 660) < 5
        assert -13 < rms_dbfs(first) < -6 and -13 < rms_dbfs(second) < -6, (rms_dbfs(first), rms_dbfs(second))
        mark = len(recorder.data)
        beeps = await host.play_beeps(4, 0.5, hz=1000, beep_ms=80)
        await asyncio.sleep(beeps[-1] - beeps[0] + 1.0)
        assert len(onsets(recorder.since(mark), threshold_dbfs=-30)) == 4
        await recorder.close()

        # The guest speaks: both people hear it.
        await playback.start()
        since = {p.name: await p.clock() for p in (host, speaker)}
        await playback.write(tone(550, 1.5))
        await asyncio.sleep(1.0)
        for p in (host, speaker):
            _, samples = await p.heard_since(since[p.name])
            assert abs(loud_frequency(to_pcm(samples)) - 550) < 5, p.name

        # Ctrl+Shift+M mutes: the button says so, the room hears it, the people hear nothing.
        await page.keyboard.press("Control+Shift+M")
        mic = page.locator("#microphone-button")
        assert await mic.get_attribute("title") == "Unmute mic"
        await room.wait_until(lambda r: GUEST in r.events("mic_off"), 3)
        await asyncio.sleep(0.3)
        since_muted = await host.clock()
        await playback.write(tone(550, 1.0))
        await asyncio.sleep(1.0)
        _, samples = await host.heard_since(since_muted)
        assert rms_dbfs(to_pcm(samples)) < -50
        await mic.click()
        assert await mic.get_attribute("title") == "Mute mic"

        # Removed by the host.
        await room.remove(GUEST)
        title = page.locator("#calling-retry-screen-title")
        await title.wait_for(state="visible", timeout=5_000)
        assert (await title.inner_text()).strip() == "You\u2019ve been removed from this meeting"
        assert await page.locator('[data-tid="calling-retry-cancelbutton"]').is_visible()
    finally:
        await playback.close()
        await capture.close()
        await speaker.close()
        await host.close()


@pytest.mark.browser
@pytest.mark.pulse
async def test_denied_ended_cancelled_left_and_alerts(
    replica: Replica, browsers: Browsers, page: Page
) -> None:
    thread, room = lobby_meeting(
        replica, "ends", denial_text=DENIED_DECLINED, alerts=True, alert_every_ms=400, alert_ms=300
    )
    host = await person(replica, browsers, thread, "Host", host=True)
    try:

        async def ask() -> None:
            await to_prejoin(page, meetup_join_url(thread))
            await page.locator('[data-tid="prejoin-display-name-input"]').fill(GUEST)
            await page.locator('[data-tid="prejoin-join-button"]').click()
            await room.wait_for(GUEST, "waiting", 5)

        # Denied.
        await ask()
        await room.deny(GUEST)
        await page.get_by_text(DENIED_DECLINED).wait_for(state="visible", timeout=5_000)
        await page.locator('[data-tid="calling-retry-cancelbutton"]').click()
        # Cancelled from the lobby: the room sees the guest leave.
        await ask()
        await page.locator('[data-tid="prejoin-cancel-button"]').click()
        await room.wait_for(GUEST, "left", 5)
        # Admitted: alerts come and go, and are not an end; Leave (with its confirmation) leaves.
        replica.options(thread, alerts=True, alert_every_ms=400, alert_ms=300, leave_confirm=True)
        await ask()
        await room.admit(GUEST)
        alert = page.locator('[role="alert"]')
        await alert.first.wait_for(state="visible", timeout=3_000)
        await alert.first.wait_for(state="detached", timeout=3_000)
        assert await page.locator("#hangup-button").is_visible()
        goodbyes = len(room.events("goodbye"))
        await page.locator("#hangup-button").click()
        await page.get_by_role("dialog").get_by_role("button", name="Leave", exact=True).click()
        await page.get_by_text(LEFT).wait_for(state="visible", timeout=5_000)
        await room.wait_until(lambda r: len(r.events("goodbye")) > goodbyes, 5)
        # The host ends the meeting.
        replica.options(thread)
        await ask()
        await room.admit(GUEST)
        await page.locator("#hangup-button").wait_for(state="visible", timeout=5_000)
        await room.end()
        await page.get_by_text(MEETING_ENDED).wait_for(state="visible", timeout=5_000)
        assert not await page.locator("#hangup-button").is_visible()
    finally:
        await host.close()


@pytest.mark.browser
@pytest.mark.pulse
async def test_refusals_sign_in_org_policy_captcha_not_found_and_no_audio(
    replica: Replica, browsers: Browsers, page: Page
) -> None:
    # Sign-in required: the client redirects to Microsoft's sign-in page.
    thread = teams_thread("sign-in")
    replica.room(thread).configure(sign_in_required=True)
    await page.goto(meetup_join_url(thread))
    await page.locator('[data-tid="joinOnWeb"]').click()
    await page.locator('input[name="loginfmt"]').wait_for(state="visible", timeout=10_000)
    assert urlsplit(page.url).netloc == "login.microsoftonline.com"

    async def join_now(url: str) -> None:
        await to_prejoin(page, url)
        await page.locator('[data-tid="prejoin-display-name-input"]').fill(GUEST)
        await page.locator('[data-tid="prejoin-join-button"]').click()

    # The same by org policy: a text after "Join now".
    replica.options(thread, sign_in="org_policy")
    await join_now(meetup_join_url(thread))
    await page.get_by_text(SIGN_IN_ORG_POLICY).wait_for(state="visible", timeout=5_000)
    # A captcha.
    thread = teams_thread("captcha")
    replica.room(thread).configure(captcha=True)
    await join_now(meetup_join_url(thread))
    await page.get_by_text(CAPTCHA).wait_for(state="visible", timeout=5_000)
    # An unknown meeting, from a /meet/ link on teams.live.com.
    replica.room("9300000000001").configure(exists=False)
    await page.goto(meet_url("9300000000001", "Zz9"))
    await page.locator('[data-tid="joinOnWeb"]').click()
    await page.get_by_text(NOT_FOUND).wait_for(state="visible", timeout=10_000)
    # "Don't use audio": in the call, but no audio either way.
    room = replica.room("9300000000002")
    replica.options("9300000000002", audio_default="none")
    await join_now(meet_url("9300000000002", "Ab3"))
    await page.locator("#hangup-button").wait_for(state="visible", timeout=5_000)
    assert room.events("joined") == [GUEST] and room.events("audio") == []
    # Trusted Types: HTML strings are refused, and so is a string evaluated as code.
    refused = await page.evaluate(
        "() => { try { document.body.insertAdjacentHTML('beforeend', '<b>x</b>'); return 'taken'; }"
        " catch (e) { return e.name; } }"
    )
    assert refused == "TypeError"
    # Playwright evaluates the expression at once, then again on every poll: from the page, where Trusted
    # Types refuse it (an arrow function is evaluated once and kept).
    later = "() => { document.title = 'now'; setTimeout(() => { document.title = 'later'; }, 300); }"
    await page.evaluate(later)
    with pytest.raises(PlaywrightError, match="EvalError"):
        await page.wait_for_function("document.title === 'later'", timeout=2_000)
    await page.evaluate(later)
    assert await page.wait_for_function("() => document.title === 'later'", timeout=2_000)


async def test_the_teams_hosts_are_mapped_to_the_replica_and_people_join_there(replica: Replica) -> None:
    rules = replica.server.host_resolver_rules
    for host in ("teams.microsoft.com", "teams.live.com", "login.microsoftonline.com"):
        assert f"MAP {host} 127.0.0.1:{replica.server.port}" in rules
    assert PLATFORM_HOSTS["teams"] == "teams.microsoft.com"
    thread = teams_thread("people")
    url = Participant(replica.server, "teams", thread, name="Host").url
    assert url.startswith(
        "https://teams.microsoft.com/_replica/participant?platform=teams&room=19%3Ameeting_"
    )
