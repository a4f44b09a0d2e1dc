"""A simulated human in a replica meeting: a headless Chromium page that speaks, listens and may show a
camera.

It opens the replica's participant page (no pre-join UI), which joins the room through `room.js`. Its
microphone is a Web Audio stream fed by tones, beeps or a WAV, and what it hears is captured in the same
AudioContext: send and receive times share one clock (the "page clock", in seconds). `wall_time()` maps
page-clock times to `time.time()` so two participants' times can be compared. Its camera (a moving test
pattern) is on when the room's `cameras` setting says so.

Alone, a participant runs its own Chromium on its own PulseAudio. Many can share one Chromium
(`PeopleBrowser`: a page each, each with its own AudioContext, microphone and capture) on no PulseAudio at
all: everything a person says and hears is in its page, so Chromium's fake audio output, which paces every
page's AudioContext by a timer, serves them all. That is how benchmarks keep their helpers cheap.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import numpy.typing as npt
import pulsectl
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from bot.audio import AudioDevices, BrowserAudio
from bot.audio.analysis import onsets
from bot.browser.launch import BotBrowser
from bot.settings import BrowserSection
from bot.system.processes import descendants
from bot.testing.replica.server import ReplicaServer

Audio = npt.NDArray[np.float32]

PLATFORM_HOSTS = {"meet": "meet.google.com", "zoom": "zoom.us", "teams": "teams.microsoft.com"}

# No PulseAudio for a shared browser: a server that does not exist (so Chromium never looks for, or
# autospawns, another), and `--disable-audio-output` (Chromium's fake output stream runs the pages' audio).
_NO_PULSE = BrowserAudio(server="unix:/nonexistent/pulse-native", sink="none", source="none")


class PeopleBrowser:
    """One headless Chromium hosting many simulated people (`Participant(..., shared=people)`), a page each.

    No PulseAudio: every page's AudioContext runs on Chromium's fake audio output (paced by a timer in
    its audio service), which is all a participant page needs, since its microphone and its ears are Web
    Audio in the page. `await start()`, pass it to participants, `await close()` after them."""

    def __init__(self, server: ReplicaServer, settings: BrowserSection | None = None) -> None:
        # No levers (bot.browser.levers): the people's pages receive no video.
        base = settings if settings is not None else BrowserSection(display="headless", lean=False)
        self._base = dataclasses.replace(base, extra_args=[*base.extra_args, "--disable-audio-output"])
        self._server = server
        self._dir = Path(tempfile.mkdtemp(prefix="bot-replica-people-"))
        self._browser: BotBrowser | None = None

    @property
    def browser(self) -> BotBrowser:
        if self._browser is None:
            raise RuntimeError("PeopleBrowser not started")
        return self._browser

    async def start(self) -> PeopleBrowser:
        """Starts the browser (after the replica: its host mapping names the replica's port)."""
        self._browser = BotBrowser(self._server.browser_section(self._base), self._dir)
        await self._browser.start(_NO_PULSE)
        return self

    async def new_page(self) -> Page:
        return await self.browser.new_page()

    @property
    def pid(self) -> int | None:
        """The browser's main process (its tree is the helpers' cost)."""
        return None if self._browser is None else self._browser.pid

    def prioritize(self, nice: int = -10) -> None:
        """Runs the people's browser ahead of everything else on the machine (a negative nice value needs
        root; silently skipped without it). A benchmark on a loaded machine wants the cameras at their rate
        and the people's ears on time, so that what it measures is the bots. Linux keeps a nice value per
        thread: every thread of every process is set, and what they start later inherits it."""
        if self.pid is None:
            return
        for pid in {self.pid} | descendants(self.pid):
            for task in Path(f"/proc/{pid}/task").glob("*"):
                with contextlib.suppress(OSError, ValueError):
                    os.setpriority(os.PRIO_PROCESS, int(task.name), nice)

    async def close(self) -> None:
        if self._browser is not None:
            await self._browser.close()
        shutil.rmtree(self._dir, ignore_errors=True)


class Participant:
    def __init__(
        self,
        server: ReplicaServer,
        platform: str,
        meeting_id: str,
        name: str = "Host",
        host: bool = True,
        passcode: str = "",
        settings: BrowserSection | None = None,
        shared: PeopleBrowser | None = None,
        camera: bool = True,
    ) -> None:
        self.server = server
        self.platform = platform
        self.meeting_id = meeting_id
        self.name = name
        self.host = host
        self.passcode = passcode
        # The simulated person needs no X display (hosts pass the replicas' entry checks): headless.
        self._settings = settings if settings is not None else BrowserSection(display="headless")
        self.join_result = ""
        self.camera_capable = camera  # False: never sends a camera, whatever the room's `cameras` says
        self._shared = shared
        self._page: Page | None = None
        self._devices: AudioDevices | None = None
        self._browser: BotBrowser | None = None
        self._dir: Path | None = None
        self._closed = False
        self._wall_offset = 0.0  # wall seconds = page clock + offset

    @property
    def url(self) -> str:
        query = {"platform": self.platform, "room": self.meeting_id, "name": self.name}
        if self.host:
            query["host"] = "1"
        if self.passcode:
            query["passcode"] = self.passcode
        if not self.camera_capable:
            query["camera"] = "0"
        return f"https://{PLATFORM_HOSTS[self.platform]}/_replica/participant?{urlencode(query)}"

    @property
    def browser(self) -> BotBrowser:
        """Its own browser (not for a participant in a shared `PeopleBrowser`)."""
        if self._browser is None:
            raise RuntimeError("participant not started, or in a shared browser")
        return self._browser

    @property
    def page(self) -> Page:
        if self._page is None:
            raise RuntimeError("participant not started")
        return self._page

    async def start(self) -> None:
        """Opens the page and joins; `join_result` says how ("admitted", "waiting", ...)."""
        if self._shared is not None:
            try:
                self._page = await self._shared.new_page()
                await self._page.goto(self.url)
                await self._evaluate("() => participant.setup")
                await self.sync_clock()
                self.join_result = str(await self._evaluate("() => participant.join()"))
            except BaseException:
                await self.close()
                raise
            return
        try:
            # Its own PulseAudio, so Chromium has an output and its AudioContext runs.
            self._devices = AudioDevices()
            audio = await self._devices.start()
            self._dir = Path(tempfile.mkdtemp(prefix="bot-replica-participant-"))
            self._browser = BotBrowser(self.server.browser_section(self._settings), self._dir)
            page = self._page = await self._browser.start(audio)
            await page.goto(self.url)
            await self._evaluate("() => participant.setup")
            # The AudioContext is paced by the null sink, which sleeps in 2 s blocks until reclocked
            # after a client connects: without this the page clock stalls, and audio received meanwhile
            # stays queued in front of it as added delay. The devices' watcher reclocks soon after the
            # stream appears; here the page clock must run before it is synced: reclock, then join.
            await _wait_for_sink_input(audio.server)
            await self._devices.reclock()
            await self.sync_clock()
            self.join_result = str(await self._evaluate("() => participant.join()"))
        except BaseException:
            await self.close()
            raise

    async def _evaluate(self, script: str, arg: Any = None) -> Any:
        return await self.page.evaluate(script, arg)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._shared is not None:
            if self._page is not None and not self._page.is_closed():
                with contextlib.suppress(PlaywrightError):
                    await self._page.close()
            return
        if self._browser is not None:
            await self._browser.close()
        if self._devices is not None:
            await self._devices.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def leave(self) -> None:
        """Leaves the room (the browser stays open)."""
        await self._evaluate("() => participant.leave()")

    # ---- clock ---------------------------------------------------------------------------------------
    async def clock(self) -> float:
        """Now, on the page clock (AudioContext time, s)."""
        return float((await self._evaluate("() => participant.clock()"))["ctx"])

    async def sync_clock(self) -> float:
        """Re-measures the page clock against the wall clock; returns the offset (s).

        Called by every play and listen method: under CPU load the AudioContext can stall for a moment,
        and its clock then falls behind the wall clock for good (measured: ~0.1 s on a loaded 2-core VM).
        """
        best: float | None = None
        for _ in range(5):
            c = await self._evaluate("() => participant.clock()")
            offset = c["wall"] / 1000 - c["ctx"]
            # The context time read by the page lags the audio thread by up to a render block: the
            # freshest reading is the one with the smallest offset.
            best = offset if best is None else min(best, offset)
        assert best is not None
        self._wall_offset = best
        return best

    def wall_time(self, page_time: float) -> float:
        """A page-clock time as `time.time()` seconds (to compare two participants' times)."""
        return page_time + self._wall_offset

    def page_time(self, wall_time: float) -> float:
        """A `time.time()` instant on this participant's page clock."""
        return wall_time - self._wall_offset

    # ---- speaking ------------------------------------------------------------------------------------
    async def play_tone(self, hz: float, seconds: float, gain: float = 0.5) -> float:
        """Starts a tone on the microphone; returns its start (page clock). Does not wait for its end."""
        await self.sync_clock()
        return float(
            await self._evaluate("([h, s, g]) => participant.playTone(h, s, g)", [hz, seconds, gain])
        )

    async def play_beeps(
        self, count: int, interval_s: float, hz: float = 1000, beep_ms: int = 60
    ) -> list[float]:
        """Schedules `count` beeps; returns their start times (page clock)."""
        await self.sync_clock()
        times = await self._evaluate(
            "([n, i, h, m]) => participant.playBeeps(n, i, h, m)", [count, interval_s, hz, beep_ms]
        )
        return [float(t) for t in times]

    async def play_wav(self, wav: bytes) -> float:
        """Plays a WAV file's audio on the microphone; returns its start (page clock)."""
        await self.sync_clock()
        reply = await self._evaluate("(b) => participant.playWav(b)", base64.b64encode(wav).decode())
        return float(reply["start"])

    # ---- listening -----------------------------------------------------------------------------------
    async def heard_since(self, since: float) -> tuple[float, Audio]:
        """(start on the page clock, mono float32 48 kHz samples) of everything heard from `since` on."""
        await self.sync_clock()
        reply = await self._evaluate("(t) => participant.heardSince(t)", since)
        data = np.frombuffer(base64.b64decode(reply["data"]), dtype=np.float32)
        return float(reply["start"]), data

    async def forget(self, before: float) -> None:
        """Drops what the page heard before page-clock time `before` (for calls of an hour or more)."""
        await self._evaluate("(t) => participant.forget(t)", before)

    async def heard(self) -> Audio:
        """Everything heard since the page started listening (mono float32, 48 kHz)."""
        return (await self.heard_since(0.0))[1]

    async def heard_onsets(self, threshold_dbfs: float = -30.0, since: float = 0.0) -> list[float]:
        """Times (page clock) where heard sound rises above `threshold_dbfs` after a quiet gap."""
        start, samples = await self.heard_since(since)
        return [start + t for t in onsets(to_pcm(samples), threshold_dbfs=threshold_dbfs)]

    async def wait_for_event(self, kind: str, timeout: float = 5.0) -> None:
        """Waits until the room has sent this page a message of type `kind` ("admitted", "removed", ...)."""
        await self.page.wait_for_function(
            "(k) => participant.state.events.some((e) => e.type === k)", arg=kind, timeout=timeout * 1000
        )

    async def events(self) -> list[dict[str, Any]]:
        """Messages the room sent this page (admitted, participants, removed, ...)."""
        return list(await self._evaluate("() => participant.state.events"))

    async def media_report(self) -> dict[str, Any]:
        """What its page's connections carry, per peer (for a failing test's message)."""
        return dict(await self._evaluate("() => participant.mediaReport()"))

    async def camera(self) -> dict[str, Any]:
        """Its camera: {on, frames (drawn so far), width, height, fps}."""
        return dict(await self._evaluate("() => participant.camera()"))


async def _wait_for_sink_input(server: str, timeout_s: float = 5.0) -> None:
    def connected() -> bool:
        with pulsectl.Pulse("bot-participant", server=server) as pulse:
            return bool(pulse.sink_input_list())

    async with asyncio.timeout(timeout_s):
        while not await asyncio.to_thread(connected):  # noqa: ASYNC110 - PulseAudio has no event for us here
            await asyncio.sleep(0.02)


def to_pcm(samples: Audio) -> bytes:
    """float32 samples → s16le bytes (the format bot.audio.analysis measures)."""
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
