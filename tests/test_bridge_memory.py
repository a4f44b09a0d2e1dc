"""The bridge's logic in memory: no PulseAudio, no network, no aiortc peer; each test well under a second.

The bridge sees a frame source, a frame sink and agent sessions made by a link factory. Here the meeting is
a `FrameQueue`, the virtual microphone a `MemorySink`, and the agent a `MemoryAgent`: a real
`AgentEndpoint` whose answers name in-memory calls, which `MemoryLink` (a `Link`, and its own factory)
joins, as aiortc's link joins the peer an SDP answer describes. The outbound `PcmTrack` is the real one,
paced at 20 ms. The same scenarios over real PulseAudio and aiortc are in tests/test_bridge.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from bot.agent.base import AgentEndpoint
from bot.agent.errors import AgentAuthError, AgentError, AgentUnavailable
from bot.aio import cancel_and_wait
from bot.audio.analysis import tone
from bot.audio.frames import (
    BYTES_PER_FRAME,
    SAMPLES_PER_FRAME,
    FrameQueue,
    FrameSink,
    FrameSource,
    PcmFrame,
)
from bot.bridge import Bridge, BridgeOptions, Link
from bot.bridge.media import SILENT_FRAME, PcmTrack, is_silent
from tests.bridge_support import Events

# --- in-memory stand-ins -----------------------------------------------------------------------------


def numbered(i: int) -> bytes:
    """A loud 20 ms frame that says which one it is (every sample is 1000 + i)."""
    return np.full(SAMPLES_PER_FRAME, 1000 + i, dtype="<i2").tobytes()


def number_of(pcm: bytes) -> int:
    return int(np.frombuffer(pcm[:2], dtype="<i2")[0]) - 1000


class MemorySink:
    """A frame sink that keeps what it is given; `broken` makes `write()` fail like a dead `pacat`."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.broken: Exception | None = None

    async def write(self, pcm: bytes) -> None:
        if self.broken is not None:
            raise self.broken
        self.written.append(pcm)

    @property
    def loud(self) -> list[bytes]:
        return [pcm for pcm in self.written if not is_silent(pcm)]


@dataclass
class MemoryCall:
    """The agent's side of one session: hears the bridge's frames and answers into `outbox`.

    `echo` sends each heard frame back; after `hang_up_after` frames it hangs up; after `freeze_after`
    frames it keeps the call but sends nothing more (only the bridge's watchdog can notice).
    """

    echo: bool = True
    hang_up_after: int | None = None
    freeze_after: int | None = None
    heard: list[bytes] = field(default_factory=list)
    outbox: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)

    def hear(self, pcm: bytes) -> None:
        self.heard.append(pcm)
        n = len(self.heard)
        if self.hang_up_after is not None and n >= self.hang_up_after:
            self.hang_up()
        elif self.echo and (self.freeze_after is None or n <= self.freeze_after):
            self.outbox.put_nowait(pcm)

    def say(self, *frames: bytes) -> None:
        for pcm in frames:
            self.outbox.put_nowait(pcm)

    def hang_up(self) -> None:
        self.outbox.put_nowait(None)

    @property
    def heard_loud(self) -> list[bytes]:
        return [pcm for pcm in self.heard if not is_silent(pcm)]


class MemoryAgent:
    """An `AgentEndpoint` whose calls live in this process. Calls follow `script`, then plain echo."""

    def __init__(self, *script: MemoryCall) -> None:
        self._script = list(script)
        self.calls: list[MemoryCall] = []
        self.offers: list[str] = []
        self.refuse: AgentError | None = None

    async def exchange(self, offer_sdp: str) -> str:
        self.offers.append(offer_sdp)
        if self.refuse is not None:
            raise self.refuse
        self.calls.append(self._script.pop(0) if self._script else MemoryCall())
        return f"memory-answer {len(self.calls) - 1}"

    def describe(self) -> str:
        return "memory agent"

    def answered(self, answer_sdp: str) -> MemoryCall:
        return self.calls[int(answer_sdp.split()[1])]

    def go_away(self, error: AgentError) -> None:
        """The service goes away: calls end and new offers fail with `error`."""
        self.refuse = error
        for call in self.calls:
            call.hang_up()


