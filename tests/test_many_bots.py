"""Three bots at once, started by the scheduler as real `join` processes, each in its own replica room.

Each room's person speaks its own tone and each bot's agent answers with its own tone: every agent must
hear only its room's tone and every person must hear only its own bot's agent — no cross-talk between
the bots' browsers, PulseAudio daemons or bridges.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

from bot.audio.analysis import dominant_frequency
from bot.audio.frames import SAMPLE_RATE
from bot.service.bot_request import validate_request
from bot.service.launchers import LocalProcessLauncher
from bot.service.scheduler import SchedulerConfig
from bot.service.store import BotState
from bot.testing.agent import StandInAgent
from bot.testing.local_env import local_bot_env
from bot.testing.participant import Participant, to_pcm
from bot.testing.replica.server import ReplicaServer
from tests.bridge_support import KEY
from tests.scheduler_support import serving, wait_state

pytestmark = [pytest.mark.pulse, pytest.mark.browser, pytest.mark.slow]

ROOMS = [  # meeting id, the person's tone, the agent's tone
    ("aaa-bbbb-ccc", 440.0, 520.0),
    ("ddd-eeee-fff", 660.0, 750.0),
    ("ggg-hhhh-iii", 880.0, 990.0),
]


def level_at(pcm: bytes, hz: float) -> float:
    """Share of the signal's spectral energy within 15 Hz of `hz`."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    total = float(spectrum.sum()) or 1.0
    return float(spectrum[np.abs(freqs - hz) < 15].sum()) / total


async def test_three_bots_each_hear_and_are_heard_only_in_their_own_room(
    replica: ReplicaServer, agent: StandInAgent, tmp_path: Path
) -> None:
    people = [
        Participant(replica, "meet", mid, name=f"Person {i}", host=True)
        for i, (mid, _, _) in enumerate(ROOMS)
    ]
    await asyncio.gather(*(p.start() for p in people))
    launcher = LocalProcessLauncher(
        [sys.executable, "-m", "bot", "join"],
        extra_env={
            **local_bot_env(replica, agent, KEY),
            "BOT_BOT_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        },
    )
    config = SchedulerConfig(db_url=f"sqlite:///{tmp_path / 'bots.db'}", lead_time_s=0, max_concurrent_bots=3)
    try:
        async with serving(config, launcher) as service:
            records = [
                service.schedule(
                    validate_request(
                        meeting_url=f"https://meet.google.com/{mid}",
                        agent_id=f"tone-{agent_hz:g}",
                        bot_name=f"Bot {i}",
                    )
                )
                for i, (mid, _, agent_hz) in enumerate(ROOMS)
            ]
            for record in records:
                await wait_state(service, record.id, {BotState.IN_CALL}, timeout=90)
            await asyncio.sleep(2)
            starts = await asyncio.gather(
                *(p.play_tone(hz, 3.0) for p, (_, hz, _) in zip(people, ROOMS, strict=True))
            )
            await asyncio.sleep(3.3)
            heard = [to_pcm((await p.heard_since(t))[1]) for p, t in zip(people, starts, strict=True)]
            for room in ROOMS:
                await replica.room("meet", room[0]).end()
            ended = [await wait_state(service, r.id, {BotState.ENDED}, timeout=30) for r in records]
    finally:
        await asyncio.gather(*(p.close() for p in people))

    assert [r.end_reason for r in ended] == ["host_ended"] * 3
    calls = {c.agent_id: c for c in agent.calls}
    for i, (mid, person_hz, agent_hz) in enumerate(ROOMS):
        agent_heard = bytes(calls[f"tone-{agent_hz:g}"].heard)
        assert abs(dominant_frequency(agent_heard) - person_hz) < 15, (mid, dominant_frequency(agent_heard))
        person_heard = heard[i][len(heard[i]) // 2 :]
        assert abs(dominant_frequency(person_heard) - agent_hz) < 15, (mid, dominant_frequency(person_heard))
        for _, other_person_hz, other_agent_hz in ROOMS[:i] + ROOMS[i + 1 :]:
            assert level_at(agent_heard, other_person_hz) < 0.02, f"agent of {mid} heard another room"
            assert level_at(person_heard, other_agent_hz) < 0.02, f"{mid} heard another room's agent"
