"""Real PulseAudio: the devices exist, carry sound where they should, and vanish on close."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import numpy as np
import pulsectl
import pytest

from bot.audio import AudioDevices, PcmCapture, PcmPlayback, streams
from bot.audio.analysis import dominant_frequency, rms_dbfs, silence, tone
from bot.audio.devices import PulseDaemon
from bot.audio.frames import FrameQueue, PcmFrame
from bot.audio.streams import wait_for_streams
from bot.system.processes import stop_process

pytestmark = pytest.mark.pulse


async def _record(capture: PcmCapture, seconds: float) -> bytes:
    frames = []
    for _ in range(int(seconds * 50)):
        frames.append((await asyncio.wait_for(capture.queue.get(), 2)).data)
    return b"".join(frames)


async def _pactl(server: str, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "pactl", f"--server={server}", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return out.decode()


async def _formats(server: str, kind: str) -> dict[str, str]:
    """Sample format of each of the server's `kind` ("sinks" or "sources"), by name."""
    out = await _pactl(server, "list", "short", kind)
    return {line.split()[1]: line.split()[3] for line in out.splitlines()}


async def test_devices_exist_at_48k(devices: AudioDevices) -> None:
    # pactl's own listing: pulsectl's sample_spec structs can be read after libpulse freed them.
    b = devices.browser
    out = await _pactl(b.server, "list", "short", "sinks")
    sinks = {line.split()[1]: line for line in out.splitlines()}
    assert "float32le 2ch 48000Hz" in sinks[devices.names.meeting_sink]  # Chromium's own format
    assert "s16le 1ch 48000Hz" in sinks[devices.names.agent_sink]
    out = await _pactl(b.server, "list", "short", "sources")
    assert any(line.split()[1] == b.source and "48000Hz" in line for line in out.splitlines())
    with pulsectl.Pulse("test", server=b.server) as pulse:
        assert pulse.server_info().default_sink_name == b.sink
        assert pulse.server_info().default_source_name == b.source


async def test_meeting_sink_tone_is_captured_and_mic_hears_only_agent(
    devices: AudioDevices,
) -> None:
    b = devices.browser
    # The bridge's side (the meeting's sound in, the agent's voice out), then the browser's side.
    streams = await devices.open_streams()
    meeting, into_agent_sink = streams.source, streams.sink
    mic = PcmCapture(b.server, b.source)
    into_meeting = PcmPlayback(b.server, b.sink)
    for part in (mic, into_meeting):
        await part.start()
    # Reclocking before the streams connect leaves the sinks asleep (up to 2 s): wait for them first.
    await wait_for_streams(b.server, (mic.pid, into_meeting.pid))
    await devices.reclock()
    try:
        # Sound played into the meeting sink reaches the monitor, and must not reach the microphone.
        writer = asyncio.create_task(into_meeting.write(tone(440, 1.5)))
        await asyncio.sleep(0.5)
        meeting.discard_backlog()
        mic.discard_backlog()
        heard = await _record(meeting, 0.6)
        on_mic = await _record(mic, 0.6)
        await writer
        assert abs(dominant_frequency(heard) - 440) < 5
        assert rms_dbfs(on_mic) < -80

        # Sound played into the agent sink is what the virtual microphone carries.
        writer = asyncio.create_task(into_agent_sink.write(tone(660, 1.5)))
        await asyncio.sleep(0.5)
        mic.discard_backlog()
        heard = await _record(mic, 0.6)
        await writer
        assert abs(dominant_frequency(heard) - 660) < 5
    finally:
        for part in (into_meeting, mic):
            await part.close()
        await streams.close()


