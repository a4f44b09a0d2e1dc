"""One bot's PulseAudio: a private daemon (or an existing server) and the three virtual devices.

The browser plays the meeting into `meeting_sink`; the bridge captures its monitor. The bridge plays the
agent into `agent_sink`; `mic_source` is a remap of that sink's monitor and is the browser's microphone.
The microphone is fed only by the agent: never by the meeting's monitor (that would echo the meeting).

This module is the one place that knows that layout: the browser gets `AudioDevices.browser`, the bridge
gets `AudioDevices.open_streams()` (a frame source and a frame sink), nobody else spells device names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pulsectl

from bot.aio import cancel_and_wait
from bot.audio.pcm import PcmCapture, PcmPlayback
from bot.audio.streams import SinkClock
from bot.system.processes import die_with_parent, stop_process
from bot.system.temp_dirs import Janitor

log = logging.getLogger(__name__)

# No `avoid-resampling`: with it, PulseAudio 16 reconfigures an idle null sink to the sample spec of the
# first stream that plays into it (Chromium's float32le), and when our `parec` was already recording the
# monitor, the monitor kept s16le: the sink's float samples were then read as s16, and the agent heard a
# full-scale buzz at half the pitch (found after a PulseAudio restart and at call start, 1-2 % of calls).
# Every stream here runs at 48 kHz, so there is nothing to avoid.
DAEMON_CONF = """\
default-sample-rate = 48000
alternate-sample-rate = 48000
exit-idle-time = -1
flat-volumes = no
"""

# The meeting sink takes Chromium's output as Chromium writes it (float32le stereo), so it is never
# reconfigured for it, on a daemon of ours or on a shared server that avoids resampling.
MEETING_SINK_FORMAT = "float32le"

_START_TIMEOUT_S = 10.0


class AudioError(RuntimeError):
    """PulseAudio could not be started or configured."""


@dataclass(frozen=True)
class DeviceNames:
    """Names of one bot's devices; unique per bot so several bots can share one server."""

    meeting_sink: str
    agent_sink: str
    mic_source: str

    @classmethod
    def unique(cls, prefix: str = "bot") -> DeviceNames:
        tag = f"{prefix}_{uuid.uuid4().hex[:8]}"
        return cls(f"{tag}_meeting_out", f"{tag}_agent_out", f"{tag}_virtual_mic")


@dataclass(frozen=True)
class BrowserAudio:
    """What a browser (or any PulseAudio client) needs to bind to the bot's devices."""

    server: str
    sink: str
    source: str

    def env(self) -> dict[str, str]:
        """Environment for a client process: Chromium follows PULSE_SINK / PULSE_SOURCE."""
        return {"PULSE_SERVER": self.server, "PULSE_SINK": self.sink, "PULSE_SOURCE": self.source}


@dataclass(frozen=True)
class DeviceStreams:
    """The bridge's side of the devices: what the meeting says in, the agent's voice out.

    `source` is `parec` on the meeting sink's monitor (a `FrameSource`); `sink` is `pacat` into the agent
    sink, which the virtual microphone remaps (a `FrameSink`). Opened by `AudioDevices.open_streams()`.
    """

    source: PcmCapture
    sink: PcmPlayback

    async def close(self) -> None:
        """Stops both clients (idempotent); `AudioDevices.close()` does it too."""
        await self.sink.close()
        await self.source.close()