class MemoryLink:
    """A `Link` to a `MemoryAgent` call: pulls the outbound track as aiortc's sender would (20 ms pace)
    and hands the call's frames to `on_audio`, as `AgentLink` does with decoded inbound audio."""

    def __init__(
        self, endpoint: AgentEndpoint, outbound: MediaStreamTrack, on_audio: Callable[[bytes], None]
    ) -> None:
        assert isinstance(endpoint, MemoryAgent)
        self._agent = endpoint
        self._outbound = outbound
        self._on_audio = on_audio
        self._tasks: list[asyncio.Task[None]] = []
        self.ended = asyncio.Event()
        self.reason = ""
        self.last_audio_at = time.monotonic()

    async def connect(self, timeout_s: float) -> None:
        call = self._agent.answered(await self._agent.exchange("memory-offer"))
        self._tasks = [asyncio.create_task(self._send(call)), asyncio.create_task(self._receive(call))]
        self.last_audio_at = time.monotonic()

    async def _send(self, call: MemoryCall) -> None:
        while True:
            try:
                frame = await self._outbound.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, av.AudioFrame)
            call.hear(bytes(frame.planes[0])[:BYTES_PER_FRAME])

    async def _receive(self, call: MemoryCall) -> None:
        while (pcm := await call.outbox.get()) is not None:
            self.last_audio_at = time.monotonic()
            self._on_audio(pcm)
        self._end("the agent ended its audio")

    def _end(self, reason: str) -> None:
        if not self.ended.is_set():
            self.reason = reason
            self.ended.set()

    async def close(self) -> None:
        self._end("closed")
        await cancel_and_wait(*self._tasks)


@dataclass
class Rig:
    agent: MemoryAgent
    bridge: Bridge
    source: FrameQueue
    sink: MemorySink
    events: Events


@contextlib.asynccontextmanager
async def bridged(agent: MemoryAgent, **options: Any) -> AsyncIterator[Rig]:
    """A started bridge between an in-memory meeting, sink and agent; closed on exit."""
    source, sink, events = FrameQueue(100), MemorySink(), Events()
    bridge = Bridge(agent, source, sink, BridgeOptions(**options), events, links=MemoryLink)
    await bridge.start()
    try:
        yield Rig(agent, bridge, source, sink, events)
    finally:
        await bridge.close()