async def test_a_browser_player_arriving_while_the_meeting_sink_sleeps_is_heard_at_its_pitch(
    devices: AudioDevices,
) -> None:
    """Chromium plays float32le stereo, and opens its output when a call's audio starts or after PulseAudio
    came back: possibly while the meeting sink is suspended (asleep, or being reclocked) and our capture
    already records its monitor. PulseAudio 16 with `avoid-resampling` then reconfigured the sink to
    float32le and left its monitor at s16le: the capture read float samples as s16, a full-scale buzz at
    half the pitch. The capture must hear the tone."""
    b = devices.browser
    streams = await devices.open_streams()
    await _pactl(b.server, "suspend-sink", b.sink, "1")
    player = await asyncio.create_subprocess_exec(
        "pacat", "--playback", f"--server={b.server}", f"--device={b.sink}", "--raw", "--format=float32le",
        "--rate=48000", "--channels=2", "--latency-msec=20", "--client-name=browser-like",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert player.stdin is not None
    try:
        await wait_for_streams(b.server, (player.pid,))
        await _pactl(b.server, "suspend-sink", b.sink, "0")
        mono = np.frombuffer(tone(440, 2.0), dtype="<i2").astype("<f4") / 32768
        player.stdin.write(np.repeat(mono, 2).tobytes())  # the same sound on both channels
        await asyncio.sleep(0.5)
        streams.source.discard_backlog()
        heard = await _record(streams.source, 0.6)
        sinks, specs = await _formats(b.server, "sinks"), await _formats(b.server, "sources")
        assert abs(dominant_frequency(heard) - 440) < 5 and -12 < rms_dbfs(heard) < -6, (
            f"{dominant_frequency(heard):.0f} Hz at {rms_dbfs(heard):.1f} dBFS; sources: {specs}"
        )
        assert specs[devices.meeting_monitor] == sinks[b.sink], (specs, sinks)
    finally:
        player.stdin.close()
        await stop_process(player)
        await streams.close()


async def test_silence_stays_silence(devices: AudioDevices) -> None:
    # An idle null sink's monitor yields no data at all, so a player keeps the sink running: the
    # bridge's outbound track fills such gaps with silence itself.
    b = devices.browser
    meeting = (await devices.open_streams()).source
    player = PcmPlayback(b.server, b.sink)
    await player.start()
    await wait_for_streams(b.server, (player.pid,))
    await devices.reclock()
    try:
        writer = asyncio.create_task(player.write(silence(1.0)))
        heard = await _record(meeting, 0.5)
        await writer
        assert rms_dbfs(heard) < -80
        assert dominant_frequency(heard) == 0.0
    finally:
        await player.close()


async def test_close_is_idempotent_and_removes_daemon(devices: AudioDevices) -> None:
    pid = devices.daemon_pid
    assert pid is not None
    streams = await devices.open_streams()
    await devices.close()
    await devices.close()
    async with asyncio.timeout(2):
        async for _ in streams.source:  # the streams closed with the devices: the source ends
            pass
    with pytest.raises(RuntimeError, match="not running"):
        await streams.sink.write(silence(0.02))
    with pytest.raises(pulsectl.PulseError):
        pulsectl.Pulse("test", server=devices.address)


async def test_attach_to_existing_server_unloads_its_modules() -> None:
    daemon = PulseDaemon()
    await daemon.start()
    try:
        with pulsectl.Pulse("test", server=daemon.server) as pulse:
            before = {m.index for m in pulse.module_list()}
        a, b = AudioDevices(server=daemon.server), AudioDevices(server=daemon.server)
        await a.start()
        await b.start()
        assert a.names.meeting_sink != b.names.meeting_sink
        await a.close()
        await b.close()
        with pulsectl.Pulse("test", server=daemon.server) as pulse:
            assert {m.index for m in pulse.module_list()} == before
    finally:
        await daemon.close()


async def test_frame_queue_drops_oldest_and_counts() -> None:
    q = FrameQueue(3)
    for i in range(5):
        q.put(PcmFrame(bytes([i]), float(i)))
    assert q.dropped == 2
    assert [(await q.get()).data for _ in range(3)] == [b"\x02", b"\x03", b"\x04"]
    q.put(PcmFrame(silence(0.02), 0.0))
    assert q.clear() == 1


async def test_frame_queue_waits_wake_and_time_out() -> None:
    q = FrameQueue(3)
    t0 = asyncio.get_running_loop().time()
    assert await q.get_within(0.05) is None  # nothing came: None after the timeout
    assert asyncio.get_running_loop().time() - t0 >= 0.04
    waiters = [asyncio.create_task(q.get()), asyncio.create_task(q.get_within(5))]
    await asyncio.sleep(0)
    q.put(PcmFrame(b"\x01", 0.0))
    q.put(PcmFrame(b"\x02", 0.0))
    assert sorted(f.data for f in await asyncio.gather(*waiters) if f is not None) == [b"\x01", b"\x02"]
    late = asyncio.create_task(q.get_within(5))
    await asyncio.sleep(0)
    q.end()
    assert await late is None and q.ended
    assert [f async for f in q] == []  # an ended, drained queue ends iteration


async def test_capture_delivers_whole_frames_once_each_and_ends_with_parec(devices: AudioDevices) -> None:
    # parec's output reaches us over loopback TCP with a receive low-water mark: one wake per frame.
    b = devices.browser
    capture = PcmCapture(b.server, devices.meeting_monitor)
    player = PcmPlayback(b.server, b.sink)
    await capture.start()
    await player.start()
    await wait_for_streams(b.server, (capture.pid, player.pid))
    await devices.reclock()
    writer = asyncio.create_task(player.write(tone(440, 2.0)))
    try:
        await asyncio.sleep(0.3)
        capture.discard_backlog()
        frames = [await asyncio.wait_for(capture.queue.get(), 2) for _ in range(40)]
        assert all(len(f.data) == 1920 for f in frames)
        assert abs(dominant_frequency(b"".join(f.data for f in frames)) - 440) < 5
        # Frames are stamped as they complete: 40 of them span about 0.8 s of arrival times.
        assert 0.5 < frames[-1].at - frames[0].at < 1.5
    finally:
        writer.cancel()
        await player.close()
    assert capture.pid is not None
    os.kill(capture.pid, signal.SIGTERM)  # parec goes away: the source ends once drained
    async with asyncio.timeout(5):
        async for _ in capture:
            pass
    await capture.close()


async def test_stream_watcher_reclocks_when_a_stream_joins_our_sinks_only(
    devices: AudioDevices, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The watcher listens for PulseAudio's events (no polling) and reclocks only for its sinks' streams.
    ours = (devices.names.meeting_sink,)
    reclocked = asyncio.Event()
    loop = asyncio.get_running_loop()
    original = streams._suspend_resume

    def suspend_resume(pulse: pulsectl.Pulse, names: tuple[str, ...]) -> None:
        if names == ours:  # (the devices' own watcher, on both sinks, calls it too)
            loop.call_soon_threadsafe(reclocked.set)
        original(pulse, names)

    monkeypatch.setattr(streams, "_suspend_resume", suspend_resume)
    b = devices.browser
    watcher = asyncio.create_task(streams.SinkClock(b.server, ours).watch())
    elsewhere = PcmPlayback(b.server, devices.names.agent_sink)  # not a sink this clock watches
    joining = PcmPlayback(b.server, b.sink)
    try:
        await asyncio.sleep(0.3)
        await elsewhere.start()
        await wait_for_streams(b.server, (elsewhere.pid,))
        await asyncio.sleep(0.3)
        assert not reclocked.is_set()
        await joining.start()
        await asyncio.wait_for(reclocked.wait(), 3)
    finally:
        watcher.cancel()
        async with asyncio.timeout(2):  # cancelling stops its thread promptly
            await asyncio.gather(watcher, return_exceptions=True)
        for player in (joining, elsewhere):
            await player.close()
    await devices.close()  # and the devices' own watcher
    assert not [t for t in threading.enumerate() if t.name == "bot-stream-watch"]
