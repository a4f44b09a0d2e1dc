"""The Teams adapter against the Teams replica in real Chromium: the launcher and its deep link, the pre-join,
the modal, every lobby wording, every refusal, every end, leaving, and audio both ways.

One replica server and one bot browser (headful on its own display, OS-level input: the launcher's deep
link swallows exactly that input) with its PulseAudio devices serve the module, a distinct meeting per
test: each test's adapter leaves to `about:blank`, so the next one starts from an empty page, as starting a
browser per test would only cost time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from bot.audio import AudioDevices
from bot.browser.launch import BotBrowser
from bot.meeting_urls import MeetingUrl, parse_meeting_url
from bot.outcome import CallState, EndReason, FailureCode
from bot.platforms import platform_class
from bot.platforms.base import JoinFailure
from bot.platforms.policies import CallPolicy, JoinPolicy
from bot.platforms.teams import TeamsPlatform, remove_deep_links
from bot.platforms.teams_ui import Screen
from bot.system.processes import descendants
from bot.testing.participant import Participant
from bot.testing.replica.room import Room
from bot.testing.replica.teams_pages import (
    CAPTCHA,
    DENIED_DECLINED,
    DENIED_SORRY,
    LOBBY_SHORTLY,
    LOBBY_SHOULD,
    LOBBY_SOON,
    LOBBY_TIMEOUT,
    NOT_FOUND,
    SIGN_IN_ORG_POLICY,
    SIGN_IN_VERIFY,
    TeamsPages,
    meet_url,
    meetup_join_url,
)
from tests.adapter_support import (
    PlatformReplica,
    artifacts_show,
    audio_both_ways,
    eventually,
    module_replica,
    running,
    teams_thread,
)
from tests.cluster_support import KEPT_TREES

pytestmark = [pytest.mark.pulse, pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

NAME = "Millis Bot"
FAST = JoinPolicy(ui_timeout_s=10)


Replica = PlatformReplica[TeamsPages]


replica = module_replica(TeamsPages)


@dataclass
class Parts:
    devices: AudioDevices
    browser: BotBrowser


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def parts(replica: Replica, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Parts]:
    """The bot's devices and browser, kept for the module: conftest's leftover check leaves their process
    trees alone until the module is done."""
    before = descendants()
    devices = AudioDevices()
    browser = BotBrowser(replica.server.browser_section(), tmp_path_factory.mktemp("teams-bot") / "artifacts")
    kept: set[int] = set()
    try:
        await devices.start()
        await browser.start(devices.browser)
        kept = descendants() - before
        KEPT_TREES.update(kept)
        yield Parts(devices, browser)
    finally:
        await browser.close()
        await devices.close()
        KEPT_TREES.difference_update(kept)


@dataclass
class Bot:
    """One join's adapter on the module's browser, and every state it reported."""

    parts: Parts
    states: list[CallState] = field(default_factory=list)
    teams: TeamsPlatform | None = None

    def open(self, meeting: MeetingUrl) -> TeamsPlatform:
        self.teams = TeamsPlatform(self.parts.browser, meeting, poll_s=0.1)
        return self.teams

    async def join(self, meeting: MeetingUrl, policy: JoinPolicy = FAST) -> TeamsPlatform:
        teams = self.open(meeting)
        await teams.join(NAME, policy, self.states.append)
        return teams

    async def join_fails(self, meeting: MeetingUrl, policy: JoinPolicy = FAST) -> JoinFailure:
        with pytest.raises(JoinFailure) as caught:
            await self.join(meeting, policy)
        return caught.value


@pytest_asyncio.fixture(loop_scope="module")
async def bot(parts: Parts) -> AsyncIterator[Bot]:
    b = Bot(parts)
    try:
        yield b
    finally:
        if b.teams is not None:
            await asyncio.wait_for(b.teams.leave(), 10)


def link(thread: str) -> MeetingUrl:
    """The meeting's link as an invite writes it, parsed as the bot parses it."""
    return parse_meeting_url(meetup_join_url(thread))


