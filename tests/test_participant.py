"""Simulated participants in one replica room: what one says, the other hears, with a plausible delay."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from bot.audio import PcmCapture
from bot.audio.analysis import dominant_frequency, rms_dbfs
from bot.audio.streams import wait_for_streams
from bot.testing.participant import to_pcm
from bot.testing.replica import ReplicaServer
from tests.replica_fixtures import MakeParticipant

pytestmark = [pytest.mark.browser, pytest.mark.pulse]

MEETING = "abc-defg-hij"


async def wait_for_peers(replica: ReplicaServer, count: int) -> None:
    await replica.room("meet", MEETING).wait_until(lambda r: len(r.events("audio")) >= count, 5)


async def test_a_tone_from_one_participant_is_heard_by_the_other(
    replica: ReplicaServer, make_participant: MakeParticipant
):
    alice = await make_participant("meet", MEETING, "Alice")
    bob = await make_participant("meet", MEETING, "Bob", host=False)
    assert (alice.join_result, bob.join_result) == ("admitted", "admitted")
    await wait_for_peers(replica, 2)
    await asyncio.sleep(0.5)  # the peer connection is up within ~100 ms; leave room for a slow CI
    sent = await alice.play_tone(440, 1.5)
    await asyncio.sleep(2.0)
    # Bob's clock is his own: map Alice's send time through the wall clock, and skip the onset.
    bob_start = bob.page_time(alice.wall_time(sent)) + 0.5
    _, heard = await bob.heard_since(bob_start)
    tone = heard[: int(0.8 * 48000)]
    assert abs(dominant_frequency(to_pcm(tone)) - 440) < 5
    assert rms_dbfs(to_pcm(tone)) > -30
    # Alice does not hear herself.
    _, own = await alice.heard_since(sent)
    assert rms_dbfs(to_pcm(own)) < -60
    names = [e for e in await bob.events() if e["type"] == "participants"][-1]["names"]
    assert names == ["Alice", "Bob"]


async def test_beeps_arrive_once_each_with_a_plausible_delay(
    replica: ReplicaServer, make_participant: MakeParticipant
):
    alice = await make_participant("meet", MEETING, "Alice")
    bob = await make_participant("meet", MEETING, "Bob", host=False)
    await wait_for_peers(replica, 2)
    await asyncio.sleep(0.5)
    sent = await alice.play_beeps(5, 0.5, hz=1000, beep_ms=60)
    await asyncio.sleep(sent[-1] - sent[0] + 1.0)
    since = bob.page_time(alice.wall_time(sent[0])) - 0.2
    heard = await bob.heard_onsets(threshold_dbfs=-30, since=since)
    assert len(heard) == 5
    delays = np.array([bob.wall_time(h) for h in heard]) - np.array([alice.wall_time(s) for s in sent])
    # Two browsers on loopback: WebRTC capture, Opus, jitter buffer. Tens of ms, well under half a second.
    assert delays.min() > 0.005 and delays.max() < 0.5, delays
    assert delays.max() - delays.min() < 0.1, delays  # steady, not drifting or bunching
    print(f"participant→participant delay: {delays.mean() * 1000:.0f} ms (min {delays.min() * 1000:.0f})")


async def test_lobby_guest_hears_only_after_admission_and_sees_removal(
    replica: ReplicaServer, make_participant: MakeParticipant
):
    room = replica.room("zoom", "123456789")
    room.configure(lobby=True)
    host = await make_participant("zoom", "123456789", "Host")
    guest = await make_participant("zoom", "123456789", "Guest", host=False)
    assert guest.join_result == "waiting"
    await host.play_tone(660, 1.0)
    await asyncio.sleep(1.2)
    assert rms_dbfs(to_pcm(await guest.heard())) < -60  # the lobby hears nothing
    await room.admit("Guest")
    await room.wait_for("Guest", "in_call", 3)
    await guest.wait_for_event("admitted")
    await asyncio.sleep(0.5)
    t = await host.play_tone(660, 1.0)
    await asyncio.sleep(1.3)
    _, heard = await guest.heard_since(guest.page_time(host.wall_time(t)) + 0.3)
    assert abs(dominant_frequency(to_pcm(heard[: int(0.5 * 48000)])) - 660) < 5
    await room.remove("Guest")
    await guest.wait_for_event("removed")
    await host.wait_for_event("participants")
    assert [p.state for p in room.participants] == ["in_call", "removed"]


JOIN_AND_LISTEN = """async ([room, mode]) => {
  const {result, room: conn} = await ReplicaRoom.join(room, {name: "Bot", platform: "zoom"});
  await conn.startAudio(null, {audioElements: mode});
  window.conn = conn;
  return result;
}"""


@pytest.mark.parametrize("mode", ["body", "detached"])
async def test_room_audio_plays_into_the_bot_browsers_sink(
    replica: ReplicaServer, make_participant: MakeParticipant, bot_browser, bot_audio, mode: str
):
    """What a platform page built on room.js gives the bot: remote audio on its PulseAudio sink."""
    host = await make_participant("zoom", "555", "Host")
    page = bot_browser.page
    await page.goto("https://zoom.us/_replica/participant?room=unused&name=unused")
    assert await page.evaluate(JOIN_AND_LISTEN, ["555", mode]) == "admitted"
    await replica.room("zoom", "555").wait_until(lambda r: len(r.events("audio")) >= 2, 5)
    b = bot_audio.browser
    capture = PcmCapture(b.server, f"{b.sink}.monitor")
    await capture.start()
    try:
        await host.play_tone(440, 3.0)
        await wait_for_streams(b.server, [capture.pid])
        await bot_audio.reclock()
        await asyncio.sleep(0.5)
        capture.discard_backlog()
        pcm = b"".join([(await capture.queue.get()).data for _ in range(40)])
    finally:
        await capture.close()
    assert abs(dominant_frequency(pcm) - 440) < 5
    in_dom = await page.evaluate("() => document.querySelectorAll('audio[data-replica-peer]').length")
    assert in_dom == (1 if mode == "body" else 0)
