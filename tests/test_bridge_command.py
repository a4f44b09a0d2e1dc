"""`meeting-bot bridge` as a user runs it: devices printed, live stats, clean exit on Ctrl+C."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from bot.testing.agent import StandInAgent
from tests.bridge_support import KEY

pytestmark = pytest.mark.pulse


async def _bridge(agent: StandInAgent, agent_id: str, key: str = KEY) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "PULSE_SERVER"}
    env["MILLIS_PRIVATE_KEY"] = key
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "bridge",
        "--agent-id",
        agent_id,
        "--agent-url",
        agent.base_url,
        "--loopback-ice",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def test_bridge_command_prints_devices_and_stats_and_stops_on_ctrl_c(agent: StandInAgent) -> None:
    proc = await _bridge(agent, "echo")
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(30):
            while not any("from agent" in line for line in lines):
                lines.append((await proc.stdout.readline()).decode())
                assert lines[-1], f"bridge exited early: {lines}"
        text = "".join(lines)
        for name in ("PULSE_SERVER=unix:", "PULSE_SINK=", "PULSE_SOURCE="):
            assert name in text
        assert "[agent_connected]" in text
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        assert len(agent.calls) == 1
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_bridge_command_wrong_key_exits_with_bad_key_code(agent: StandInAgent) -> None:
    proc = await _bridge(agent, "echo", key="sk-wrong")
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 20
    assert b"refused the private key" in err
    assert b"sk-wrong" not in err
