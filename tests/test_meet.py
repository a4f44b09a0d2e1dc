"""The Meet adapter against the Meet replica in real Chromium: every join path, every end, audio both ways.

One replica server for the module (a distinct meeting code per test); each test gets its own PulseAudio
devices and its own bot browser, as a real bot would.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from bot.audio import AudioDevices, PcmCapture, PcmPlayback
from bot.audio.analysis import tone
from bot.audio.streams import wait_for_streams
from bot.browser.launch import BotBrowser
from bot.meeting_urls import MeetingUrl, parse_meeting_url
from bot.outcome import CallState, EndReason, FailureCode
from bot.platforms.base import JoinFailure
from bot.platforms.meet import MeetPlatform
from bot.platforms.meet_ui import Screen
from bot.platforms.policies import CallPolicy, JoinPolicy
from bot.testing.participant import Participant, to_pcm
from bot.testing.replica.meet_pages import CALL_ENDED, HOST_ENDED, MeetPages
from bot.testing.replica.room import Room
from tests.adapter_support import (
    PlatformReplica,
    artifacts_show,
    bot_parts,
    eventually,
    module_replica,
    running,
)
from tests.bridge_support import loud_frequency

pytestmark = [pytest.mark.pulse, pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

NAME = "Millis Bot"
FAST = JoinPolicy(ui_timeout_s=10)


def new_code(tag: str) -> str:
    """A distinct, valid meeting code (abc-defg-hij) per test."""
    letters = "".join(chr(ord("a") + b % 26) for b in hashlib.sha256(tag.encode()).digest()[:10])
    return f"{letters[:3]}-{letters[3:7]}-{letters[7:]}"


Replica = PlatformReplica[MeetPages]


replica = module_replica(MeetPages)


@dataclass
class Bot:
    """One bot's devices, browser and adapter, and every state it reported."""

    devices: AudioDevices
    browser: BotBrowser
    states: list[CallState] = field(default_factory=list)
    meet: MeetPlatform | None = None

    async def open(self, code: str, **adapter: float) -> MeetPlatform:
        await self.browser.start(self.devices.browser)
        url = parse_meeting_url(f"https://meet.google.com/{code}")
        self.meet = MeetPlatform(self.browser, url, poll_s=0.1, **adapter)  # type: ignore[arg-type]
        return self.meet

    async def join(self, code: str, policy: JoinPolicy = FAST, **adapter: float) -> MeetPlatform:
        meet = self.meet or await self.open(code, **adapter)
        await meet.join(NAME, policy, self.states.append)
        return meet

    async def join_fails(self, code: str, policy: JoinPolicy = FAST, **adapter: float) -> JoinFailure:
        with pytest.raises(JoinFailure) as caught:
            await self.join(code, policy, **adapter)
        return caught.value


@pytest_asyncio.fixture(loop_scope="module")
async def bot(replica: Replica, tmp_path: Path) -> AsyncIterator[Bot]:
    started = time.monotonic()
    async with bot_parts(replica.server, tmp_path) as (devices, browser):
        b = Bot(devices, browser)
        try:
            yield b
        finally:
            if b.meet is not None:
                await asyncio.wait_for(b.meet.leave(), 10)
    print(f"[meet test took {time.monotonic() - started:.1f} s]")


async def in_lobby(bot: Bot, room: Room) -> None:
    """The room has the bot waiting and the bot has said so (it reads the page every poll)."""
    await room.wait_for(NAME, "waiting", 10)
    assert await eventually(lambda: CallState.AWAITING_ADMISSION in bot.states, 5)


async def people_count(meet: MeetPlatform) -> str:
    """The count on the People button, as a person reads it (moving the pointer shows the control bar)."""
    await meet.page.mouse.move(300, 300)
    await meet.page.mouse.move(320, 320)
    people = meet.page.locator('[role="button"][aria-haspopup="dialog"][aria-label="People"]')
    return (await people.locator(".badge").inner_text()).strip()


