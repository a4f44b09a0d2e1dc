"""Cameras in the replicas: simulated people send a moving test pattern (the room's `cameras` setting says
how many), the Meet and Zoom clients show remote cameras as tiles, and the bot's page, in the real `join`
with its browser levers on, receives them while its audio flows both ways. Also: many simulated people in
one shared browser, each with its own microphone and ears, on no PulseAudio."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bot.audio.analysis import dominant_frequency, rms_dbfs
from bot.outcome import ExitCode
from bot.testing.agent import StandInAgent
from bot.testing.participant import Participant, PeopleBrowser, to_pcm
from bot.testing.replica import ReplicaServer
from bot.testing.replica.room import Room, RoomConfig
from tests.join_support import JoinRun, replica_env

BOT = "AI Agent"
URLS = {"meet": "https://meet.google.com/{id}", "zoom": "https://us02web.zoom.us/j/{id}"}
MEETINGS = {"meet": "vid-eoti-les", "zoom": "81234569900"}
TILES = {"meet": "tile", "zoom": "gallery-video-container__video-frame"}


async def test_the_room_turns_on_as_many_cameras_as_it_is_set_to() -> None:
    room = Room("meet", "abc-defg-hij", RoomConfig(cameras=1))
    inbox: dict[str, list[dict[str, Any]]] = {}

    async def join(name: str) -> str:
        box = inbox.setdefault(name, [])

        async def send(message: dict[str, Any]) -> None:
            box.append(message)

        _, pid = await room.join(name, "", name == "Alice", send)
        assert pid is not None
        return pid

    alice, bob, bot = await join("Alice"), await join("Bob"), await join(BOT)
    await room.start_audio(alice, camera_capable=True)
    await room.start_audio(bob, camera_capable=True)
    await room.start_audio(bot)  # a client page: it shows cameras, it sends none
    cameras = {n: [m["on"] for m in box if m["type"] == "camera"] for n, box in inbox.items()}
    assert cameras == {"Alice": [True], "Bob": [False], BOT: []}
    assert room.events("camera_on") == ["Alice"]
    people = [m for m in inbox[BOT] if m["type"] == "participants"][-1]
    assert people["names"] == ["Alice", "Bob", BOT] and people["pids"] == [alice, bob, bot]
    room.video_stats(bot, {alice: {"framesDecoded": 10}})
    assert room.received_video(BOT) == {"Alice": {"framesDecoded": 10}}
    assert room.state()["video"] == {BOT: {"Alice": {"framesDecoded": 10}}}


@pytest.mark.browser
async def test_people_in_one_shared_browser_hear_each_other_and_one_sends_a_camera(
    replica: ReplicaServer,
) -> None:
    replica.room("meet", "abc-defg-hij").configure(cameras=1)
    people = await PeopleBrowser(replica).start()
    alice = Participant(replica, "meet", "abc-defg-hij", name="Alice", shared=people)
    bob = Participant(replica, "meet", "abc-defg-hij", name="Bob", host=False, shared=people)
    try:
        await alice.start()
        await bob.start()
        room = replica.room("meet", "abc-defg-hij")
        await room.wait_until(lambda r: len(r.events("audio")) >= 2, 10)
        await asyncio.sleep(1.0)
        sent = await alice.play_tone(440, 1.5)
        await asyncio.sleep(2.0)
        _, heard = await bob.heard_since(bob.page_time(alice.wall_time(sent)) + 0.5)
        tone = to_pcm(heard[: int(0.8 * 48000)])
        assert abs(dominant_frequency(tone) - 440) < 5 and rms_dbfs(tone) > -30
        _, own = await alice.heard_since(sent)
        assert rms_dbfs(to_pcm(own)) < -60  # each page hears only the others: separate audio per person
        first = await alice.camera()
        await asyncio.sleep(1.0)
        later = await alice.camera()
        assert (
            first["on"]
            and later["frames"] > first["frames"]
            and (first["width"], first["height"]) == (640, 360)
        )
        assert not (await bob.camera())["on"]
        # The people never receive video (cheap helpers): no page reports any.
        assert room.received_video("Bob") == {}
    finally:
        await bob.close()
        await alice.close()
        await people.close()


@pytest.mark.pulse
@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("platform", ["meet", "zoom"])
async def test_cameras_are_tiles_in_the_bot_page_receiving_frames_while_audio_flows_both_ways(
    replica: ReplicaServer, agent: StandInAgent, platform: str
) -> None:
    """The real `join` with its browser levers on (bot.browser.levers) in a call with two cameras."""
    mid = MEETINGS[platform]
    room = replica.room(platform, mid)
    room.configure(cameras=2)
    people = await PeopleBrowser(replica).start()
    host = Participant(replica, platform, mid, name="Host", shared=people)
    camera = Participant(replica, platform, mid, name="Camera", host=False, shared=people)
    run = None
    try:
        await host.start()
        await camera.start()
        env = replica_env(replica, agent)  # the defaults: browser levers on
        run = await JoinRun(URLS[platform].format(id=mid), "tone-660", env).start()
        await run.wait_event("in_call", 40)
        await run.wait_event("agent_connected", 20)

        def decoding(r: Room) -> bool:
            seen = r.received_video(BOT)
            return len(seen) == 2 and all(v["framesDecoded"] > 0 for v in seen.values())

        await room.wait_until(decoding, 30)
        first = room.received_video(BOT)
        await asyncio.sleep(4.5)  # two more reports from the bot's page
        later = room.received_video(BOT)
        assert set(later) == {"Host", "Camera"}, later
        for who, stats in later.items():
            detail = json.dumps({"first": first[who], "later": stats})
            assert stats["framesDecoded"] > first[who]["framesDecoded"] + 20, detail
            assert stats["currentTime"] > first[who]["currentTime"] + 1.0, detail
            assert (stats["videoWidth"], stats["videoHeight"]) == (640, 360), detail
            assert stats["inDocument"] and stats["tile"] == TILES[platform] and not stats["paused"], detail

        calls_before = len(agent.calls)
        started = await host.play_tone(440, 3.0)
        await asyncio.sleep(3.3)
        _, samples = await host.heard_since(started)
        heard = to_pcm(samples)
        reply = heard[len(heard) // 2 :]
        assert abs(dominant_frequency(bytes(agent.calls[-1].heard)) - 440) < 15, agent.calls[-1].summary()
        assert len(agent.calls) == calls_before
        why = {"person": await host.media_report(), "bot": run.kinds()[-6:], "stats": run.events[-1]}
        assert rms_dbfs(reply) > -45 and abs(dominant_frequency(reply) - 660) < 15, why
        await room.end()
        assert await run.wait(20) == ExitCode.COMPLETED
    finally:
        if run is not None:
            await run.close()
        await camera.close()
        await host.close()
        await people.close()
