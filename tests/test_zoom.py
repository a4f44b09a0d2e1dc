"""The Zoom adapter against the Zoom replica in real Chromium: every join path, every end, audio both ways.

One replica server for the module (distinct meeting ids per test); each test gets its own PulseAudio
devices and its own bot browser, as a real bot would.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import WebSocket

from bot.audio import AudioDevices
from bot.browser.launch import BotBrowser
from bot.meeting_urls import MeetingUrl, parse_meeting_url
from bot.outcome import CallState, EndReason, FailureCode
from bot.platforms.base import JoinFailure
from bot.platforms.policies import CallPolicy, JoinPolicy
from bot.platforms.zoom import ZoomPlatform
from bot.testing.participant import Participant
from bot.testing.replica.room import Room
from bot.testing.replica.zoom_pages import ZoomClientOptions, ZoomPages
from tests.adapter_support import (
    PlatformReplica,
    artifacts_show,
    audio_both_ways,
    bot_parts,
    replica_server,
    running,
)

pytestmark = [pytest.mark.pulse, pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

NAME = "Millis Bot"
_ids = itertools.count(8_100_000_001)


def new_id() -> str:
    return str(next(_ids))


Replica = PlatformReplica[ZoomPages]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def replica() -> AsyncIterator[Replica]:
    async with replica_server() as server:
        yield Replica(server, next(p for p in server.pages if isinstance(p, ZoomPages)))


@dataclass
class Bot:
    """One bot's devices, browser and adapter, and every state it reported."""

    devices: AudioDevices
    browser: BotBrowser
    replica: Replica
    states: list[CallState] = field(default_factory=list)
    sockets: list[WebSocket] = field(default_factory=list)  # the page's WebSockets (the room connection)
    zoom: ZoomPlatform | None = None

    async def open(self, meeting: MeetingUrl, host_retry_s: float = 15.0) -> ZoomPlatform:
        page = await self.browser.start(self.devices.browser)
        page.on("websocket", lambda ws: self.sockets.append(ws))
        self.zoom = ZoomPlatform(self.browser, meeting, poll_s=0.1, host_retry_s=host_retry_s)
        return self.zoom

    async def join(
        self, meeting: MeetingUrl, policy: JoinPolicy | None = None, host_retry_s: float = 15.0
    ) -> ZoomPlatform:
        zoom = await self.open(meeting, host_retry_s)
        await zoom.join(NAME, policy or JoinPolicy(ui_timeout_s=10), self.states.append)
        return zoom

    async def join_fails(
        self, meeting: MeetingUrl, policy: JoinPolicy | None = None, host_retry_s: float = 15.0
    ) -> JoinFailure:
        """Joins expecting a typed failure (which carries the artifacts the adapter had saved)."""
        with pytest.raises(JoinFailure) as caught:
            await self.join(meeting, policy, host_retry_s)
        return caught.value


@pytest_asyncio.fixture(loop_scope="module")
async def bot(replica: Replica, tmp_path: Path) -> AsyncIterator[Bot]:
    async with bot_parts(replica.server, tmp_path) as (devices, browser):
        b = Bot(devices, browser, replica)
        try:
            yield b
        finally:
            if b.zoom is not None:
                await asyncio.wait_for(b.zoom.leave(), 10)


def wc(meeting_id: str, query: str = "", passcode: str | None = None) -> MeetingUrl:
    """A web-client link as `parse_meeting_url` makes it (used when a test needs a form it never emits)."""
    suffix = f"?{query}" if query else ""
    return MeetingUrl("zoom", f"https://app.zoom.us/wc/{meeting_id}/join{suffix}", meeting_id, passcode)


# ---- joining --------------------------------------------------------------------------------------------


async def test_invite_link_is_rewritten_and_joins_keeping_pwd_and_tk(bot: Bot, replica: Replica) -> None:
    meeting_id = new_id()
    replica.room(meeting_id).config.passcode = "s3cr3T.9"
    url = parse_meeting_url(f"https://us02web.zoom.us/j/{meeting_id}?uname=x&pwd=s3cr3T.9&tk=AbC-123_x.y")
    started = time.monotonic()
    await bot.join(url)
    took = time.monotonic() - started
    assert bot.states == [CallState.JOINING, CallState.IN_CALL]
    info = await replica.room(meeting_id).wait_for(NAME, "in_call", 5)
    assert info.name == NAME
    visits = [v for v in replica.pages.visits if v.meeting_id == meeting_id]
    assert visits[0].query == {"pwd": "s3cr3T.9", "tk": "AbC-123_x.y"}  # uname dropped, pwd and tk intact
    assert took < 15  # the default hands are a person's: about 4 s of moving, clicking and typing