async def in_lobby(bot: Bot, room: Room) -> None:
    await room.wait_for(NAME, "waiting", 20)
    assert await eventually(lambda: CallState.AWAITING_ADMISSION in bot.states, 5)


# ---- joining --------------------------------------------------------------------------------------------


async def test_registered_by_name() -> None:
    assert platform_class("teams") is TeamsPlatform


async def test_launcher_prejoin_lobby_then_admitted_with_mic_on_and_camera_off(
    bot: Bot, replica: Replica
) -> None:
    """The whole way in by trusted input: the launcher (its deep link removed as it came), the pre-join
    (name typed, camera turned off, microphone left on), the lobby, admission."""
    thread = teams_thread("admitted")
    room = replica.room(thread)
    room.configure(lobby=True)
    async with running(bot.join(link(thread))) as join:
        await in_lobby(bot, room)
        await asyncio.sleep(1.0)  # the lobby keeps the pre-join page and its "Join now": still waiting
        assert not join.done() and bot.teams is not None and bot.teams.screen is Screen.LOBBY
        assert bot.states == [CallState.JOINING, CallState.AWAITING_ADMISSION]
        await room.admit(NAME)
        teams = await asyncio.wait_for(join, 10)
    assert bot.states == [CallState.JOINING, CallState.AWAITING_ADMISSION, CallState.IN_CALL]
    info = await room.wait_for(NAME, "in_call", 5)
    assert info.name == NAME
    page = teams.page
    assert await page.locator('#microphone-button[aria-label="Mute mic"]').count() == 1  # mic on
    assert await page.locator('#video-button[aria-label="Turn camera on"]').count() == 1  # camera off
    assert await page.locator('iframe[src^="msteams:"]').count() == 0
    # Every step was a person's input: the launcher's button took the click, the name took real keys.
    assert replica.pages.launches[-1]["conversationId"] == thread


async def test_deep_link_frame_is_removed_from_its_own_world_and_trusted_clicks_land(
    parts: Parts, replica: Replica
) -> None:
    """The launcher as it loads: its msteams: frame is gone before anything is clicked (the page's own
    scripts see no global of ours), and a trusted click on "Continue on this browser" takes the bot on."""
    page = parts.browser.page
    session = await remove_deep_links(page)
    try:
        await page.goto(meetup_join_url(teams_thread("deep-link")))
        assert await page.locator('[data-tid="joinOnWeb"]').is_visible()
        assert await page.locator("iframe#teamsLauncher").count() == 0
        await parts.browser.hands.click(page.locator('[data-tid="joinOnWeb"]'), timeout_s=5)
        await page.wait_for_url("**/light-meetings/launch?**", timeout=10_000)
    finally:
        await session.detach()
        await page.goto("about:blank")


@pytest.mark.parametrize("text", [LOBBY_SHORTLY, LOBBY_SOON, LOBBY_SHOULD, "not started"])
async def test_every_lobby_wording_is_awaiting_admission(bot: Bot, replica: Replica, text: str) -> None:
    thread = teams_thread(f"lobby-{text}")
    room = replica.room(thread)
    room.configure(lobby=True, host_present=text != "not started")
    if text != "not started":
        replica.options(thread, lobby_text=text)
    async with running(bot.join(link(thread))) as join:
        await room.wait_for(NAME, "waiting" if text != "not started" else "host_absent", 20)
        assert await eventually(lambda: bot.teams is not None and bot.teams.screen is Screen.LOBBY, 5)
        assert bot.states == [CallState.JOINING, CallState.AWAITING_ADMISSION]
        assert not join.done()


async def test_meet_link_modal_twice_and_audio_turned_on(bot: Bot, replica: Replica) -> None:
    """A /meet/ link with its passcode; the modal before and after "Join now"; a pre-join that starts on
    "Don't use audio", microphone off: the bot chooses Computer audio and turns the microphone on."""
    meeting = parse_meeting_url(meet_url("9312345678901", "Ab3xY9"))
    room = replica.room(meeting.meeting_id)
    room.configure(passcode="Ab3xY9")
    replica.options(meeting.meeting_id, av_modal="both", audio_default="none", mic_on=False, camera_on=False)
    teams = await bot.join(meeting)
    assert bot.states == [CallState.JOINING, CallState.IN_CALL]
    await room.wait_for(NAME, "in_call", 5)
    assert await teams.page.locator('#microphone-button[aria-label="Mute mic"]').count() == 1
    assert replica.pages.launches[-1].get("meetingCode") == meeting.meeting_id


