"""The seam between audio devices and whatever moves their audio: the frame, a frame source and a sink.

Shaped like pipecat's transport input/output and livekit's `AudioInput`/`AudioOutput`: a source is an
async iterator of 20 ms frames, a sink takes frames with `write()`. The bridge sees only these two, so the
same bridge runs on PulseAudio (`AudioDevices.open_streams()`: `parec`/`pacat`) or in memory (tests).

Format everywhere: s16le, 48 kHz, mono, 20 ms frames. The frame types live here, apart from the
`parec`/`pacat` processes (`bot.audio.pcm`), so that what moves audio needs nothing of PulseAudio.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

SAMPLE_RATE = 48_000
FRAME_MS = 20
SAMPLES_PER_FRAME = SAMPLE_RATE * FRAME_MS // 1000
BYTES_PER_FRAME = SAMPLES_PER_FRAME * 2


@dataclass(frozen=True)
class PcmFrame:
    """One 20 ms mono s16le frame and the monotonic time it was read or produced."""

    data: bytes
    at: float


class FrameQueue:
    """A bounded frame queue: when full, the oldest frame is dropped and counted, never the newest.

    Live audio must not build a backlog: a late frame is worth less than the current one. Iterating a
    queue (`async for frame in queue`) makes it a frame source (`FrameSource`) that ends
    once `end()` was called and the queue is drained.

    A waiting consumer is woken through a bare future, not an `asyncio.Event`, and `get_within()` waits
    with a plain timer, not `asyncio.timeout()`: 50 frames a second each way make these the bridge's most
    frequent waits, and the lighter forms cost a fraction of the others.
    """

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be at least 1")
        self._frames: collections.deque[PcmFrame] = collections.deque()
        self._maxlen = maxlen
        self._waiters: list[asyncio.Future[None]] = []
        self._ended = False
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def ended(self) -> bool:
        return self._ended

    def put(self, frame: PcmFrame) -> None:
        if len(self._frames) >= self._maxlen:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(frame)
        self._wake()

    async def get(self) -> PcmFrame:
        while not self._frames:
            await self._wait(None)
        return self._frames.popleft()

    async def get_within(self, timeout_s: float) -> PcmFrame | None:
        """The next frame, or None when none came within `timeout_s` (or the queue ended empty)."""
        if not self._frames and not self._ended:
            await self._wait(timeout_s)
        return self._frames.popleft() if self._frames else None

    def clear(self) -> int:
        """Discard everything queued (a stale backlog); returns how many frames were discarded."""
        n = len(self._frames)
        self._frames.clear()
        return n

    def end(self) -> None:
        """No more frames will come: iteration stops once what is queued has been taken."""
        self._ended = True
        self._wake()

    async def __aiter__(self) -> AsyncIterator[PcmFrame]:
        while True:
            while not self._frames:
                if self._ended:
                    return
                await self._wait(None)
            yield self._frames.popleft()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self, timeout_s: float | None) -> None:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        timer = None if timeout_s is None else loop.call_later(timeout_s, _expire, waiter)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@runtime_checkable
class FrameSource(Protocol):
    """Audio as it is captured: 20 ms frames stamped with the monotonic time they were read.

    A live source paces itself (one frame per 20 ms while there is sound) and may yield nothing at all
    for a while (an idle null-sink monitor). Iteration ends when the source stops for good.
    """

    def __aiter__(self) -> AsyncIterator[PcmFrame]: ...


@runtime_checkable
class FrameSink(Protocol):
    """Audio to play: `write()` takes s16le mono 48 kHz PCM, one or more whole 20 ms frames.

    A device sink plays in real time and `write()` waits while its buffer is full. Raises `RuntimeError`,
    `ConnectionError` or `BrokenPipeError` once it cannot play any more.
    """

    async def write(self, pcm: bytes) -> None: ...


__all__ = [
    "BYTES_PER_FRAME",
    "FRAME_MS",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "FrameQueue",
    "FrameSink",
    "FrameSource",
    "PcmFrame",
]
