"""The codec seam: Opus in mono on the event loop instead of aiortc's codec threads (bot/agent/codecs.py).

If aiortc moves what the seam relies on (its receiver's decoder queue, its remote tracks' frame queue, the
sender's packing of pre-encoded packets), these tests fail: the seam's checks raise, or no audio arrives.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from bot.agent.codecs import InlineDecoder, OpusMonoDecoder, OpusMonoEncoder, OpusTrack
from bot.agent.peer import (
    AiortcInternalsChanged,
    PeerOptions,
    decoder_of,
    new_peer_connection,
    replace_decoder,
    set_local_description,
    tune_receivers,
    tune_senders,
)
from bot.audio.analysis import dominant_frequency, tone
from bot.audio.frames import BYTES_PER_FRAME, FrameQueue, PcmFrame
from bot.bridge.media import PcmTrack, ToMono, pcm_to_frame

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=96)


def _frames(hz: float, n: int) -> list[bytes]:
    pcm = tone(hz, n * 0.02, 0.3)
    return [pcm[i : i + BYTES_PER_FRAME] for i in range(0, len(pcm), BYTES_PER_FRAME)]


def test_encoder_makes_one_packet_per_frame_stamped_960_apart_and_decodable_in_mono() -> None:
    encoder, decoder = OpusMonoEncoder(), OpusMonoDecoder()
    out = b""
    for i, pcm in enumerate(_frames(440, 25)):
        packets = encoder.encode(pcm_to_frame(pcm, i * 960))
        assert [p.pts for p in packets] == [i * 960]  # libopus says -312 first: ours start at 0
        for frame in decoder.decode(bytes(packets[0]), i * 960):
            assert (frame.format.name, frame.layout.name, frame.samples) == ("s16", "mono", 960)
            out += ToMono().convert(frame)
    assert abs(dominant_frequency(out[len(out) // 2 :]) - 440) < 5


def test_encoder_converts_frames_it_was_not_built_for() -> None:
    encoder = OpusMonoEncoder()
    stereo = av.AudioFrame.from_ndarray(np.zeros((1, 2 * 480), dtype="<i2"), format="s16", layout="stereo")
    stereo.sample_rate = 48_000
    packets = [p for _ in range(4) for p in encoder.encode(stereo)]  # 4 x 10 ms: two 20 ms packets
    assert [p.pts for p in packets] == [0, 960]


def test_to_mono_copies_mono_frames_and_downmixes_stereo() -> None:
    pcm = tone(440, 0.02, 0.3)
    assert ToMono().convert(pcm_to_frame(pcm, 0)) == pcm  # no padding of the plane leaks out
    stereo = np.repeat(np.frombuffer(pcm, "<i2"), 2).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
    frame.sample_rate = 48_000
    assert ToMono().convert(frame) == pcm


async def test_opus_track_encodes_its_source_and_stops_it_too() -> None:
    frames = FrameQueue(50)
    source = PcmTrack(frames)
    track = OpusTrack(source)
    for pcm in _frames(440, 3):
        frames.put(PcmFrame(pcm, time.monotonic()))
    first = await track.recv()  # the first request discards what was queued before: silence
    assert isinstance(first, av.Packet) and first.pts == 0 and first.time_base == Fraction(1, 48_000)
    track.stop()
    assert source.readyState == "ended"
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_inline_decoder_decodes_on_put_and_ends_the_thread_on_stop() -> None:
    frames: asyncio.Queue[Any] = asyncio.Queue()
    decoder = InlineDecoder(lambda: frames)
    encoder = OpusMonoEncoder()
    packet = encoder.encode(pcm_to_frame(_frames(440, 1)[0], 0))[0]
    decoder.put((OPUS, JitterFrame(data=bytes(packet), timestamp=0)))
    assert frames.qsize() == 1 and decoder.frames == 1
    decoder.put((OPUS, JitterFrame(data=b"\xff" * 3, timestamp=960)))  # garbage: counted, not raised
    assert decoder.errors + decoder.frames >= 2 and frames.qsize() <= 2

    done = threading.Event()

    def worker() -> None:  # what aiortc's decoder thread does with its queue
        decoder.get()
        done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    assert not done.wait(0.05)  # it idles until stop
    decoder.put(None)
    thread.join(2)
    assert done.is_set()


def test_decoder_seam_fails_loudly_when_aiortc_internals_move() -> None:
    class Moved(RTCRtpReceiver):  # a receiver whose decoder queue lives elsewhere
        def __init__(self) -> None:
            pass

    with pytest.raises(AiortcInternalsChanged, match="decoder_queue"):
        replace_decoder(Moved())

    class Started(RTCRtpReceiver):
        def __init__(self) -> None:
            self._RTCRtpReceiver__decoder_queue: queue.Queue[Any] = queue.Queue()
            self._RTCRtpReceiver__decoder_thread = threading.current_thread()

    with pytest.raises(RuntimeError, match="started"):
        replace_decoder(Started())


async def test_seams_install_and_offer_opus_only() -> None:
    pc = new_peer_connection(PeerOptions.loopback())
    try:
        pc.addTrack(PcmTrack(FrameQueue(5)))
        tune_receivers(pc, PeerOptions.loopback(codecs="aiortc"))
        tune_senders(pc, PeerOptions.loopback(codecs="aiortc"))
        receiver = pc.getTransceivers()[0].receiver
        assert isinstance(decoder_of(receiver), queue.Queue)  # aiortc's own
        tune_receivers(pc, PeerOptions.loopback())
        tune_senders(pc, PeerOptions.loopback())
        tune_senders(pc, PeerOptions.loopback())  # idempotent: one wrapper
        assert isinstance(decoder_of(receiver), InlineDecoder)
        sender = pc.getTransceivers()[0].sender
        assert isinstance(sender.track, OpusTrack) and isinstance(sender.track.source, PcmTrack)
        sdp = await set_local_description(pc, await pc.createOffer(), PeerOptions.loopback())
        rtpmaps = [line for line in sdp.splitlines() if line.startswith("a=rtpmap:")]
        assert rtpmaps and all("opus/48000/2" in line for line in rtpmaps)
    finally:
        await pc.close()


class _Listener:
    """The far end: a plain aiortc peer (its own codec threads, or ours) that keeps what it hears."""

    def __init__(self, options: PeerOptions) -> None:
        self.options = options
        self.pc = new_peer_connection(options)
        self.heard = b""
        self.frames: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.ended = asyncio.Event()

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.create_task(self._listen(track)))

    async def _listen(self, track: MediaStreamTrack) -> None:
        to_mono = ToMono()
        try:
            while True:
                frame = await track.recv()
                self.frames.append(frame)
                self.heard += to_mono.convert(frame)
        except MediaStreamError:
            self.ended.set()

    async def answer(self, offer: str, reply: MediaStreamTrack) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        tune_receivers(self.pc, self.options)
        self.pc.addTrack(reply)
        tune_senders(self.pc, self.options)
        return await set_local_description(self.pc, await self.pc.createAnswer(), self.options)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()


async def _call(ours: PeerOptions, theirs: PeerOptions) -> tuple[_Listener, _Listener]:
    """Two real aiortc peers on loopback, each sending a tone for 1 s; returns (us, them) after."""
    us, them = _Listener(ours), _Listener(theirs)
    our_frames, their_frames = FrameQueue(100), FrameQueue(100)
    try:
        pc: RTCPeerConnection = us.pc
        pc.addTrack(PcmTrack(our_frames))
        tune_receivers(pc, ours)
        tune_senders(pc, ours)
        offer = await set_local_description(pc, await pc.createOffer(), ours)
        answer = await them.answer(offer, PcmTrack(their_frames))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        for a, b in zip(_frames(440, 60), _frames(660, 60), strict=True):
            our_frames.put(PcmFrame(a, time.monotonic()))
            their_frames.put(PcmFrame(b, time.monotonic()))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
    finally:
        await them.close()
        await us.close()
    return us, them


@pytest.mark.parametrize("theirs", ["aiortc", "inline"])
async def test_audio_flows_both_ways_through_the_seams(theirs: str, monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    encoded_in_threads: list[str] = []
    run_in_executor = loop.run_in_executor

    def counting(executor: Any, func: Any, *args: Any) -> Any:
        if "encode" in getattr(func, "__qualname__", ""):
            encoded_in_threads.append(func.__qualname__)
        return run_in_executor(executor, func, *args)

    monkeypatch.setattr(loop, "run_in_executor", counting)
    us, them = await _call(PeerOptions.loopback(), PeerOptions.loopback(codecs=theirs))
    # Only aiortc's own encoder (theirs, when they keep its threads) goes through the thread pool.
    assert bool(encoded_in_threads) == (theirs == "aiortc")
    # Each side heard the other's tone; ours was decoded in mono by the inline decoder.
    assert abs(dominant_frequency(them.heard[-48_000:]) - 440) < 5
    assert abs(dominant_frequency(us.heard[-48_000:]) - 660) < 5
    assert us.frames and all(f.layout.name == "mono" for f in us.frames)
    assert len(us.heard) > 0.6 * 96_000
    # Closing stopped aiortc's (idle) decoder threads.
    assert not [t for t in threading.enumerate() if t.name == "audio-decoder"]


def test_codecs_option_is_validated_and_read_from_settings() -> None:
    from bot.settings import SettingsError, load_settings

    with pytest.raises(ValueError, match="codecs"):
        PeerOptions(codecs="threads")
    assert PeerOptions().codecs == "inline"
    layer = {"agent": {"agent_id": "a"}}
    env = {"BOT_AGENT_CODECS": "aiortc"}
    assert load_settings(None, env, layer, require_key=False).agent.peer_options().codecs == "aiortc"
    with pytest.raises(SettingsError, match=r"agent\.codecs"):
        load_settings(None, {"BOT_AGENT_CODECS": "threads"}, layer, require_key=False)