@pytest.mark.parametrize("text", [DENIED_SORRY, DENIED_DECLINED])
async def test_denied_is_exit_10_with_artifacts(bot: Bot, replica: Replica, text: str) -> None:
    thread = teams_thread(f"denied-{text}")
    room = replica.room(thread)
    room.configure(lobby=True)
    replica.options(thread, denial_text=text)
    join = asyncio.create_task(bot.join_fails(link(thread)))
    await in_lobby(bot, room)
    await room.deny(NAME)
    failure = await asyncio.wait_for(join, 10)
    assert failure.code is FailureCode.DENIED and not failure.retryable
    assert CallState.IN_CALL not in bot.states
    artifacts_show(failure, text)


async def test_teams_lobby_timeout_is_not_a_denial(bot: Bot, replica: Replica) -> None:
    thread = teams_thread("teams-timeout")
    room = replica.room(thread)
    room.configure(lobby=True)
    join = asyncio.create_task(bot.join_fails(link(thread)))
    await in_lobby(bot, room)
    await room.time_out_lobby(NAME)
    failure = await asyncio.wait_for(join, 10)
    assert failure.code is FailureCode.LOBBY_TIMEOUT
    artifacts_show(failure, LOBBY_TIMEOUT)


async def test_own_lobby_bound_withdraws_with_cancel(bot: Bot, replica: Replica) -> None:
    thread = teams_thread("own-timeout")
    replica.room(thread).configure(lobby=True)
    failure = await bot.join_fails(link(thread), JoinPolicy(lobby_timeout_s=1.5, ui_timeout_s=10))
    assert failure.code is FailureCode.LOBBY_TIMEOUT
    assert bot.states == [CallState.JOINING, CallState.AWAITING_ADMISSION]
    artifacts_show(failure, LOBBY_SHORTLY)
    await replica.room(thread).wait_for(NAME, "left", 5)  # Cancel: the host is no longer asked


@pytest.mark.parametrize(
    ("setup", "code", "text"),
    [
        ({"sign_in_required": True}, FailureCode.SIGN_IN_REQUIRED, 'name="loginfmt"'),
        (
            {"sign_in_required": True, "sign_in": "org_policy"},
            FailureCode.SIGN_IN_REQUIRED,
            SIGN_IN_ORG_POLICY,
        ),
        ({"sign_in_required": True, "sign_in": "verify_info"}, FailureCode.SIGN_IN_REQUIRED, SIGN_IN_VERIFY),
        ({"captcha": True}, FailureCode.CAPTCHA, CAPTCHA),
        ({"exists": False}, FailureCode.NOT_FOUND, NOT_FOUND),
    ],
)
async def test_refusals_are_typed_at_once_with_artifacts(
    bot: Bot, replica: Replica, setup: dict[str, object], code: FailureCode, text: str
) -> None:
    thread = teams_thread(f"refused-{sorted(setup.items())}")
    client = {k: v for k, v in setup.items() if k == "sign_in"}
    if client:
        replica.options(thread, **client)
    replica.room(thread).configure(**{k: v for k, v in setup.items() if k != "sign_in"})
    started = time.monotonic()
    failure = await bot.join_fails(link(thread))
    assert failure.code is code and not failure.retryable
    assert bot.states == [CallState.JOINING]
    assert time.monotonic() - started < 20  # recognised, not timed out
    artifacts_show(failure, text)


async def test_unknown_page_is_ui_changed(bot: Bot, replica: Replica) -> None:
    meeting = MeetingUrl("teams", "https://teams.microsoft.com/no-such-page", "nowhere")
    failure = await bot.join_fails(meeting, JoinPolicy(ui_stuck_s=2.0))
    assert failure.code is FailureCode.UI_CHANGED
    assert "no Teams screen the bot knows for 2 s" in failure.message
    artifacts_show(failure, "Not Found")


