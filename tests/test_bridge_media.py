"""The bridge's media pieces on their own: the outbound track's pacing and the reply clock."""

from __future__ import annotations

import time

import av
import numpy as np
import pytest

from bot.audio.analysis import rms_dbfs, silence, tone
from bot.audio.frames import BYTES_PER_FRAME, FrameQueue, PcmFrame
from bot.bridge.media import SILENT_FRAME, LevelMeter, PcmTrack, ReplyClock, ToMono, is_silent, pcm_to_frame


async def test_track_fills_gaps_with_silence_and_keeps_pts_monotonic() -> None:
    queue = FrameQueue(50)
    track = PcmTrack(queue)
    t0 = time.monotonic()
    frames = [await track.recv() for _ in range(5)]  # nothing queued: silence at the 20 ms cadence
    elapsed = time.monotonic() - t0
    assert [f.pts for f in frames] == [0, 960, 1920, 2880, 3840]
    assert all(bytes(f.planes[0])[:BYTES_PER_FRAME] == SILENT_FRAME for f in frames)
    assert 0.08 <= elapsed < 1.0 and track.silent_frames == 5
    beep = tone(440, 0.02)
    queue.put(PcmFrame(beep, time.monotonic()))
    frame = await track.recv()
    assert frame.pts == 4800 and bytes(frame.planes[0])[:BYTES_PER_FRAME] == beep
    track.stop()


async def test_track_discards_stale_audio_at_start_and_drops_backlog_later() -> None:
    queue = FrameQueue(50)
    for _ in range(30):
        queue.put(PcmFrame(tone(440, 0.02), 0.0))  # captured before the media path was up
    track = PcmTrack(queue, max_backlog=3)
    first = await track.recv()
    assert bytes(first.planes[0])[:BYTES_PER_FRAME] == SILENT_FRAME  # stale audio was not sent
    assert track.dropped == 0  # ... nor counted as a drop
    for _ in range(6):
        queue.put(PcmFrame(tone(440, 0.02), 0.0))
    await track.recv()
    assert track.dropped == 3 and len(queue) == 2
    track.stop()


def test_reply_clock_places_onsets_at_the_first_loud_sample() -> None:
    clock = ReplyClock()
    meter = LevelMeter()

    def frame(onset_sample: int | None) -> bytes:
        if onset_sample is None:
            return silence(0.02)
        return silence(onset_sample / 48_000) + tone(440, (960 - onset_sample) / 48_000)

    for i in range(20):
        clock.sent(frame(None), -120.0, i * 0.02)
        clock.received(frame(None), -120.0, i * 0.02 + 0.001)
    sent = frame(100)
    clock.sent(sent, meter.add(sent), 1.0)
    echoed = frame(400)  # the same onset 300 samples later within its frame, 30 ms later
    clock.received(echoed, meter.add(echoed), 1.03)
    assert clock.delays_ms[-1] == pytest.approx(30 + 300 / 48, abs=0.1)


def test_pcm_helpers() -> None:
    assert is_silent(silence(0.02)) and not is_silent(tone(440, 0.02))
    frame = pcm_to_frame(tone(440, 0.02), 960)
    assert (frame.samples, frame.sample_rate, frame.pts, frame.layout.name) == (960, 48_000, 960, "mono")
    stereo = np.repeat(np.frombuffer(tone(440, 0.02), dtype="<i2"), 2).reshape(1, -1)
    decoded = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
    decoded.sample_rate = 48_000
    mono = ToMono().convert(decoded)
    assert len(mono) <= BYTES_PER_FRAME and rms_dbfs(mono) > -12