async def page_text(meet: MeetPlatform) -> str:
    return str(await meet.page.evaluate("() => document.body.innerText"))


# ---- joining --------------------------------------------------------------------------------------------


async def test_open_meeting_join_now_dismisses_popup_and_keeps_mic_on(bot: Bot, replica: Replica) -> None:
    code = new_code("join-now")
    started = time.monotonic()
    meet = await bot.join(code)
    took = time.monotonic() - started
    assert bot.states == [CallState.JOINING, CallState.IN_CALL]
    assert (await replica.room(code).wait_for(NAME, "in_call", 5)).name == NAME
    page = meet.page
    assert await page.title() == f"Meet \u2013 {code}"
    assert page.url == f"https://meet.google.com/{code}"  # the pre-join query string is gone
    # The agent speaks through the mic: on. The bot has no camera picture to show: off.
    assert await page.locator('#call [aria-label="Turn off microphone"]').count() == 1
    assert await page.locator('#call [aria-label="Turn on camera"]').count() == 1
    assert await people_count(meet) == "1"  # the bot alone in an open meeting
    assert took < 15  # the default hands are a person's: about 4 s of moving, clicking and typing
    await meet.leave()
    await replica.room(code).wait_for(NAME, "left", 5)
    await meet.leave()  # idempotent


async def test_lobby_reports_awaiting_and_only_admission_reports_in_call(bot: Bot, replica: Replica) -> None:
    code = new_code("lobby-admit")
    room = replica.room(code)
    room.config.lobby = True
    async with running(bot.join(code)) as join:
        await in_lobby(bot, room)
        await asyncio.sleep(1.5)  # the lobby shows "Leave call", toggles and a self tile: still waiting
        assert not join.done()
        assert bot.states == [CallState.JOINING, CallState.AWAITING_ADMISSION]
        assert bot.meet is not None and bot.meet.screen is Screen.LOBBY
        assert "Asking to be let in" in await page_text(bot.meet)
        await room.admit(NAME)
        await asyncio.wait_for(join, 5)
    assert bot.states == [CallState.JOINING, CallState.AWAITING_ADMISSION, CallState.IN_CALL]


async def test_denied_in_lobby_is_denied_with_artifacts(bot: Bot, replica: Replica) -> None:
    code = new_code("lobby-deny")
    room = replica.room(code)
    room.config.lobby = True
    join = asyncio.create_task(bot.join_fails(code))
    await in_lobby(bot, room)
    await room.deny(NAME)
    failure = await asyncio.wait_for(join, 5)
    assert failure.code is FailureCode.DENIED and not failure.retryable
    assert bot.states == [CallState.JOINING, CallState.AWAITING_ADMISSION]
    artifacts_show(failure, "Someone in the call denied your request to join")


async def test_meets_lobby_timeout_is_not_a_denial(bot: Bot, replica: Replica) -> None:
    code = new_code("lobby-timeout")
    room = replica.room(code)
    room.config.lobby = True
    join = asyncio.create_task(bot.join_fails(code))
    await in_lobby(bot, room)
    await room.time_out_lobby(NAME)  # same "You can't join this call" heading as a denial
    failure = await asyncio.wait_for(join, 5)
    assert failure.code is FailureCode.LOBBY_TIMEOUT
    artifacts_show(failure, "No one responded to your request to join the call")


async def test_own_lobby_bound_withdraws_the_request(bot: Bot, replica: Replica) -> None:
    code = new_code("lobby-own-bound")
    replica.room(code).config.lobby = True
    failure = await bot.join_fails(code, JoinPolicy(lobby_timeout_s=1.0, ui_timeout_s=10))
    assert failure.code is FailureCode.LOBBY_TIMEOUT
    artifacts_show(failure, "Asking to be let in")
    # It clicked "Leave call" in the lobby: the host is no longer asked to let it in.
    await replica.room(code).wait_for(NAME, "left", 5)