async def test_personal_link_goes_through_the_launch_page(bot: Bot, replica: Replica) -> None:
    url = parse_meeting_url("https://us02web.zoom.us/my/zoom.replica?pwd=abc")
    assert "/my/" in url.join_url  # only Zoom resolves personal names: the launch page must be used
    replica.pages.options[url.meeting_id] = ZoomClientOptions(cookie_banner=False, permission_prompts=1)
    replica.room(url.meeting_id).config.passcode = "abc"
    await bot.join(url)
    assert bot.states[-1] is CallState.IN_CALL
    await replica.room(url.meeting_id).wait_for(NAME, "in_call", 5)
    paths = [v.path for v in replica.pages.visits if v.meeting_id == url.meeting_id]
    assert paths == [f"/wc/{url.meeting_id}/join"]  # reached through /wc/join/<id>'s redirect


async def test_client_inside_the_pwa_frame_joins(bot: Bot, replica: Replica) -> None:
    meeting_id = new_id()
    replica.pages.options[meeting_id] = ZoomClientOptions(audio_dialog=True)
    zoom = await bot.join(wc(meeting_id, "fromPWA=1"))
    assert bot.states == [CallState.JOINING, CallState.IN_CALL]
    assert zoom.page.main_frame.child_frames, "the client should have run inside iframe#webclient"
    room = replica.room(meeting_id)
    await room.wait_for(NAME, "in_call", 5)
    # "Join Audio by Computer" was clicked inside the frame: the bot joined the audio mesh.
    assert ("audio", NAME) in [(event, name) for _, event, name in room.log]


async def test_passcode_is_typed_and_terms_ticked_when_the_page_asks(bot: Bot, replica: Replica) -> None:
    meeting_id = new_id()
    replica.room(meeting_id).config.passcode = "778899"
    replica.pages.options[meeting_id] = ZoomClientOptions(terms=True)
    await bot.join(wc(meeting_id, passcode="778899"))
    assert bot.states[-1] is CallState.IN_CALL


async def test_only_real_typing_enables_join(bot: Bot, replica: Replica) -> None:
    """The replica keeps Zoom's rule the adapter relies on: a name set by script leaves Join disabled."""
    meeting_id = new_id()
    replica.pages.options[meeting_id] = ZoomClientOptions(cookie_banner=False, permission_prompts=0)
    page = await bot.browser.start(bot.devices.browser)
    await page.goto(wc(meeting_id).join_url)
    name = page.locator("#input-for-name")
    join = page.locator("button.preview-join-button")
    await join.wait_for()  # the client shows its preview (and listens for typing) after loading
    await name.evaluate("(el) => { el.value = 'Script'; el.dispatchEvent(new Event('input')); }")
    assert await join.is_disabled()
    await name.press_sequentially("x")
    assert await join.is_enabled()


async def test_unknown_page_is_ui_changed_with_artifacts(bot: Bot, replica: Replica) -> None:
    meeting = MeetingUrl("zoom", "https://app.zoom.us/wc/v9/join-unknown", "v9")
    started = time.monotonic()
    failure = await bot.join_fails(meeting, JoinPolicy(ui_stuck_s=2.0))
    assert failure.code is FailureCode.UI_CHANGED
    assert "no Zoom screen the bot knows for 2 s" in failure.message
    assert 2.0 <= time.monotonic() - started < 6
    artifacts_show(failure, "Not Found")


async def test_wrong_passcode_fails_fast(bot: Bot, replica: Replica) -> None:
    meeting_id = new_id()
    replica.room(meeting_id).config.passcode = "right"
    started = time.monotonic()
    failure = await bot.join_fails(parse_meeting_url(f"https://zoom.us/j/{meeting_id}?pwd=wrong"))
    assert failure.code is FailureCode.PASSCODE_WRONG
    assert time.monotonic() - started < 8
    artifacts_show(failure, "Passcode wrong")


