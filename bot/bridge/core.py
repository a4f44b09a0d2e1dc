"""The bridge: meeting sound → agent, agent voice → virtual microphone, over one agent session at a time.

source (meeting sink monitor, parec) → FrameQueue → PcmTrack → link (aiortc) → agent
agent → link (aiortc) → decoded stereo → mono → FrameQueue → sink (pacat, agent sink → virtual mic)

The source and sink are a `FrameSource` and a `FrameSink` (`bot.audio.frames`): on a call, the bot's
PulseAudio streams (`AudioDevices.open_streams()`), which their owner opens and closes; in tests, memory.
A supervisor watches the session (inbound audio stalls, connection failed/closed, track ended) and replaces
it with a fresh one, a bounded number of times with backoff; every attempt is logged and reported.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from bot.agent.base import AgentEndpoint
from bot.agent.errors import AgentAuthError, AgentError, AgentNotFound
from bot.aio import cancel_and_wait, first_of
from bot.audio.frames import SAMPLE_RATE, FrameQueue, FrameSink, FrameSource, PcmFrame
from bot.bridge.link import Link, LinkFactory, aiortc_links
from bot.bridge.media import LevelMeter, PcmTrack, ReplyClock, is_silent
from bot.bridge.options import BridgeEvent, BridgeEventKind, BridgeOptions, BridgeStats
from bot.bridge.wav_recorder import WavRecorder, recording_paths

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 8.0
BYTES_PER_SECOND = SAMPLE_RATE * 2
_WATCH_INTERVAL_S = 0.25  # how often the stall watchdog looks (at most; a shorter stall timeout looks sooner)
_SLOW_CONNECT_S = 2.0  # a connection slower than this is logged (the event reports every one)
_SEND_QUEUE_FRAMES = 50  # meeting audio waiting for a session (1 s), oldest dropped beyond


class Bridge:
    """Moves audio both ways between a frame source/sink (the bot's devices) and an agent.

    `start()` raises `AgentError` when the first connection fails (bad key, unknown agent, unreachable);
    later outages are handled by reconnecting, and `wait_lost()` returns once the agent is given up on.
    The bridge reads `source` and writes `sink` but never starts or stops them: their owner does.
    `links` makes each agent session (default: WebRTC through aiortc with `options.peer`).
    """

    def __init__(
        self,
        endpoint: AgentEndpoint,
        source: FrameSource,
        sink: FrameSink,
        options: BridgeOptions | None = None,
        on_event: Callable[[BridgeEvent], None] | None = None,
        *,
        links: LinkFactory | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.options = options or BridgeOptions()
        self._on_event = on_event
        self._source = source
        self._sink = sink
        self._new_link = links or aiortc_links(self.options.peer)
        self._to_send = FrameQueue(_SEND_QUEUE_FRAMES)
        self._to_play = FrameQueue(self.options.playback_queue_frames)
        self._link: Link | None = None
        self._track: PcmTrack | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._audio_tasks: list[asyncio.Task[None]] = []  # capture and playback (replaced by replace_audio)
        self._recorders: tuple[WavRecorder, WavRecorder] | None = None
        self._lost = asyncio.Event()
        self._started = False
        self._closed = False
        self._stats = BridgeStats()
        self._meter_out = LevelMeter()
        self._meter_in = LevelMeter()
        self._reply_clock = ReplyClock()
        self._closed_track_drops = 0  # drops counted by the outbound tracks of past sessions
        self._late_in = 0  # agent frames dropped: playback too far behind
        self._trimmed_in = 0  # silent agent frames skipped to keep playback latency at its target

    # --- public -------------------------------------------------------------------------------------

    @property
    def stats(self) -> BridgeStats:
        s = self._stats
        s.level_out_dbfs = self._meter_out.dbfs
        s.level_in_dbfs = self._meter_in.dbfs
        # Capture overflow while no session is up (reconnecting) is not a drop: tracks count from start.
        track_drops = self._track.dropped if self._track is not None else 0
        s.dropped_out = self._closed_track_drops + track_drops
        s.dropped_in = self._to_play.dropped + self._late_in
        s.trimmed_in = self._trimmed_in
        delays = self._reply_clock.delays_ms
        s.reply_delay_ms = delays[-1] if delays else None
        return s

    @property
    def reply_delays_ms(self) -> list[float]:
        """Recent delays from a sound onset sent to the agent to the next onset received (see ReplyClock)."""
        return list(self._reply_clock.delays_ms)

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    async def wait_lost(self) -> None:
        """Returns when the agent is lost for good (reconnect attempts exhausted or a terminal error)."""
        await self._lost.wait()

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("a Bridge starts once")
        self._started = True
        try:
            if self.options.record_dir is not None:
                self._open_recording(self.options.record_dir)
            self._start_audio()
            self._link = await self._open_link()
            self._emit("agent_connected", self.endpoint.describe(), 0)
            self._tasks.append(asyncio.create_task(self._supervise(), name="bridge-supervisor"))
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stops everything this bridge started, in reverse order; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        await cancel_and_wait(*reversed(self._tasks), *self._audio_tasks)
        if self._link is not None:
            await self._link.close()
        self._stop_recording()

    async def replace_audio(self, source: FrameSource, sink: FrameSink) -> None:
        """Moves the bridge onto a new source and sink (the devices were rebuilt after PulseAudio failed);
        the agent session stays up. Frames queued for the old sink are dropped: they are late by now."""
        await cancel_and_wait(*self._audio_tasks)
        self._source, self._sink = source, sink
        self._to_play.clear()
        if not self._closed:
            self._start_audio()

    def _start_audio(self) -> None:
        self._audio_tasks = [
            asyncio.create_task(self._capture(), name="bridge-capture"),
            asyncio.create_task(self._play(), name="bridge-playback"),
        ]

    def _open_recording(self, directory: Path) -> None:
        try:
            out_path, in_path = recording_paths(directory)
            self._recorders = (WavRecorder(out_path), WavRecorder(in_path))
        except OSError as e:
            log.warning("not recording: %s", e)
            self._stop_recording()
            self._emit("recording_stopped", f"{e.strerror or e}: {directory}", 0)
            return
        log.info("recording to %s and %s", out_path, in_path)

    def _record(self, which: int, pcm: bytes) -> None:
        if self._recorders is None:
            return
        try:
            self._recorders[which].write(pcm)
        except OSError as e:
            # A full or failing disk must not end the call: the recording stops, the call goes on.
            paths = ", ".join(str(r.path) for r in self._recorders)
            log.warning("recording stopped: %s (%s)", e, paths)
            self._stop_recording()
            self._emit("recording_stopped", f"{e.strerror or e}: {paths}", 0)

    def _stop_recording(self) -> None:
        recorders, self._recorders = self._recorders, None
        for recorder in recorders or ():
            recorder.close()

    # --- audio paths --------------------------------------------------------------------------------

    def _sent(self, pcm: bytes) -> None:
        self._stats.frames_out += 1
        self._stats.bytes_out += len(pcm)
        self._reply_clock.sent(pcm, self._meter_out.add(pcm), time.monotonic())
        self._record(0, pcm)

    def _received(self, pcm: bytes) -> None:
        self._stats.frames_in += 1
        self._stats.bytes_in += len(pcm)
        self._reply_clock.received(pcm, self._meter_in.add(pcm), time.monotonic())
        self._record(1, pcm)
        self._to_play.put(PcmFrame(pcm, time.monotonic()))

    async def _capture(self) -> None:
        # Meeting audio waits here for the session's outbound track, which discards what was queued
        # before its media path was up and drops a backlog beyond `max_send_backlog_frames`.
        try:
            async for frame in self._source:
                self._to_send.put(frame)
        except Exception:
            log.exception("reading the meeting audio failed")
        log.warning("meeting audio stopped: the agent hears silence until it is replaced")
        self._emit("audio_stopped", "meeting audio capture stopped", 0)

    async def _play(self) -> None:
        # The sink (pacat) plays in real time, so anything written ahead of the clock is latency that never
        # drains by itself (decoder bursts at connect, a silence frame filled in by the far end's sender).
        # Track how far ahead we are; above the target, skip silent frames; far above, drop any frame.
        ahead_until = 0.0  # when everything written so far will have played (monotonic)
        target = self.options.playback_target_ms / 1000
        limit = self.options.playback_limit_ms / 1000
        try:
            while True:
                frame = await self._to_play.get()
                now = time.monotonic()
                ahead = max(0.0, ahead_until - now)
                if ahead > target and is_silent(frame.data):
                    self._trimmed_in += 1
                    continue
                if ahead > limit:
                    self._late_in += 1
                    continue
                await self._sink.write(frame.data)
                ahead_until = max(ahead_until, now) + len(frame.data) / BYTES_PER_SECOND
        except (RuntimeError, ConnectionError, BrokenPipeError) as e:
            # The devices' owner decides: rebuild them (`replace_audio`) or end the call.
            log.error("playback into the virtual microphone stopped: %s", e)
            self._emit("audio_stopped", f"playback stopped: {e}", 0)

    # --- sessions -----------------------------------------------------------------------------------

    async def _open_link(self) -> Link:
        started = time.monotonic()
        track = PcmTrack(self._to_send, on_sent=self._sent, max_backlog=self.options.max_send_backlog_frames)
        link = self._new_link(self.endpoint, track, self._received)
        try:
            await link.connect(self.options.connect_timeout_s)
        except BaseException:
            await link.close()
            raise
        # The track discards what was captured before the media path was up (stale audio).
        self._track = track
        self._stats.connected_at = time.time()
        self._stats.connect_s = round(time.monotonic() - started, 2)
        if self._stats.connect_s > _SLOW_CONNECT_S:
            log.warning("the agent took %.1f s to answer and connect", self._stats.connect_s)
        return link

    async def _supervise(self) -> None:
        while True:
            assert self._link is not None
            reason = await self._watch(self._link)
            log.warning("agent session ended: %s", reason)
            await self._link.close()
            self._link = None
            if self._track is not None:
                self._closed_track_drops += self._track.dropped
                self._track = None
            link = await self._reconnect(reason)
            if link is None:
                return
            self._link = link

    async def _watch(self, link: Link) -> str:
        stall = self.options.stall_timeout_s
        interval = min(_WATCH_INTERVAL_S, stall / 4)
        while True:
            if await first_of({"ended": link.ended.wait()}, interval) is not None:
                return link.reason
            quiet = time.monotonic() - link.last_audio_at
            if quiet > stall:
                return f"no audio from the agent for {quiet:.1f} s"

    async def _reconnect(self, reason: str) -> Link | None:
        total = self.options.max_reconnects
        for attempt in range(1, total + 1):
            delay = min(self.options.reconnect_backoff_s * 2 ** (attempt - 1), _MAX_BACKOFF_S)
            detail = f"{reason}; attempt {attempt} of {total} in {delay:.1f} s"
            log.warning("reconnecting to %s: %s", self.endpoint.describe(), detail)
            self._emit("agent_reconnecting", detail, attempt)
            await asyncio.sleep(delay)
            try:
                link = await self._open_link()
            except (AgentAuthError, AgentNotFound) as e:
                reason = str(e)  # terminal: retrying cannot help
                break
            except AgentError as e:
                reason = str(e)
                log.warning("reconnect attempt %d failed: %s", attempt, e)
                continue
            self._stats.reconnects += 1
            log.info("reconnected to %s (attempt %d)", self.endpoint.describe(), attempt)
            self._emit("agent_connected", self.endpoint.describe(), attempt)
            return link
        self._give_up(reason if total else f"{reason}; reconnecting is off")
        return None

    def _give_up(self, reason: str) -> None:
        if self._lost.is_set():
            return
        log.error("agent lost: %s", reason)
        self._lost.set()
        self._emit("agent_lost", reason, 0)

    def _emit(self, kind: BridgeEventKind, detail: str, attempt: int) -> None:
        if self._on_event is not None:
            try:
                self._on_event(BridgeEvent(kind, detail, attempt))
            except Exception:
                log.exception("bridge event handler failed")