async def test_waiting_for_the_host_then_host_arrives(bot: Bot, replica: Replica) -> None:
    code = new_code("host-arrives")
    room = replica.room(code)
    room.config.host_present = False
    async with running(bot.join(code)) as join:
        await room.wait_for(NAME, "host_absent", 10)
        assert await eventually(lambda: CallState.AWAITING_ADMISSION in bot.states, 5)
        assert not join.done()
        await room.start_host()
        await asyncio.wait_for(join, 5)
    assert bot.states == [CallState.JOINING, CallState.AWAITING_ADMISSION, CallState.IN_CALL]


async def test_host_never_arrives_is_host_absent(bot: Bot, replica: Replica) -> None:
    code = new_code("host-absent")
    replica.room(code).config.host_present = False
    failure = await bot.join_fails(code, JoinPolicy(host_absent_timeout_s=1.0, ui_timeout_s=10))
    assert failure.code is FailureCode.HOST_ABSENT
    artifacts_show(failure, "Waiting for the host to join")
    await replica.room(code).wait_for(NAME, "left", 5)  # it withdrew


@pytest.mark.parametrize(
    ("config", "code_expected", "text"),
    [
        ({"blocked": True}, FailureCode.BLOCKED, "join this video call"),
        ({"sign_in_required": True}, FailureCode.SIGN_IN_REQUIRED, "Use your Google Account"),
        ({"exists": False}, FailureCode.NOT_FOUND, "Check your meeting code"),
    ],
)
async def test_refusals_are_typed_with_artifacts(
    bot: Bot, replica: Replica, config: dict[str, bool], code_expected: FailureCode, text: str
) -> None:
    code = new_code(f"refused-{code_expected.value}")
    replica.room(code).configure(**config)
    started = time.monotonic()
    failure = await bot.join_fails(code)
    assert failure.code is code_expected
    assert failure.retryable is (code_expected is FailureCode.BLOCKED)
    assert CallState.IN_CALL not in bot.states
    artifacts_show(failure, text)
    assert time.monotonic() - started < 8  # typed at once, not after a UI timeout


async def test_permission_dialog_muted_start_and_recording_consent(bot: Bot, replica: Replica) -> None:
    code = new_code("dialogs")
    replica.options(code, permission_dialog=True, mic_starts_on=False, recording_notice=True)
    meet = await bot.join(code)
    assert bot.states == [CallState.JOINING, CallState.IN_CALL]
    room = replica.room(code)
    # Media starts only after "Join now" in the recording notice: the room saw the bot's audio.
    assert await eventually(lambda: ("audio", NAME) in [(e, n) for _, e, n in room.log], 5)
    assert await meet.page.locator('#call [aria-label="Turn off microphone"]').count() == 1


async def test_prejoin_without_audio_elements_is_reloaded(bot: Bot, replica: Replica) -> None:
    code = new_code("no-audio")
    replica.options(code, no_audio_loads=1)
    meet = await bot.join(code, audio_reload_s=1.0)
    assert meet.reloads == 1 and replica.pages.loads[code] == 2
    assert bot.states[-1] is CallState.IN_CALL


async def test_unrecognised_page_is_ui_changed(bot: Bot, replica: Replica) -> None:
    meet = await bot.open(new_code("ui-changed"))
    meet.meeting = MeetingUrl("meet", "https://meet.google.com/", "ui-changed")  # the landing page
    failure = await bot.join_fails("", JoinPolicy(ui_stuck_s=1.5))
    assert failure.code is FailureCode.UI_CHANGED
    assert "no Meet screen the bot knows for 1.5 s" in failure.message
    artifacts_show(failure, "Video calls and meetings for everyone")


# ---- in the call ----------------------------------------------------------------------------------------