@pytest.mark.parametrize(
    ("setting", "code", "text"),
    [
        ("sign_in_required", FailureCode.SIGN_IN_REQUIRED, "sign in to join this meeting"),
        ("captcha", FailureCode.CAPTCHA, "Type the characters you see"),
        ("bot_wall", FailureCode.BOT_DETECTED, "We detected you may be a bot"),
    ],
)
async def test_walls_fail_fast_with_artifacts(
    bot: Bot, replica: Replica, setting: str, code: FailureCode, text: str
) -> None:
    meeting_id = new_id()
    setattr(replica.room(meeting_id).config, setting, True)
    started = time.monotonic()
    failure = await bot.join_fails(wc(meeting_id))
    assert failure.code is code and not failure.retryable
    # Well inside ui_timeout: recognised, not timed out (a person's hands take ~4 s to get to Join).
    assert time.monotonic() - started < 12
    assert bot.states == [CallState.JOINING]
    artifacts_show(failure, text)


async def test_unknown_meeting_is_not_found(bot: Bot, replica: Replica) -> None:
    meeting_id = new_id()
    replica.room(meeting_id).config.exists = False
    failure = await bot.join_fails(wc(meeting_id))
    assert failure.code is FailureCode.NOT_FOUND
    artifacts_show(failure, "This meeting ID is not valid")


def waiting_room(bot: Bot, replica: Replica) -> tuple[Room, Coroutine[Any, Any, ZoomPlatform]]:
    """A meeting with a waiting room, and the bot's join into it (to run while the test decides)."""
    meeting_id = new_id()
    room = replica.room(meeting_id)
    room.config.lobby = True
    return room, bot.join(wc(meeting_id))


async def test_waiting_room_then_admitted(bot: Bot, replica: Replica) -> None:
    room, joining = waiting_room(bot, replica)
    async with running(joining) as join:
        await room.wait_for(NAME, "waiting", 15)
        await asyncio.sleep(1.0)  # the lobby must not be taken for the call
        assert bot.states == [CallState.JOINING, CallState.AWAITING_ADMISSION]
        assert not join.done()
        await room.admit(NAME)
        await asyncio.wait_for(join, 10)
    assert bot.states == [CallState.JOINING, CallState.AWAITING_ADMISSION, CallState.IN_CALL]


async def test_removed_from_the_waiting_room_is_denied(bot: Bot, replica: Replica) -> None:
    room, joining = waiting_room(bot, replica)
    async with running(joining) as join:
        await room.wait_for(NAME, "waiting", 15)
        await room.deny(NAME)
        with pytest.raises(JoinFailure) as caught:
            await asyncio.wait_for(join, 10)
    assert caught.value.code is FailureCode.DENIED
    assert CallState.IN_CALL not in bot.states


async def test_waiting_room_bounded_by_the_bots_lobby_timeout(bot: Bot, replica: Replica) -> None:
    meeting_id = new_id()
    replica.room(meeting_id).config.lobby = True
    failure = await bot.join_fails(wc(meeting_id), JoinPolicy(lobby_timeout_s=1.5, ui_timeout_s=10))
    assert failure.code is FailureCode.LOBBY_TIMEOUT
    assert bot.states == [CallState.JOINING, CallState.AWAITING_ADMISSION]
    artifacts_show(failure, "Please wait, the meeting host will let you in soon")


async def test_host_starts_within_the_retry_window(bot: Bot, replica: Replica) -> None:
    meeting_id = new_id()
    room = replica.room(meeting_id)
    room.config.host_present = False
    zoom = await bot.open(wc(meeting_id), host_retry_s=0.7)
    async with running(
        zoom.join(NAME, JoinPolicy(ui_timeout_s=10, host_absent_timeout_s=20), bot.states.append)
    ) as join:
        await asyncio.sleep(2.5)
        assert not join.done()
        await room.start_host()
        await asyncio.wait_for(join, 15)
    assert bot.states[-1] is CallState.IN_CALL
    visits = [v for v in replica.pages.visits if v.meeting_id == meeting_id]
    assert len(visits) >= 3  # the error page was reloaded until the meeting started


async def test_host_starts_while_the_client_waits(bot: Bot, replica: Replica) -> None:
    meeting_id = new_id()
    room = replica.room(meeting_id)
    room.config.host_present = False
    replica.pages.options[meeting_id] = ZoomClientOptions(host_absent="wait", cookie_banner=False)
    zoom = await bot.open(wc(meeting_id))
    async with running(
        zoom.join(NAME, JoinPolicy(ui_timeout_s=10, host_absent_timeout_s=20), bot.states.append)
    ) as join:
        await room.wait_for(NAME, "host_absent", 15)
        await asyncio.sleep(1.0)
        assert bot.states == [CallState.JOINING, CallState.AWAITING_ADMISSION]
        await room.start_host()
        await asyncio.wait_for(join, 10)
    assert bot.states == [CallState.JOINING, CallState.AWAITING_ADMISSION, CallState.IN_CALL]
    assert len([v for v in replica.pages.visits if v.meeting_id == meeting_id]) == 1  # no reloads


