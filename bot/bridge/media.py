"""PCM ⇄ aiortc frames: the outbound track, the inbound conversion, and a level meter.

Shared by the bridge and the local agent stand-in (both are aiortc peers moving 20 ms mono PCM).
"""

from __future__ import annotations

import collections
import fractions
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from bot.audio.frames import BYTES_PER_FRAME, FRAME_MS, SAMPLE_RATE, SAMPLES_PER_FRAME, FrameQueue

TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
FRAME_S = FRAME_MS / 1000
SILENT_FRAME = b"\x00" * BYTES_PER_FRAME


def pcm_to_frame(pcm: bytes, pts: int) -> av.AudioFrame:
    """One 20 ms s16le mono frame as an `av.AudioFrame` (what aiortc's Opus encoder takes)."""
    frame = av.AudioFrame(format="s16", layout="mono", samples=SAMPLES_PER_FRAME)
    frame.planes[0].update(pcm)
    frame.sample_rate = SAMPLE_RATE
    frame.time_base = TIME_BASE
    frame.pts = pts
    return frame


class ToMono:
    """Decoded frames → s16le mono 48 kHz bytes.

    The bot's own decoder (`codecs="inline"`) yields exactly that and is only copied out; aiortc's Opus
    decoder yields s16 stereo, which is downmixed.
    """

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None

    def convert(self, frame: object) -> bytes:
        if not isinstance(frame, av.AudioFrame):
            raise TypeError(f"expected an audio frame, got {type(frame).__name__}")
        if frame.format.name == "s16" and frame.layout.name == "mono" and frame.sample_rate == SAMPLE_RATE:
            # The plane's buffer is padded beyond the samples.
            return memoryview(frame.planes[0])[: frame.samples * 2].tobytes()
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        out = b""
        for mono in self._resampler.resample(frame):
            out += mono.to_ndarray().tobytes()
        return out


def is_silent(pcm: bytes, threshold: int = 32) -> bool:
    """True when no sample exceeds `threshold` (32 ≈ -60 dBFS): digital or decoded silence."""
    samples = np.frombuffer(pcm, dtype="<i2")
    return samples.size == 0 or int(np.abs(samples.astype(np.int32)).max()) <= threshold


class LevelMeter:
    """RMS level in dBFS over windows of `window` frames (a steady number for a display)."""

    def __init__(self, window: int = 25) -> None:
        self._window = window
        self._sum = 0.0
        self._n = 0
        self._count = 0
        self.dbfs = -120.0

    def add(self, pcm: bytes) -> float:
        """Adds a frame; returns that frame's own level in dBFS."""
        s = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        energy = float(np.dot(s, s))
        self._sum += energy
        self._n += s.size
        self._count += 1
        if self._count >= self._window:
            self.dbfs = _dbfs(self._sum, self._n)
            self._sum, self._n, self._count = 0.0, 0, 0
        return _dbfs(energy, s.size)


def _dbfs(energy: float, n: int) -> float:
    if n == 0:
        return -120.0
    rms = math.sqrt(energy / n) / 32768.0
    return 20 * math.log10(rms) if rms > 1e-6 else -120.0