class PulseDaemon:
    """A private PulseAudio daemon run as our own child process (never `-D`: PID 1 may not reap it)."""

    def __init__(self, runtime_dir: Path | None = None, conf: str = DAEMON_CONF) -> None:
        """`conf`: the daemon.conf it runs with (benchmarks compare others)."""
        self._conf = conf
        self._owns_dir = runtime_dir is None
        self._dir = runtime_dir or Path(tempfile.mkdtemp(prefix="bot-pulse-"))
        self._proc: asyncio.subprocess.Process | None = None
        self._janitor: Janitor | None = None  # removes our dir even if the bot is killed outright
        self._closed = False

    @property
    def server(self) -> str:
        return f"unix:{self._dir / 'pulse' / 'native'}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def wait_exited(self) -> int:
        """Returns the daemon's exit status once it has exited (for whatever reason)."""
        if self._proc is None:
            raise AudioError("PulseAudio was not started")
        return await self._proc.wait()

    async def restart(self) -> None:
        """Starts a new daemon in the same directory, so at the same socket path (`server`): clients
        that connect by that path (the browser's PULSE_SERVER) find the new one."""
        if self._closed:
            raise AudioError("PulseAudio's daemon was closed")
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        (self._dir / "pulse" / "native").unlink(missing_ok=True)
        await self.start()

    async def start(self) -> None:
        binary = shutil.which("pulseaudio")
        if binary is None:
            raise AudioError("pulseaudio is not installed: run scripts/setup (Debian package pulseaudio)")
        if self._owns_dir and self._janitor is None:
            self._janitor = await Janitor([self._dir]).start()
        (self._dir / "pulse").mkdir(parents=True, exist_ok=True)
        conf = self._dir / "daemon.conf"
        conf.write_text(self._conf)
        script = self._dir / "bot.pa"
        script.write_text("load-module module-native-protocol-unix auth-anonymous=1\n")
        env = {
            **os.environ,
            "XDG_RUNTIME_DIR": str(self._dir),
            "HOME": str(self._dir),
            "PULSE_CONFIG": str(conf),
            "PULSE_STATE_PATH": str(self._dir / "state"),
            "PULSE_RUNTIME_PATH": str(self._dir / "pulse"),
        }
        env.pop("PULSE_SERVER", None)
        self._proc = await asyncio.create_subprocess_exec(
            binary,
            "-n",
            "-F",
            str(script),
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--use-pid-file=no",
            "--log-target=stderr",
            "--log-level=error",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            # Own process group: a terminal's Ctrl+C goes to us, and we stop this child in order.
            start_new_session=True,
            # And if we are killed outright, the daemon goes too instead of running on as an orphan.
            preexec_fn=die_with_parent,
        )
        socket = self._dir / "pulse" / "native"
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                err = b""
                if self._proc.stderr is not None:
                    err = await self._proc.stderr.read()
                # The directory stays until close(): a restart may use it again.
                await self._stop_process()
                raise AudioError(f"PulseAudio exited at start: {err.decode(errors='replace').strip()}")
            if socket.exists() and await asyncio.to_thread(_answers, self.server):
                log.debug("pulseaudio pid %s ready at %s", self._proc.pid, self.server)
                return
            await asyncio.sleep(0.01)
        await self._stop_process()
        raise AudioError(f"PulseAudio did not answer within {_START_TIMEOUT_S:.0f} s")

    async def _stop_process(self) -> None:
        await stop_process(self._proc)

    async def close(self) -> None:
        """Stops the daemon and removes its directory (also after a failed `start()`); idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._stop_process()
        if self._janitor is not None:
            await self._janitor.close()  # removes the dir
        elif self._owns_dir:
            shutil.rmtree(self._dir, ignore_errors=True)


def _answers(server: str) -> bool:
    try:
        with pulsectl.Pulse("bot-probe", server=server, connect=True) as pulse:
            pulse.server_info()
        return True
    except pulsectl.PulseError:
        return False


@dataclass
class AudioDevices:
    """The bot's sinks and microphone on a PulseAudio server; `start()` creates them, `close()` removes.

    With `server=None` a private daemon is started (and stopped on close); with a server address (for
    example from `PULSE_SERVER`) the devices are created there under unique names and unloaded on close.
    """

    server: str | None = None
    names: DeviceNames = field(default_factory=DeviceNames.unique)
    # Reclock whenever a new stream connects to our sinks (a browser opens its output only once a call's
    # audio starts): see `streams.SinkClock.watch`.
    watch_streams: bool = True
    _watcher: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _daemon: PulseDaemon | None = field(default=None, init=False, repr=False)
    _modules: list[int] = field(default_factory=list, init=False, repr=False)
    _address: str | None = field(default=None, init=False)
    _clock: SinkClock | None = field(default=None, init=False, repr=False)
    _streams: list[DeviceStreams] = field(default_factory=list, init=False, repr=False)
    _closed: bool = field(default=False, init=False, repr=False)

    @classmethod
    def from_env(cls) -> AudioDevices:
        """Attach to `PULSE_SERVER` when it is set, else plan a private daemon."""
        return cls(server=os.environ.get("PULSE_SERVER") or None)

    @property
    def address(self) -> str:
        if self._address is None:
            raise AudioError("audio devices are not started")
        return self._address

    @property
    def browser(self) -> BrowserAudio:
        return BrowserAudio(self.address, self.names.meeting_sink, self.names.mic_source)

    @property
    def meeting_monitor(self) -> str:
        """The PulseAudio source carrying what the meeting says (the meeting sink's monitor)."""
        return f"{self.names.meeting_sink}.monitor"

    async def open_streams(self) -> DeviceStreams:
        """Starts the bridge's PulseAudio clients and returns them once they carry audio.

        Capture of the meeting (`meeting_monitor`) and playback into the agent sink start, and the sinks
        are reclocked once both streams are connected. The streams stay open until their `close()` or
        this object's `close()`.
        """
        streams = DeviceStreams(
            PcmCapture(self.address, self.meeting_monitor), PcmPlayback(self.address, self.names.agent_sink)
        )
        self._streams.append(streams)
        try:
            await streams.source.start()
            await streams.sink.start()
            await self._sink_clock.after_streams((streams.source.pid, streams.sink.pid))
        except BaseException:
            await streams.close()
            raise
        return streams

    @property
    def _sink_clock(self) -> SinkClock:
        if self._clock is None:
            self._clock = SinkClock(self.address, (self.names.meeting_sink, self.names.agent_sink))
        return self._clock

    @property
    def daemon_pid(self) -> int | None:
        return self._daemon.pid if self._daemon else None

    @property
    def daemon_running(self) -> bool:
        """False once our private daemon has exited (always True on a shared server)."""
        return self._daemon is None or self._daemon.running

    async def wait_daemon_exited(self) -> None:
        """Returns if the private daemon exits while the devices are open (never with a shared server)."""
        if self._daemon is None:
            await asyncio.Future()  # a shared server is not ours to watch
        assert self._daemon is not None
        await self._daemon.wait_exited()

    async def restart(self) -> BrowserAudio:
        """Rebuilds the devices after PulseAudio failed under them: closes the streams `open_streams()`
        opened, starts a new private daemon at the same socket path if ours died, and creates the devices
        again under the same names. Clients reconnect to `address` (unchanged); open new streams after.
        Raises `AudioError` if PulseAudio cannot be brought back (e.g. a shared server that is gone)."""
        if self._closed:
            raise AudioError("audio devices are closed")
        for streams in reversed(self._streams):
            await streams.close()
        self._streams.clear()
        await cancel_and_wait(self._watcher)
        self._watcher = None
        if self._daemon is not None and not self._daemon.running:
            await self._daemon.restart()
            self._modules.clear()
        present = await asyncio.to_thread(self._devices_present)
        if not present:
            self._modules.clear()
            await asyncio.to_thread(self._load_modules)
        if self.watch_streams:
            self._watcher = asyncio.create_task(self._sink_clock.watch(), name="reclock-on-new-streams")
        log.info("audio devices rebuilt on %s", self.address)
        return self.browser

    def _devices_present(self) -> bool:
        try:
            with pulsectl.Pulse("bot-devices", server=self.address) as pulse:
                sinks = {s.name for s in pulse.sink_list()}
                sources = {s.name for s in pulse.source_list()}
        except pulsectl.PulseError as e:
            raise AudioError(f"PulseAudio at {self.address} does not answer: {e}") from e
        n = self.names
        return {n.meeting_sink, n.agent_sink} <= sinks and n.mic_source in sources

    def browser_streams(self) -> tuple[int, int]:
        """(streams playing into the meeting sink, streams recording the microphone): the browser's, as
        PulseAudio sees them. Our own capture reads the sink's monitor and our playback feeds the agent
        sink, so neither is counted."""
        with pulsectl.Pulse("bot-devices", server=self.address) as pulse:
            sink = pulse.get_sink_by_name(self.names.meeting_sink).index
            mic = pulse.get_source_by_name(self.names.mic_source).index
            playing = sum(1 for i in pulse.sink_input_list() if i.sink == sink)
            recording = sum(1 for o in pulse.source_output_list() if o.source == mic)
        return playing, recording

    async def start(self) -> BrowserAudio:
        try:
            if self.server is None:
                self._daemon = PulseDaemon()
                await self._daemon.start()
                self._address = self._daemon.server
            else:
                self._address = self.server
            await asyncio.to_thread(self._load_modules)
            if self.watch_streams:
                self._watcher = asyncio.create_task(self._sink_clock.watch(), name="reclock-on-new-streams")
        except BaseException:
            await self.close()
            raise
        log.info(
            "audio devices ready on %s: sink %s, microphone %s",
            self._address,
            self.names.meeting_sink,
            self.names.mic_source,
        )
        return self.browser

    def _load_modules(self) -> None:
        n = self.names
        specs = [
            (
                "module-null-sink",
                f"sink_name={n.meeting_sink} format={MEETING_SINK_FORMAT} rate=48000 channels=2 "
                f"sink_properties=device.description={n.meeting_sink}",
            ),
            (
                "module-null-sink",
                f"sink_name={n.agent_sink} rate=48000 channels=1 "
                f"sink_properties=device.description={n.agent_sink}",
            ),
            (
                "module-remap-source",
                f"source_name={n.mic_source} master={n.agent_sink}.monitor channels=1 rate=48000 "
                f"source_properties=device.description={n.mic_source}",
            ),
        ]
        try:
            with pulsectl.Pulse("bot-devices", server=self.address) as pulse:
                for module, args in specs:
                    self._modules.append(pulse.module_load(module, args))
                if self._daemon is not None:
                    # A private daemon has no other devices: make ours the defaults too.
                    pulse.sink_default_set(n.meeting_sink)
                    pulse.source_default_set(n.mic_source)
        except pulsectl.PulseError as e:
            raise AudioError(f"could not create audio devices on {self.address}: {e}") from e

    async def reclock(self) -> None:
        """Suspend and resume both null sinks now (see `streams.SinkClock.reclock`).

        For clients started outside `open_streams()`: call it once their streams are connected.
        """
        await self._sink_clock.reclock()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for streams in reversed(self._streams):
            await streams.close()
        self._streams.clear()
        # The watcher may also have stopped on its own if PulseAudio went away: nothing to report then.
        await cancel_and_wait(self._watcher)
        if self._modules and self._daemon is None and self._address is not None:
            # On a shared server our modules must be unloaded; a private daemon just stops.
            with contextlib.suppress(pulsectl.PulseError):
                await asyncio.to_thread(self._unload_modules)
        self._modules.clear()
        if self._daemon is not None:
            await self._daemon.close()

    def _unload_modules(self) -> None:
        with pulsectl.Pulse("bot-devices", server=self.address) as pulse:
            for index in reversed(self._modules):
                with contextlib.suppress(pulsectl.PulseError):
                    pulse.module_unload(index)