async def test_got_it_card_on_a_scrim_over_leave_call_is_dismissed_before_leaving(
    bot: Bot, replica: Replica
) -> None:
    """A "Got it" card (not a dialog) on a scrim that takes the click meant for "Leave call": the bot
    clicks the card away and leaves through "Leave call", so the others see a departure."""
    code = new_code("card-over-leave")
    replica.options(code, banner="call")
    meet = await bot.join(code)
    await meet.page.wait_for_selector("#banner >> visible=true")
    started = time.monotonic()
    await meet.leave()
    room = replica.room(code)
    await room.wait_for(NAME, "left", 5)
    assert ("goodbye", NAME) in [(e, n) for _, e, n in room.log], "left by closing the page"
    assert time.monotonic() - started < 3  # within the session's leave budget


async def test_removed(bot: Bot, replica: Replica) -> None:
    code = new_code("removed")
    meet = await bot.join(code)
    await replica.room(code).remove(NAME)
    reason = await asyncio.wait_for(meet.wait_for_end(CallPolicy()), 5)
    assert reason is EndReason.REMOVED


@pytest.mark.parametrize(
    ("notice", "expected"), [(None, EndReason.HOST_ENDED), (CALL_ENDED, EndReason.CALL_ENDED)]
)
async def test_meeting_ended(bot: Bot, replica: Replica, notice: str | None, expected: EndReason) -> None:
    code = new_code(f"ended-{expected.value}")
    replica.options(code, end_notice=notice or HOST_ENDED, controls_hide_ms=500)
    meet = await bot.join(code)
    ended = asyncio.create_task(meet.wait_for_end(CallPolicy()))
    await asyncio.sleep(1.5)  # past the control bar's auto-hide: a hidden Leave button is not an end
    assert await meet.page.locator('#call [aria-label="Leave call"]').is_hidden()
    assert not ended.done()
    await replica.room(code).end()
    assert await asyncio.wait_for(ended, 5) is expected


async def test_max_duration(bot: Bot, replica: Replica) -> None:
    meet = await bot.join(new_code("max-duration"))
    started = time.monotonic()
    reason = await meet.wait_for_end(CallPolicy(max_duration_s=1.0, alone_after_s=60))
    assert reason is EndReason.MAX_DURATION and time.monotonic() - started < 3


# ---- audio and company ----------------------------------------------------------------------------------


async def test_audio_both_ways_then_alone(bot: Bot, replica: Replica) -> None:
    code = new_code("audio")
    host = Participant(replica.server, "meet", code, name="Host")
    await host.start()
    capture = PcmCapture(bot.devices.address, f"{bot.devices.names.meeting_sink}.monitor")
    playback = PcmPlayback(bot.devices.address, bot.devices.names.agent_sink)
    try:
        meet = await bot.join(code)
        watcher = asyncio.create_task(meet.wait_for_end(CallPolicy(alone_after_s=1.0)))

        # The participant speaks: the tone comes out of the bot's meeting sink.
        await capture.start()
        await wait_for_streams(bot.devices.address, [capture.pid])
        await asyncio.sleep(1.0)  # let the peer connection come up
        capture.discard_backlog()
        await host.play_tone(440, 2.0)
        heard = bytearray()
        for _ in range(100):  # 2 s of 20 ms frames
            heard += (await asyncio.wait_for(capture.queue.get(), 5)).data
        assert abs(loud_frequency(bytes(heard)) - 440) < 5

        # The agent speaks into the bot's virtual mic: the participant hears it.
        await playback.start()
        since = await host.clock()
        await playback.write(tone(660, 2.0))
        await asyncio.sleep(0.5)
        _, samples = await host.heard_since(since)
        assert abs(loud_frequency(to_pcm(samples)) - 660) < 5

        # Two in the call: not alone. The participant leaves: alone after alone_after_s.
        assert await people_count(meet) == "2"
        assert not watcher.done()
        left_at = time.monotonic()
        await host.leave()
        assert await asyncio.wait_for(watcher, 5) is EndReason.ALONE
        assert time.monotonic() - left_at >= 1.0
    finally:
        await playback.close()
        await capture.close()
        await host.close()
