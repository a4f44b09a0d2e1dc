"""Keeps a call's audio up when the bot's PulseAudio fails under it, or gives up clearly.

A PulseAudio daemon that dies in the middle of a call takes every stream with it: the bridge's capture and
playback, and the browser's speaker and microphone (see `bot.browser.audio_rebind` for what Chromium does
then). The
guard notices (the daemon's exit, or the bridge reporting that its audio stopped), reports `audio_lost`,
and within `deadline_s` (10 s) brings the call's audio back:

1. the devices are rebuilt: a new daemon at the same socket path, the same sinks and microphone;
2. the browser is rebound: Chromium's audio service restarted, the page's microphone re-acquired and its
   audio output reopened (`bot.browser.audio_rebind`);
3. the bridge is handed new capture and playback streams; the agent session stays up throughout;

then reports `audio_recovered` once the browser's streams are connected to the new devices again. If that
does not happen within the deadline (a daemon that keeps dying, a shared server that is gone), `failed()`
tells the session, which ends the call with `failed{code: audio_lost}`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from bot.aio import cancel_and_wait, first_of
from bot.events import AudioLost, AudioRecovered, EventBus
from bot.outcome import RunFailureCode

if TYPE_CHECKING:
    from bot.audio.devices import AudioDevices
    from bot.bridge import Bridge
    from bot.browser.launch import BotBrowser

log = logging.getLogger(__name__)

_RETRY_PAUSE_S = 0.5
_DAEMON_EXIT_S = 0.5  # after the streams stopped, how long to look for the daemon's exit (the cause)
_POLL_S = 0.1


class AudioLostError(RuntimeError):
    """The call's audio could not be brought back in time (the session fails with `audio_lost`)."""

    code = RunFailureCode.AUDIO_LOST.value


class AudioGuard:
    """Watches `devices` under a call and recovers them (see the module's docstring). `start()`,
    `notify()` from the bridge's `audio_stopped` events, `wait_failed()`, `close()`."""

    def __init__(
        self,
        devices: AudioDevices,
        browser: BotBrowser | None,
        bridge: Bridge,
        bus: EventBus,
        deadline_s: float = 10.0,
    ) -> None:
        self.devices = devices
        self.browser = browser
        self.bridge = bridge
        self.bus = bus
        self.deadline_s = deadline_s
        self.recoveries = 0
        self._trouble = asyncio.Event()
        self._detail = ""
        self._failed = asyncio.Event()
        self._failure = ""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audio-guard")

    def notify(self, detail: str) -> None:
        """The bridge's audio stopped (`detail` says which side and why)."""
        if not self._trouble.is_set():
            self._detail = detail
            self._trouble.set()

    async def wait_failed(self) -> AudioLostError:
        """Returns (the error to raise) once the audio is given up on."""
        await self._failed.wait()
        return AudioLostError(self._failure)

    async def close(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            which = await first_of(
                {"daemon": self.devices.wait_daemon_exited(), "stream": self._trouble.wait()}
            )
            if which == "stream":  # a dying daemon ends the streams first: its exit is seen just after
                which = await first_of({"daemon": self.devices.wait_daemon_exited()}, _DAEMON_EXIT_S) or which
            daemon_died = which == "daemon" or not self.devices.daemon_running
            detail = "the bot's PulseAudio daemon exited" if daemon_died else self._detail
            log.warning("audio lost in the call: %s; rebuilding the devices", detail)
            self.bus.emit(AudioLost(detail=detail))
            started = time.monotonic()
            try:
                how = await self._recover(started + self.deadline_s)
            except AudioLostError as e:
                self._failure = (
                    f"{detail}, and the call's audio (PulseAudio devices, the browser's microphone and "
                    f"speaker) could not be restored within {self.deadline_s:g} s: {e}"
                )
                log.error("%s", self._failure)
                self._failed.set()
                return
            # What the old streams reported while they were being replaced is over.
            self._trouble.clear()
            self.recoveries += 1
            took = time.monotonic() - started
            log.info("audio restored after %.1f s: %s", took, how)
            self.bus.emit(AudioRecovered(after_s=round(took, 2), detail=how))

    async def _recover(self, deadline: float) -> str:
        """Attempts until `deadline` (monotonic); returns what was done, raises AudioLostError."""
        last = "no attempt finished"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AudioLostError(last)
            try:
                async with asyncio.timeout(left):
                    return await self._attempt()
            except TimeoutError:
                raise AudioLostError(f"{last} (timed out)") from None
            except Exception as e:  # any step may fail while PulseAudio is still unstable: try again
                last = f"{type(e).__name__}: {e}"
                log.warning("restoring the audio failed (%s); trying again", last)
            await asyncio.sleep(min(_RETRY_PAUSE_S, max(0.0, deadline - time.monotonic())))

    async def _attempt(self) -> str:
        await self.devices.restart()
        streams = await self.devices.open_streams()
        await self.bridge.replace_audio(streams.source, streams.sink)
        playing, recording = await asyncio.to_thread(self.devices.browser_streams)
        if self.browser is None or (playing and recording):
            return "devices rebuilt; the browser's streams were still connected"
        from bot.browser.audio_rebind import rebind_page, restart_audio_service

        restart_audio_service(self.browser.pid)
        report = await rebind_page(self.browser.page)
        want_playing = report.elements_reloaded + report.contexts_resumed > 0
        want_recording = report.mic_replaced > 0
        while True:
            playing, recording = await asyncio.to_thread(self.devices.browser_streams)
            if (playing or not want_playing) and (recording or not want_recording):
                break
            if not self.devices.daemon_running:
                raise RuntimeError("PulseAudio exited again")
            await asyncio.sleep(_POLL_S)
        return f"devices rebuilt and the browser rebound: {report.describe()}"


__all__ = ["AudioGuard", "AudioLostError"]