@pytest.mark.parametrize(("mode", "text"), [("error", "(3,001)"), ("wait", "Waiting for the host to start")])
async def test_host_never_starts_is_host_absent(bot: Bot, replica: Replica, mode: str, text: str) -> None:
    meeting_id = new_id()
    replica.room(meeting_id).config.host_present = False
    replica.pages.options[meeting_id] = ZoomClientOptions(host_absent=mode, cookie_banner=False)
    started = time.monotonic()
    failure = await bot.join_fails(wc(meeting_id), JoinPolicy(host_absent_timeout_s=2.0), host_retry_s=0.5)
    took = time.monotonic() - started
    assert failure.code is FailureCode.HOST_ABSENT
    assert 2.0 <= took < 8.0
    artifacts_show(failure, text)


# ---- in the call ----------------------------------------------------------------------------------------


async def _in_call(bot: Bot, replica: Replica, **options: object) -> tuple[ZoomPlatform, Room]:
    meeting_id = new_id()
    if options:
        replica.pages.options[meeting_id] = ZoomClientOptions(**options)  # type: ignore[arg-type]
    zoom = await bot.join(wc(meeting_id))
    room = replica.room(meeting_id)
    await room.wait_for(NAME, "in_call", 5)
    return zoom, room


@pytest.mark.parametrize(("action", "reason"), [("remove", EndReason.REMOVED), ("end", EndReason.HOST_ENDED)])
async def test_removed_or_ended_by_host(bot: Bot, replica: Replica, action: str, reason: EndReason) -> None:
    zoom, room = await _in_call(bot, replica)
    waiting = asyncio.create_task(zoom.wait_for_end(CallPolicy(alone_after_s=60)))
    try:
        await asyncio.sleep(0.5)
        await (room.remove(NAME) if action == "remove" else room.end())
        assert await asyncio.wait_for(waiting, 10) is reason
    finally:
        waiting.cancel()


async def test_alone_then_leaves_through_the_confirm_dialog(bot: Bot, replica: Replica) -> None:
    zoom, room = await _in_call(bot, replica, footer_hide_ms=300)
    sent: list[str] = []  # the client's WebSocket frames: "leave" is sent only by "Leave Meeting"
    bot.sockets[-1].on("framesent", lambda payload: sent.append(str(payload)))
    started = time.monotonic()
    assert await asyncio.wait_for(zoom.wait_for_end(CallPolicy(alone_after_s=1.5)), 10) is EndReason.ALONE
    assert 1.5 <= time.monotonic() - started < 5
    # The footer has hidden by now: leave must bring it back, click Leave, then "Leave Meeting".
    await asyncio.wait_for(zoom.leave(), 10)
    await room.wait_for(NAME, "left", 5)
    assert any('"leave"' in frame for frame in sent), "left by navigating away, not through the dialog"
    await zoom.leave()  # idempotent


async def test_max_duration(bot: Bot, replica: Replica) -> None:
    zoom, _ = await _in_call(bot, replica)
    policy = CallPolicy(alone_after_s=60, max_duration_s=1.5)
    assert await asyncio.wait_for(zoom.wait_for_end(policy), 10) is EndReason.MAX_DURATION


# ---- audio ---------------------------------------------------------------------------------------------


async def test_audio_both_ways_with_a_participant(bot: Bot, replica: Replica) -> None:
    meeting_id = new_id()
    host = Participant(replica.server, "zoom", meeting_id, name="Host", host=True)
    await host.start()
    try:
        zoom = await bot.join(wc(meeting_id))
        await replica.room(meeting_id).wait_for(NAME, "in_call", 5)
        # With someone else in the call the bot is not alone.
        waiting = asyncio.create_task(zoom.wait_for_end(CallPolicy(alone_after_s=1.0)))
        try:
            await audio_both_ways(bot.devices, host)
            assert not waiting.done()
        finally:
            waiting.cancel()
    finally:
        await host.close()
