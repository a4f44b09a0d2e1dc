"""The bridge against real PulseAudio devices and a real aiortc stand-in agent on loopback."""

from __future__ import annotations

import asyncio
import logging
import time
import wave
from pathlib import Path

import pytest

from bot.agent.errors import AgentAuthError, AgentNotFound
from bot.audio import AudioDevices
from bot.audio.analysis import rms_dbfs, silence, tone
from bot.testing.agent import StandInAgent
from tests.bridge_support import KEY, Events, endpoint, loud_frequency, make_bridge, meeting

pytestmark = pytest.mark.pulse


async def test_meeting_tone_reaches_agent_and_echo_returns_on_the_mic(
    devices: AudioDevices, agent: StandInAgent
) -> None:
    bridge = await make_bridge(devices, endpoint(agent, "echo"))
    await bridge.start()
    try:
        async with meeting(devices) as m:
            heard_on_mic = await m.play_and_listen(silence(0.3) + tone(440, 1.0) + silence(0.5), 1.6)
        call = agent.calls[-1]
        assert abs(loud_frequency(bytes(call.heard)) - 440) < 5
        assert abs(loud_frequency(heard_on_mic) - 440) < 5
        s = bridge.stats
        assert s.frames_out > 50 and s.frames_in > 50
        assert s.bytes_out > 0 and s.bytes_in > 0
        assert s.connected_at is not None and s.reconnects == 0
    finally:
        await bridge.close()
        await bridge.close()  # idempotent


async def test_tone_agent_reply_arrives_on_virtual_mic_at_its_frequency(
    devices: AudioDevices, agent: StandInAgent
) -> None:
    bridge = await make_bridge(devices, endpoint(agent, "tone-660"))
    await bridge.start()
    try:
        async with meeting(devices) as m:
            heard = await m.play_and_listen(silence(0.3) + tone(440, 1.0) + silence(0.7), 2.0)
        assert abs(loud_frequency(heard) - 660) < 5
        # It answered only while it heard sound: the last 0.4 s (after the tone stopped) is quiet.
        assert rms_dbfs(heard[-int(0.4 * 96_000) :]) < -60
        assert bridge.stats.dropped_in == 0
    finally:
        await bridge.close()


async def test_silence_stays_silence_both_ways(devices: AudioDevices, agent: StandInAgent) -> None:
    # Nothing plays into the meeting sink: its monitor yields no data, so the bridge sends silence itself.
    bridge = await make_bridge(devices, endpoint(agent, "echo"))
    await bridge.start()
    try:
        async with meeting(devices) as m:
            await asyncio.sleep(0.3)
            m.mic.discard_backlog()
            on_mic = await m.listen(1.0)
        heard = bytes(agent.calls[-1].heard)
        assert len(heard) > 0.8 * 96_000  # the agent got a steady stream, not nothing
        assert rms_dbfs(heard) < -80
        assert rms_dbfs(on_mic) < -80
        assert agent.calls[-1].first_onset_at is None
    finally:
        await bridge.close()


async def test_agent_hanging_up_leads_to_reconnect_and_audio_flows_again(
    devices: AudioDevices, agent: StandInAgent
) -> None:
    events = Events()
    bridge = await make_bridge(devices, endpoint(agent, "hangup-after-1"), events, reconnect_backoff_s=0.1)
    await bridge.start()
    try:
        await events.wait_for(lambda e: e.kind == "agent_reconnecting", 10)
        back = await events.wait_for(lambda e: e.kind == "agent_connected" and e.attempt == 1, 10)
        assert back.attempt == 1
        async with meeting(devices) as m:
            heard = await m.play_and_listen(tone(440, 0.6), 0.8)
        assert abs(loud_frequency(heard) - 440) < 5
        assert len(agent.calls) >= 2
        assert bridge.stats.reconnects >= 1
        assert [e.kind for e in events.seen[:3]] == [
            "agent_connected",
            "agent_reconnecting",
            "agent_connected",
        ]
    finally:
        await bridge.close()