async def until(condition: Callable[[], bool], timeout_s: float = 0.5) -> None:
    """Polls `condition` (the states it reads have no events of their own; 5 ms is cheap in memory)."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def wav_frames(directory: Path) -> list[int]:
    """Samples in each WAV the bridge recorded into `directory` (meeting → agent, then agent → meeting)."""
    counts = []
    for pattern in ("*-meeting-to-agent.wav", "*-agent-to-meeting.wav"):
        (path,) = directory.glob(pattern)
        with wave.open(str(path), "rb") as wav:
            counts.append(wav.getnframes())
    return counts


def speak(source: FrameQueue, frames: list[bytes]) -> None:
    for pcm in frames:
        source.put(PcmFrame(pcm, time.monotonic()))


def kinds(events: Events) -> list[str]:
    return [e.kind for e in events.seen]


@pytest.fixture(autouse=True)
async def no_stray_tasks() -> AsyncIterator[None]:
    """A closed bridge leaves no task running (capture, playback, supervisor, link pumps)."""
    yield
    stray = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert not stray


# --- tests -------------------------------------------------------------------------------------------


async def test_the_stand_ins_implement_the_real_interfaces() -> None:
    sink, agent = MemorySink(), MemoryAgent()
    assert isinstance(FrameQueue(1), FrameSource) and isinstance(sink, FrameSink)
    assert isinstance(agent, AgentEndpoint)
    link: Link = MemoryLink(agent, PcmTrack(FrameQueue(1)), sink.written.append)
    assert not link.ended.is_set()


async def test_meeting_audio_reaches_the_agent_and_its_reply_the_sink(tmp_path: Path) -> None:
    beep = tone(440, 0.2)
    frames = [beep[i : i + BYTES_PER_FRAME] for i in range(0, len(beep), BYTES_PER_FRAME)]
    async with bridged(MemoryAgent(), record_dir=tmp_path) as rig:
        await until(lambda: len(rig.agent.calls[0].heard) >= 1)  # sending: nothing queued is stale now
        speak(rig.source, frames)
        await until(lambda: len(rig.sink.loud) == len(frames))
        assert rig.agent.calls[0].heard_loud == frames
        assert rig.sink.loud == frames
        s = rig.bridge.stats
        assert s.frames_out >= 10 and s.frames_in == s.frames_out  # the echo returns every frame
        assert s.bytes_in == s.frames_in * BYTES_PER_FRAME
        assert (s.dropped_out, s.dropped_in, s.reconnects) == (0, 0, 0)
        assert s.connected_at is not None
        # The echo answers in the same instant: the reply clock sees one onset out and one back.
        assert len(rig.bridge.reply_delays_ms) == 1 and 0 <= rig.bridge.reply_delays_ms[0] < 5
        assert kinds(rig.events) == ["agent_connected"]
    assert wav_frames(tmp_path) == [s.frames_out * SAMPLES_PER_FRAME, s.frames_in * SAMPLES_PER_FRAME]


async def test_stale_meeting_audio_is_not_sent_nor_counted() -> None:
    agent = MemoryAgent(MemoryCall(echo=False))
    source, sink = FrameQueue(100), MemorySink()
    speak(source, [numbered(i) for i in range(30)])  # captured before the agent was connected
    bridge = Bridge(agent, source, sink, BridgeOptions(), links=MemoryLink)
    await bridge.start()
    try:
        await until(lambda: len(agent.calls[0].heard) >= 3)
        assert agent.calls[0].heard_loud == []
        assert bridge.stats.dropped_out == 0
    finally:
        await bridge.close()
        await bridge.close()  # idempotent


async def test_meeting_backlog_beyond_the_limit_is_dropped_oldest_first_and_counted() -> None:
    async with bridged(MemoryAgent(MemoryCall(echo=False)), max_send_backlog_frames=10) as rig:
        call = rig.agent.calls[0]
        await until(lambda: len(call.heard) >= 2)
        speak(rig.source, [numbered(i) for i in range(30)])  # a stall: 30 frames at once
        await until(lambda: number_of(call.heard[-1]) == 29 if call.heard_loud else False)
        sent = [number_of(pcm) for pcm in call.heard_loud]
        assert sent[-10:] == list(range(20, 30))  # the newest went out
        assert rig.bridge.stats.dropped_out + len(sent) == 30


async def test_agent_hanging_up_leads_to_reconnect_and_audio_flows_again() -> None:
    async with bridged(MemoryAgent(MemoryCall(hang_up_after=5)), reconnect_backoff_s=0.01) as rig:
        back = await rig.events.wait_for(lambda e: e.kind == "agent_connected" and e.attempt == 1, 0.5)
        assert back.detail == "memory agent"
        await until(lambda: len(rig.agent.calls[1].heard) >= 1)
        speak(rig.source, [numbered(i) for i in range(3)])
        await until(lambda: len(rig.sink.loud) == 3)
        assert len(rig.agent.calls) == 2 and rig.agent.calls[1].heard_loud == rig.sink.loud
        assert kinds(rig.events) == ["agent_connected", "agent_reconnecting", "agent_connected"]
        reconnecting = rig.events.seen[1]
        assert reconnecting.attempt == 1 and "the agent ended its audio" in reconnecting.detail
        assert rig.bridge.stats.reconnects == 1 and not rig.bridge.lost


async def test_silent_agent_trips_the_watchdog() -> None:
    agent = MemoryAgent(MemoryCall(freeze_after=2))
    async with bridged(agent, stall_timeout_s=0.15, reconnect_backoff_s=0.01) as rig:
        t0 = time.monotonic()
        event = await rig.events.wait_for(lambda e: e.kind == "agent_reconnecting", 0.6)
        assert "no audio from the agent" in event.detail
        assert 0.15 <= time.monotonic() - t0 < 0.4  # the stall timeout plus at most one look
        await rig.events.wait_for(lambda e: e.kind == "agent_connected" and e.attempt == 1, 0.5)
        assert rig.bridge.stats.reconnects == 1


async def test_agent_lost_after_bounded_attempts() -> None:
    async with bridged(MemoryAgent(), max_reconnects=2, reconnect_backoff_s=0.01) as rig:
        rig.agent.go_away(AgentUnavailable("the memory agent is unreachable"))
        await asyncio.wait_for(rig.bridge.wait_lost(), 0.5)
        assert kinds(rig.events) == [
            "agent_connected",
            "agent_reconnecting",
            "agent_reconnecting",
            "agent_lost",
        ]
        assert [e.attempt for e in rig.events.seen[1:3]] == [1, 2]
        assert "unreachable" in rig.events.seen[-1].detail
        assert len(rig.agent.offers) == 3 and rig.bridge.lost


async def test_a_terminal_error_stops_reconnecting_at_once() -> None:
    async with bridged(MemoryAgent(), max_reconnects=5, reconnect_backoff_s=0.01) as rig:
        rig.agent.go_away(AgentAuthError("the key was refused"))
        await asyncio.wait_for(rig.bridge.wait_lost(), 0.5)
        assert kinds(rig.events) == ["agent_connected", "agent_reconnecting", "agent_lost"]
        assert rig.events.seen[-1].detail == "the key was refused"


async def test_with_reconnecting_off_a_hang_up_loses_the_agent() -> None:
    async with bridged(MemoryAgent(MemoryCall(hang_up_after=1)), max_reconnects=0) as rig:
        await asyncio.wait_for(rig.bridge.wait_lost(), 0.5)
        assert kinds(rig.events) == ["agent_connected", "agent_lost"]
        assert "reconnecting is off" in rig.events.seen[-1].detail


async def test_first_connection_failure_fails_start_and_cleans_up() -> None:
    agent = MemoryAgent()
    agent.refuse = AgentAuthError("the key was refused")
    events = Events()
    bridge = Bridge(agent, FrameQueue(10), MemorySink(), BridgeOptions(), events, links=MemoryLink)
    with pytest.raises(AgentAuthError):
        await bridge.start()
    assert events.seen == [] and not bridge.lost
    await bridge.close()


async def test_a_burst_of_agent_silence_is_trimmed_to_the_playback_target() -> None:
    # 30 silent frames at once (a decoder burst at connect): past 40 ms ahead, silence is skipped.
    async with bridged(MemoryAgent(MemoryCall(echo=False)), playback_queue_frames=50) as rig:
        rig.agent.calls[0].say(*[SILENT_FRAME] * 30)
        await until(lambda: rig.bridge.stats.trimmed_in + len(rig.sink.written) == 30)
        assert len(rig.sink.written) <= 4  # 40 ms: about two frames ahead, plus the one playing
        assert rig.bridge.stats.dropped_in == 0  # trimming silence loses no sound


async def test_agent_audio_far_behind_is_dropped_oldest_first_and_counted() -> None:
    # 40 loud frames at once into a 25-frame playback queue: the 15 oldest overflow; of the rest, what
    # would play more than 300 ms ahead is dropped too. Both are counted; the newest-first order holds.
    async with bridged(MemoryAgent(MemoryCall(echo=False))) as rig:
        rig.agent.calls[0].say(*[numbered(i) for i in range(40)])
        await until(lambda: rig.bridge.stats.dropped_in + len(rig.sink.written) == 40)
        played = [number_of(pcm) for pcm in rig.sink.written]
        assert played[0] == 15 and played == list(range(15, 15 + len(played)))
        assert 15 <= len(played) <= 17  # 300 ms ahead of the clock: 16 frames
        assert rig.bridge.stats.trimmed_in == 0


async def test_failed_audio_is_reported_then_replaced_while_the_agent_stays() -> None:
    # The devices' owner (the session's audio guard) rebuilds them; the agent session is not touched.
    async with bridged(MemoryAgent()) as rig:
        rig.sink.broken = BrokenPipeError("pacat is gone")
        rig.source.end()
        rig.agent.calls[0].say(numbered(0))
        await until(lambda: kinds(rig.events).count("audio_stopped") == 2)
        details = [e.detail for e in rig.events.seen if e.kind == "audio_stopped"]
        assert any("playback stopped: pacat is gone" in d for d in details), details
        assert not rig.bridge.lost
        source, sink = FrameQueue(100), MemorySink()
        await rig.bridge.replace_audio(source, sink)
        speak(source, [numbered(i) for i in range(1, 4)])
        await until(lambda: [number_of(p) for p in sink.loud] == [1, 2, 3])
        assert len(rig.agent.calls) == 1 and not rig.bridge.lost


async def test_a_recording_that_cannot_be_written_stops_and_the_call_goes_on(tmp_path: Path) -> None:
    async with bridged(MemoryAgent(), record_dir=tmp_path) as rig:
        assert rig.bridge._recorders is not None
        for recorder in rig.bridge._recorders:
            recorder._wav._file = _FullDisk()  # type: ignore[union-attr]  # the disk fills up
        await until(lambda: len(rig.agent.calls[0].heard) >= 1)
        speak(rig.source, [numbered(i) for i in range(3)])
        await until(lambda: [number_of(p) for p in rig.sink.loud] == [0, 1, 2])
        stopped = [e for e in rig.events.seen if e.kind == "recording_stopped"]
        assert len(stopped) == 1 and "No space left on device" in stopped[0].detail
        assert not rig.bridge.lost


class _FullDisk:
    """A file whose every write fails as on a full disk."""

    def write(self, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    def flush(self) -> None:
        raise OSError(28, "No space left on device")

    def tell(self) -> int:
        return 0


async def test_the_agent_hears_silence_once_the_meeting_audio_ends() -> None:
    async with bridged(MemoryAgent(MemoryCall(echo=False))) as rig:
        rig.source.end()
        call = rig.agent.calls[0]
        await until(lambda: len(call.heard) >= 5)
        assert call.heard_loud == [] and not rig.bridge.lost
