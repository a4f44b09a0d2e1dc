"""The stand-in agent: its HTTP contract, its behaviours, and running it as a command."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import httpx
import pytest

from bot.audio import AudioDevices
from bot.audio.analysis import dominant_frequency, rms_dbfs, silence, tone
from bot.testing.agent import StandInAgent
from bot.testing.agent_behaviours import Plan, plan_for
from tests.bridge_support import KEY, endpoint, make_bridge, meeting


def test_agent_ids_choose_behaviours() -> None:
    assert plan_for("echo") == Plan("echo")
    assert plan_for("reflect") == Plan("reflect")
    assert plan_for("tone") == Plan("tone", tone_hz=660.0)
    assert plan_for("tone-523.25") == Plan("tone", tone_hz=523.25)
    assert plan_for("hangup-after-2") == Plan("echo", hangup_after_s=2.0)
    assert plan_for("freeze-after-0.5") == Plan("echo", freeze_after_s=0.5)
    assert plan_for("slow-answer") == Plan("echo", answer_delay_s=5.0)
    assert plan_for("slow-answer-1.5") == Plan("echo", answer_delay_s=1.5)
    assert plan_for("fail-500") == Plan("fail-500")
    for unknown in ("", "Echo", "tone-5", "tone-x", "hangup-after-", "agent_123"):
        assert plan_for(unknown) is None


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Authorization": "wrong"}, {"agent_id": "echo", "offer": {"sdp": "v=0", "type": "offer"}}, 401),
        ({}, {"agent_id": "echo", "offer": {"sdp": "v=0", "type": "offer"}}, 401),
        ({"Authorization": KEY}, {"agent_id": "nope", "offer": {"sdp": "v=0", "type": "offer"}}, 404),
        ({"Authorization": f"Bearer {KEY}"}, {"agent_id": "echo"}, 400),
        ({"Authorization": KEY}, {"agent_id": "echo", "offer": {"sdp": "v=0", "type": "answer"}}, 400),
        ({"Authorization": KEY}, {"agent_id": "fail-500", "offer": {"sdp": "v=0", "type": "offer"}}, 500),
    ],
)
async def test_http_contract(agent: StandInAgent, headers: dict[str, str], body: object, status: int) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{agent.base_url}/webrtc/offer", json=body, headers=headers)
    assert response.status_code == status
    assert "error" in response.json()


async def test_non_json_body_is_400(agent: StandInAgent) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{agent.base_url}/webrtc/offer", content=b"{not json", headers={"Authorization": KEY}
        )
    assert response.status_code == 400


@pytest.mark.pulse
async def test_speak_agent_talks_after_the_caller_stops(devices: AudioDevices, agent: StandInAgent) -> None:
    bridge = await make_bridge(devices, endpoint(agent, "speak"))
    await bridge.start()
    try:
        async with meeting(devices) as m:
            heard = await m.play_and_listen(tone(300, 0.6) + silence(3.0), 3.0)
        call = agent.calls[-1]
        assert call.first_onset_at is not None and call.answer_started_at is not None
        # It waited for the caller to finish (0.6 s of sound, then 0.6 s of quiet) before answering.
        assert call.answer_started_at - call.first_onset_at > 1.1
        # The microphone carries the sentence.
        spoken = heard[int(1.5 * 96_000) :]
        assert rms_dbfs(spoken) > -35
    finally:
        await bridge.close()


@pytest.mark.pulse
async def test_reflect_agent_sends_the_bots_own_packets_back_without_hearing(
    devices: AudioDevices, agent: StandInAgent
) -> None:
    """The benchmarks' cheap echo: the tone comes back on the microphone, yet the stand-in decoded
    nothing (it heard no sound)."""
    bridge = await make_bridge(devices, endpoint(agent, "reflect"))
    await bridge.start()
    try:
        async with meeting(devices) as m:
            heard_on_mic = await m.play_and_listen(silence(0.3) + tone(440, 1.0) + silence(0.5), 1.6)
        loud = heard_on_mic[int(0.5 * 96_000) : int(1.2 * 96_000)]
        assert rms_dbfs(loud) > -30 and abs(dominant_frequency(loud) - 440) < 5
        assert len(agent.calls[-1].heard) == 0 and agent.calls[-1].first_onset_at is None
        assert bridge.stats.frames_in > 50
    finally:
        await bridge.close()


async def test_runs_as_a_command_and_stops_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "agent-standin",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "MILLIS_PRIVATE_KEY": KEY},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line.startswith("agent stand-in listening on http://127.0.0.1:")
        base = line.split()[-1]
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{base}/webrtc/offer", json={}, headers={"Authorization": "x"})
            assert response.status_code == 401
            assert (await client.get(f"{base}/calls")).json() == []
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
