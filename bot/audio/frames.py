"""The seam between audio devices and whatever moves their audio: a frame source and a frame sink.

Shaped like pipecat's transport input/output and livekit's `AudioInput`/`AudioOutput`: a source is an
async iterator of 20 ms frames, a sink takes frames with `write()`. The bridge sees only these two, so the
same bridge runs on PulseAudio (`AudioDevices.open_streams()`: `parec`/`pacat`) or in memory (tests).

Format everywhere: s16le, 48 kHz, mono, 20 ms frames (`bot.audio.pcm`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from bot.audio.pcm import PcmFrame


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


__all__ = ["FrameSink", "FrameSource"]