class ReplyClock:
    """Time from a sound onset we send to the next onset we receive: the agent's reply delay.

    With an echo agent this is the transport round trip (capture onset → decoded reply onset); with a
    real agent it includes the agent's own thinking time. An onset is a frame louder than the threshold
    after at least `quiet_s` below it; its time is placed at the first loud sample (in that frame or the
    one before), so the figure is not quantized to 20 ms frames. Frame times are when the frame was
    handed to the encoder (sent) or came out of the decoder (received).
    """

    def __init__(self, threshold_dbfs: float = -30.0, quiet_s: float = 0.2, keep: int = 500) -> None:
        self._threshold = threshold_dbfs
        self._amplitude = 32768 * 10 ** (threshold_dbfs / 20)
        self._quiet_s = quiet_s
        self._out = _OnsetState()
        self._in = _OnsetState()
        self._pending: float | None = None
        self.delays_ms: collections.deque[float] = collections.deque(maxlen=keep)

    def sent(self, pcm: bytes, dbfs: float, at: float) -> None:
        onset = self._onset(self._out, pcm, dbfs, at)
        if onset is not None:
            self._pending = onset

    def received(self, pcm: bytes, dbfs: float, at: float) -> None:
        onset = self._onset(self._in, pcm, dbfs, at)
        if onset is not None and self._pending is not None:
            self.delays_ms.append((onset - self._pending) * 1000)
            self._pending = None

    def _onset(self, state: _OnsetState, pcm: bytes, dbfs: float, at: float) -> float | None:
        previous, state.previous = state.previous, pcm
        if dbfs <= self._threshold:
            return None
        quiet_before = at - state.last_loud >= self._quiet_s
        state.last_loud = at
        if not quiet_before:
            return None
        both = np.frombuffer(previous + pcm, dtype="<i2")
        first = int(np.argmax(np.abs(both.astype(np.int32)) > self._amplitude))
        offset = first - len(previous) // 2  # samples from the start of this frame (negative: before)
        return at + offset / SAMPLE_RATE


@dataclass
class _OnsetState:
    previous: bytes = b""
    last_loud: float = -math.inf


class PcmTrack(MediaStreamTrack):
    """An outbound audio track fed by a `FrameQueue` of 20 ms PCM frames.

    A live source paces itself, so a queued frame is sent at once. When nothing arrives for one frame
    plus `gap_s` (an idle null-sink monitor yields no data at all), a silent frame is sent instead and the
    20 ms cadence continues, so the far end never starves. Timestamps advance 960 samples per frame
    whatever the source: pts stay monotonic. Whatever was queued before the first frame is requested
    (before the media path was up) is stale and discarded; later, a backlog beyond `max_backlog` frames
    (after a stall) is dropped, oldest first, and counted: late audio is worth less than current audio.
    `on_sent(pcm)` sees every frame sent (stats, levels, recording).
    """

    kind = "audio"

    def __init__(
        self,
        queue: FrameQueue,
        on_sent: Callable[[bytes], None] | None = None,
        gap_s: float = 0.03,
        max_backlog: int = 10,
    ) -> None:
        super().__init__()
        self.queue = queue
        self.on_sent = on_sent
        self.gap_s = gap_s
        self.max_backlog = max_backlog
        self.frames = 0
        self.silent_frames = 0
        self._backlog_drops = 0
        self._queue_drops_at_start: int | None = None
        self._pts = 0
        self._due: float | None = None  # when the next frame is due if the source falls silent

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._due is None:
            self._due = now + FRAME_S
            self.queue.clear()
            self._queue_drops_at_start = self.queue.dropped
        while len(self.queue) > self.max_backlog:
            await self.queue.get()
            self._backlog_drops += 1
        pcm = await self._next(max(0.0, self._due + self.gap_s - now))
        now = time.monotonic()
        # Keep the 20 ms cadence, within a few frames of the wall clock either way.
        self._due = min(max(self._due + FRAME_S, now - 3 * FRAME_S), now + FRAME_S)
        frame = pcm_to_frame(pcm, self._pts)
        self._pts += SAMPLES_PER_FRAME
        self.frames += 1
        if self.on_sent is not None:
            self.on_sent(pcm)
        return frame

    @property
    def dropped(self) -> int:
        """Frames lost since this track started: its own backlog drops plus queue overflow."""
        if self._queue_drops_at_start is None:
            return 0
        return self._backlog_drops + self.queue.dropped - self._queue_drops_at_start

    async def _next(self, wait_s: float) -> bytes:
        frame = await self.queue.get_within(wait_s)
        if frame is None:
            self.silent_frames += 1
            return SILENT_FRAME
        return frame.data