async def test_silent_agent_trips_the_watchdog(devices: AudioDevices, agent: StandInAgent) -> None:
    # The agent stops sending audio but keeps the connection (RTCP) alive: only the watchdog sees it.
    events = Events()
    bridge = await make_bridge(
        devices, endpoint(agent, "freeze-after-0.5"), events, stall_timeout_s=1.0, reconnect_backoff_s=0.1
    )
    await bridge.start()
    try:
        event = await events.wait_for(lambda e: e.kind == "agent_reconnecting", 10)
        assert "no audio from the agent" in event.detail
        await events.wait_for(lambda e: e.kind == "agent_connected" and e.attempt == 1, 10)
    finally:
        await bridge.close()


async def test_agent_lost_after_bounded_attempts(devices: AudioDevices, agent: StandInAgent) -> None:
    events = Events()
    bridge = await make_bridge(
        devices,
        endpoint(agent, "echo", max_retries=0),
        events,
        max_reconnects=2,
        reconnect_backoff_s=0.05,
    )
    await bridge.start()
    try:
        await agent.close()  # the service goes away: the call ends and new offers are refused
        await asyncio.wait_for(bridge.wait_lost(), 15)
        kinds = [e.kind for e in events.seen]
        assert kinds == ["agent_connected", "agent_reconnecting", "agent_reconnecting", "agent_lost"]
        assert [e.attempt for e in events.seen[1:3]] == [1, 2]
        assert "unreachable" in events.seen[-1].detail
        assert bridge.lost
    finally:
        await bridge.close()


async def test_wrong_key_fails_start_fast_and_cleans_up(devices: AudioDevices, agent: StandInAgent) -> None:
    bridge = await make_bridge(devices, endpoint(agent, "echo", key="not-the-key"))
    t0 = time.monotonic()
    with pytest.raises(AgentAuthError) as raised:
        await bridge.start()
    assert time.monotonic() - t0 < 2
    assert "MILLIS_PRIVATE_KEY" in str(raised.value)
    assert [r["auth"] for r in agent.requests] == ["raw", "bearer"]
    await bridge.close()


async def test_unknown_agent_fails_start(devices: AudioDevices, agent: StandInAgent) -> None:
    bridge = await make_bridge(devices, endpoint(agent, "no-such-agent"))
    with pytest.raises(AgentNotFound, match="no-such-agent"):
        await bridge.start()
    assert len(agent.requests) == 1


async def test_recording_writes_both_directions(
    devices: AudioDevices, agent: StandInAgent, tmp_path: Path
) -> None:
    bridge = await make_bridge(devices, endpoint(agent, "tone-880"), record_dir=tmp_path / "rec")
    await bridge.start()
    try:
        async with meeting(devices) as m:
            await m.play_and_listen(tone(440, 0.8) + silence(0.3), 1.2)
    finally:
        await bridge.close()
    out = sorted((tmp_path / "rec").glob("*-meeting-to-agent.wav"))
    back = sorted((tmp_path / "rec").glob("*-agent-to-meeting.wav"))
    assert len(out) == 1 and len(back) == 1
    for path, hz in ((out[0], 440), (back[0], 880)):
        with wave.open(str(path), "rb") as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (48_000, 1, 2)
            assert wav.getnframes() > 48_000
            assert abs(loud_frequency(wav.readframes(wav.getnframes())) - hz) < 5


async def test_key_never_in_logs(
    devices: AudioDevices, agent: StandInAgent, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = await make_bridge(devices, endpoint(agent, "echo", key=KEY + "-wrong"))
    with pytest.raises(AgentAuthError) as raised:
        await wrong.start()
    bridge = await make_bridge(devices, endpoint(agent, "echo"))
    await bridge.start()
    await asyncio.sleep(0.3)
    await bridge.close()
    assert KEY not in caplog.text
    assert KEY not in str(raised.value)
    assert "HTTP Request" in caplog.text or "answered HTTP" in caplog.text  # logging was really captured
