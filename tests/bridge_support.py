"""Helpers for bridge tests: a stand-in agent, a bridge wired to real devices, and the meeting's side."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from bot.agent.millis import MillisConfig, MillisEndpoint
from bot.agent.peer import PeerOptions
from bot.audio import AudioDevices, PcmCapture, PcmPlayback
from bot.audio.analysis import dominant_frequency, rms_dbfs
from bot.audio.frames import BYTES_PER_FRAME
from bot.bridge import Bridge, BridgeEvent, BridgeOptions
from bot.testing.agent import StandInAgent

KEY = "sk-test-7f3a9c2e5b1d4f60a8e2c9b7d3f1a6e4"  # a distinctive string so leaks are easy to find


def endpoint(agent: StandInAgent, agent_id: str, key: str = KEY, **config: object) -> MillisEndpoint:
    options: dict[str, object] = {"max_retries": 1, "backoff_s": 0.05, "timeout_s": 5.0, **config}
    return MillisEndpoint(
        MillisConfig(agent_id=agent_id, private_key=key, base_url=agent.base_url, **options)  # type: ignore[arg-type]
    )


@dataclass
class Events:
    seen: list[BridgeEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, event: BridgeEvent) -> None:
        self.seen.append(event)
        self.changed.set()

    async def wait_for(self, predicate: Callable[[BridgeEvent], bool], timeout: float) -> BridgeEvent:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.seen:
                    if predicate(event):
                        return event
                self.changed.clear()
                await self.changed.wait()


async def make_bridge(
    devices: AudioDevices, ep: MillisEndpoint, events: Events | None = None, **options: object
) -> Bridge:
    """A bridge on the devices' own streams (closed with the devices), media on 127.0.0.1."""
    streams = await devices.open_streams()
    opts = BridgeOptions(peer=PeerOptions.loopback(), **options)  # type: ignore[arg-type]
    return Bridge(ep, streams.source, streams.sink, opts, events)


class Meeting:
    """The meeting's side of the devices: plays into the meeting sink, listens on the virtual mic."""

    def __init__(self, devices: AudioDevices) -> None:
        b = devices.browser
        self.player = PcmPlayback(b.server, b.sink)
        self.mic = PcmCapture(b.server, b.source)

    async def start(self) -> None:
        await self.player.start()
        await self.mic.start()

    async def close(self) -> None:
        await self.mic.close()
        await self.player.close()

    async def play_and_listen(self, pcm: bytes, listen_s: float) -> bytes:
        """Plays `pcm` into the meeting sink while recording `listen_s` seconds of the virtual mic."""
        self.mic.discard_backlog()
        writer = asyncio.create_task(self.player.write(pcm))
        try:
            return await self.listen(listen_s)
        finally:
            await writer

    async def listen(self, seconds: float) -> bytes:
        frames = []
        for _ in range(int(seconds * 50)):
            frames.append((await asyncio.wait_for(self.mic.queue.get(), 5)).data)
        return b"".join(frames)


@contextlib.asynccontextmanager
async def meeting(devices: AudioDevices) -> AsyncIterator[Meeting]:
    m = Meeting(devices)
    await m.start()
    try:
        yield m
    finally:
        await m.close()


def loud_part(pcm: bytes, threshold_dbfs: float = -40.0) -> bytes:
    """The 20 ms frames louder than the threshold, joined (what a tone check should look at)."""
    frames = [pcm[i : i + BYTES_PER_FRAME] for i in range(0, len(pcm), BYTES_PER_FRAME)]
    return b"".join(f for f in frames if len(f) == BYTES_PER_FRAME and rms_dbfs(f) > threshold_dbfs)


def loud_frequency(pcm: bytes) -> float:
    return dominant_frequency(loud_part(pcm))
