"""Opus for the bot's one mono voice, on the event loop: aiortc's codec threads and stereo left out.

Why: aiortc encodes every outbound frame in a thread pool (`run_in_executor`) and decodes every inbound
packet in a decoder thread that hands each frame back with `run_coroutine_threadsafe`. For 20 ms audio
frames these hand-offs cost more than the codec work: each wakes a thread and the event loop (a futex and
a self-pipe write), and each adds loop iterations. Profiled in bench-bridge (aiortc 1.16, a 2-core VM):
about 1,000 event-loop iterations and 1,400 futex calls a second for 50 frames each way. aiortc also
encodes our mono frames as stereo (resampling them up first), decodes to stereo, and we resampled that
back down to mono; its sender computes the RFC 6465 audio level in a Python loop over every sample
(~50 µs a frame). Here Opus runs mono, on the loop thread, straight through (encode ~60 µs, decode
~20 µs per 20 ms frame).

- `OpusTrack` wraps the bridge's PCM track and hands aiortc encoded packets: aiortc's public path for
  pre-encoded media (a track's `recv()` may return an `av.Packet`; the sender then only packetizes it with
  `OpusEncoder.pack`). Same bitrate and application as aiortc's encoder (96 kbit/s, voip), one channel.
- `InlineDecoder` takes the place of the receiver's decoder queue and decodes each packet as it is put,
  straight into the remote track's queue. The decoder thread aiortc starts still exists but only waits for
  the stop signal. Installing it is a seam into aiortc's internals: `bot.agent.peer.replace_decoder()`
  is the one place that does it, and checks them first.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import logging
import threading
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.codecs import get_decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000
SAMPLES_PER_FRAME = 960  # 20 ms: one Opus packet per frame
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
BITRATE = 96_000  # aiortc's own (for its stereo stream); the bitrate costs no CPU here

# The one codec the bot offers when its codecs run inline: the sender packs our Opus packets as they
# are, so the session must not settle on another codec. (Every WebRTC endpoint has Opus.)
OPUS = RTCRtpCodecCapability(mimeType="audio/opus", clockRate=SAMPLE_RATE, channels=2)


class OpusMonoEncoder:
    """20 ms s16 mono 48 kHz frames → Opus packets (one each), stamped with their own pts."""

    def __init__(self, bitrate: int = BITRATE) -> None:
        codec = av.CodecContext.create("libopus", "w")
        codec.bit_rate = bitrate
        codec.format = "s16"
        codec.layout = "mono"
        codec.sample_rate = SAMPLE_RATE
        codec.time_base = TIME_BASE
        codec.options = {"application": "voip"}
        self._codec: Any = codec
        # Other formats (never from the bridge's PcmTrack) are converted to 20 ms mono first.
        self._resampler: av.AudioResampler | None = None
        self._pts = 0

    def encode(self, frame: av.AudioFrame) -> list[av.Packet[Any]]:
        if frame.format.name == "s16" and frame.layout.name == "mono" and frame.samples == SAMPLES_PER_FRAME:
            frames = [frame]
        else:
            if self._resampler is None:
                self._resampler = av.AudioResampler(
                    format="s16", layout="mono", rate=SAMPLE_RATE, frame_size=SAMPLES_PER_FRAME
                )
            frames = self._resampler.resample(frame)
        packets: list[av.Packet[Any]] = []
        for mono in frames:
            for packet in self._codec.encode(mono):
                # libopus stamps the first packet -312 (its look-ahead); RTP wants 960 per packet from 0.
                packet.pts = self._pts
                packet.time_base = TIME_BASE
                self._pts += SAMPLES_PER_FRAME
                packets.append(packet)
        return packets


class OpusTrack(MediaStreamTrack):
    """An outbound track that yields Opus packets encoded from `source`'s PCM frames (no thread hop).

    aiortc's sender packs what this returns as it is: negotiate Opus only (`OPUS`). Stopping this track
    stops `source` too, as aiortc stops a sender's track when the connection closes.
    """

    kind = "audio"

    def __init__(self, source: MediaStreamTrack, bitrate: int = BITRATE) -> None:
        super().__init__()
        self.source = source
        self._encoder = OpusMonoEncoder(bitrate)
        self._pending: collections.deque[av.Packet[Any]] = collections.deque()

    async def recv(self) -> av.Packet[Any]:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        while not self._pending:
            frame = await self.source.recv()
            if not isinstance(frame, av.AudioFrame):
                raise TypeError(f"OpusTrack encodes audio frames, got {type(frame).__name__}")
            self._pending.extend(self._encoder.encode(frame))
        return self._pending.popleft()

    def stop(self) -> None:
        super().stop()
        self.source.stop()


class OpusMonoDecoder:
    """Opus packets → s16 mono 48 kHz frames. A stereo stream is downmixed by libopus itself."""

    def __init__(self) -> None:
        codec = av.CodecContext.create("libopus", "r")
        codec.format = "s16"
        codec.layout = "mono"
        codec.sample_rate = SAMPLE_RATE
        self._codec: Any = codec

    def decode(self, data: bytes, timestamp: int) -> list[av.AudioFrame]:
        packet = av.Packet(data)
        packet.pts = timestamp
        packet.time_base = TIME_BASE
        frames: list[av.AudioFrame] = self._codec.decode(packet)
        return frames


class InlineDecoder:
    """Takes the place of an aiortc receiver's decoder queue (see `bot.agent.peer.replace_decoder`).

    aiortc puts `(codec, JitterFrame)` for each playable packet, and `None` to stop; its decoder thread
    takes from the queue. Here `put()` decodes at once on the event loop (Opus in mono, any other codec with
    aiortc's decoder) and hands the frames to the remote track's queue; `get()` (the idle decoder
    thread's) returns `None` only once stop was put, and aiortc's thread then ends the track as before.
    """

    def __init__(self, output: Any) -> None:
        """`output`: a callable returning the remote track's `asyncio.Queue` (it exists only later)."""
        self._output = output
        self._queue: asyncio.Queue[Any] | None = None
        self._stopped = threading.Event()
        self._opus: OpusMonoDecoder | None = None
        self._others: dict[str, Any] = {}
        self.frames = 0
        self.errors = 0

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            self._stopped.set()
            return
        if self._stopped.is_set():
            return
        codec, encoded = item
        try:
            frames = self._decode(codec, encoded)
        except av.FFmpegError as e:
            self.errors += 1  # as aiortc does: keep the decoder's state and go on with the next packet
            log.debug("could not decode a %s packet: %s", codec.name, e)
            return
        if self._queue is None:
            self._queue = self._output()
        for frame in frames:
            self._queue.put_nowait(frame)
            self.frames += 1

    def put_nowait(self, item: Any) -> None:
        self.put(item)

    def get(self, block: bool = True, timeout: float | None = None) -> None:
        """Called by aiortc's decoder thread: waits until stop, then tells it to end the track."""
        self._stopped.wait()

    def _decode(self, codec: Any, encoded: JitterFrame) -> list[Any]:
        if codec.name.lower() == "opus":
            if self._opus is None:
                self._opus = OpusMonoDecoder()
            return self._opus.decode(encoded.data, encoded.timestamp)
        decoder = self._others.get(codec.name)
        if decoder is None:
            decoder = self._others[codec.name] = get_decoder(codec)
        frames: list[Any] = decoder.decode(encoded)
        return frames


__all__ = ["OPUS", "InlineDecoder", "OpusMonoDecoder", "OpusMonoEncoder", "OpusTrack"]