# ---- in the call ----------------------------------------------------------------------------------------


async def in_call(bot: Bot, replica: Replica, tag: str, **options: object) -> tuple[TeamsPlatform, Room]:
    thread = teams_thread(tag)
    if options:
        replica.options(thread, **options)
    teams = await bot.join(link(thread))
    room = replica.room(thread)
    await room.wait_for(NAME, "in_call", 5)
    return teams, room


@pytest.mark.parametrize(("action", "reason"), [("remove", EndReason.REMOVED), ("end", EndReason.CALL_ENDED)])
async def test_removed_or_ended(bot: Bot, replica: Replica, action: str, reason: EndReason) -> None:
    teams, room = await in_call(bot, replica, f"end-{action}")
    waiting = asyncio.create_task(teams.wait_for_end(CallPolicy(alone_after_s=60)))
    try:
        await asyncio.sleep(0.5)
        await (room.remove(NAME) if action == "remove" else room.end())
        assert await asyncio.wait_for(waiting, 10) is reason
    finally:
        waiting.cancel()


async def test_muted_in_the_call_is_unmuted_again_and_checked(bot: Bot, replica: Replica) -> None:
    """Someone mutes the bot (here: its own microphone button, clicked by the page): the next readings of
    the call see it and unmute, and the microphone reads on again."""
    teams, _ = await in_call(bot, replica, "muted")
    mic = teams.page.locator("#microphone-button")
    waiting = asyncio.create_task(teams.wait_for_end(CallPolicy(alone_after_s=60)))
    try:
        await mic.evaluate("(el) => el.click()")
        assert await mic.get_attribute("aria-label") == "Unmute mic"
        for _ in range(50):
            if await mic.get_attribute("aria-label") == "Mute mic":
                break
            await asyncio.sleep(0.1)
        assert await mic.get_attribute("aria-label") == "Mute mic"
        assert not waiting.done()
    finally:
        waiting.cancel()


async def test_alert_toasts_are_never_an_end(bot: Bot, replica: Replica) -> None:
    """Toasts every 0.3 s, one saying a participant was removed: the call runs to the bot's own bound."""
    teams, _ = await in_call(bot, replica, "alerts", alerts=True, alert_every_ms=300, alert_ms=250)
    policy = CallPolicy(alone_after_s=60, max_duration_s=4.0)
    assert await asyncio.wait_for(teams.wait_for_end(policy), 15) is EndReason.MAX_DURATION


async def test_alone_then_leaves_through_hang_up_and_its_confirmation(bot: Bot, replica: Replica) -> None:
    teams, room = await in_call(bot, replica, "alone", leave_confirm=True)
    started = time.monotonic()
    assert await asyncio.wait_for(teams.wait_for_end(CallPolicy(alone_after_s=1.5)), 10) is EndReason.ALONE
    assert 1.5 <= time.monotonic() - started < 6
    await asyncio.wait_for(teams.leave(), 10)
    await room.wait_for(NAME, "left", 5)
    await teams.leave()  # idempotent


# ---- audio ---------------------------------------------------------------------------------------------


async def test_audio_both_ways_with_a_participant(bot: Bot, replica: Replica) -> None:
    """The agent's voice reaches the others through the bot's microphone; theirs reach the bot once."""
    thread = teams_thread("audio")
    replica.options(thread, audio_processing=False)
    host = Participant(replica.server, "teams", thread, name="Host", host=True)
    await host.start()
    try:
        teams = await bot.join(link(thread))
        await replica.room(thread).wait_for(NAME, "in_call", 5)
        waiting = asyncio.create_task(teams.wait_for_end(CallPolicy(alone_after_s=1.0)))
        try:
            await audio_both_ways(bot.parts.devices, host)
            assert not waiting.done()  # with someone else in the call the bot is not alone
        finally:
            waiting.cancel()
    finally:
        await host.close()
