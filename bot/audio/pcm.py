"""Raw PCM between PulseAudio and Python through long-lived `parec`/`pacat` children.

Format everywhere: s16le, 48 kHz, mono, 20 ms frames. PulseAudio downmixes the stereo meeting sink for us.
Both children run with an explicit `--latency-msec`: without it `parec` buffers and loses data.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bot.aio import cancel_and_wait

log = logging.getLogger(__name__)

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
    queue (`async for frame in queue`) makes it a frame source (`bot.audio.frames.FrameSource`) that ends
    once `end()` was called and the queue is drained.
    """

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be at least 1")
        self._frames: collections.deque[PcmFrame] = collections.deque()
        self._maxlen = maxlen
        self._ready = asyncio.Event()
        self._ended = False
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: PcmFrame) -> None:
        if len(self._frames) >= self._maxlen:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(frame)
        self._ready.set()

    async def get(self) -> PcmFrame:
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()
        return self._frames.popleft()

    def clear(self) -> int:
        """Discard everything queued (a stale backlog); returns how many frames were discarded."""
        n = len(self._frames)
        self._frames.clear()
        return n

    def end(self) -> None:
        """No more frames will come: iteration stops once what is queued has been taken."""
        self._ended = True
        self._ready.set()

    async def __aiter__(self) -> AsyncIterator[PcmFrame]:
        while True:
            while not self._frames:
                if self._ended:
                    return
                self._ready.clear()
                await self._ready.wait()
            yield self._frames.popleft()


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: run scripts/setup (Debian package pulseaudio-utils)")
    return path


async def _stop(proc: asyncio.subprocess.Process | None) -> None:
    if proc is None or proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 3)
    except TimeoutError:
        proc.kill()
        await proc.wait()


class PcmCapture:
    """Reads a PulseAudio source (e.g. `meeting_out.monitor`) into a `FrameQueue` of 20 ms frames.

    A frame source (`bot.audio.frames.FrameSource`): iterating it takes frames from `queue`, and ends
    when `parec` has exited.
    """

    def __init__(self, server: str, source: str, queue_frames: int = 50, latency_ms: int = 10) -> None:
        self.server = server
        self.source = source
        self.queue = FrameQueue(queue_frames)
        self.frames_read = 0
        self._latency_ms = latency_ms
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            _tool("parec"),
            f"--server={self.server}",
            f"--device={self.source}",
            "--raw",
            "--format=s16le",
            f"--rate={SAMPLE_RATE}",
            "--channels=1",
            f"--latency-msec={self._latency_ms}",
            "--client-name=bot-capture",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            # Own process group: a terminal's Ctrl+C goes to us, and we stop this child in order.
            start_new_session=True,
        )
        self._reader = asyncio.create_task(self._read(), name="pcm-capture")

    def __aiter__(self) -> AsyncIterator[PcmFrame]:
        return self.queue.__aiter__()

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        try:
            while True:
                data = await stdout.readexactly(BYTES_PER_FRAME)
                self.frames_read += 1
                self.queue.put(PcmFrame(data, time.monotonic()))
        except asyncio.IncompleteReadError:
            if not self._closed:
                log.warning("capture of %s stopped: parec exited", self.source)
        finally:
            self.queue.end()

    def discard_backlog(self) -> int:
        """Drop frames read so far, so a consumer that starts late does not get stale audio."""
        return self.queue.clear()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await _stop(self._proc)
        await cancel_and_wait(self._reader)


class PcmPlayback:
    """Writes 20 ms frames into a PulseAudio sink (e.g. `agent_out`) through `pacat`."""

    def __init__(self, server: str, sink: str, latency_ms: int = 20) -> None:
        self.server = server
        self.sink = sink
        self.frames_written = 0
        self._latency_ms = latency_ms
        self._proc: asyncio.subprocess.Process | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            _tool("pacat"),
            "--playback",
            f"--server={self.server}",
            f"--device={self.sink}",
            "--raw",
            "--format=s16le",
            f"--rate={SAMPLE_RATE}",
            "--channels=1",
            f"--latency-msec={self._latency_ms}",
            "--client-name=bot-playback",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            # Own process group: a terminal's Ctrl+C goes to us, and we stop this child in order.
            start_new_session=True,
        )

    async def write(self, pcm: bytes) -> None:
        """Queue PCM for playback; waits when PulseAudio's buffer is full (real-time pacing)."""
        if self._proc is None or self._proc.stdin is None or self._closed:
            raise RuntimeError("playback is not running")
        self._proc.stdin.write(pcm)
        await self._proc.stdin.drain()
        self.frames_written += len(pcm) // BYTES_PER_FRAME

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._proc is not None and self._proc.stdin is not None:
            with contextlib.suppress(Exception):
                self._proc.stdin.close()
        await _stop(self._proc)
