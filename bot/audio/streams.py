"""The null sinks' clock: when and how the bot's sinks are reclocked. The one place that decides it.

A PulseAudio 16 null sink with no client sleeps in 2 s blocks and does not wake when a stream connects, so
audio through it would start up to 2 s late, or queue up in front of it as lasting delay. Reclocking
(suspend, then resume) makes it render at once with its clients' low latency. It is needed twice:

- right after our own `parec`/`pacat` streams are connected (`after_streams()`; reclocking before they
  connect leaves the sink asleep), and
- whenever another client's stream appears on one of our sinks (`watch()`, told by PulseAudio's events:
  the browser opens its output only when the call's audio starts, at a moment we do not control).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable

import pulsectl


def _connected_pids(server: str) -> set[int]:
    with pulsectl.Pulse("bot-streams", server=server) as pulse:
        streams = [*pulse.sink_input_list(), *pulse.source_output_list()]
        found: set[int] = set()
        for stream in streams:
            pid = stream.proplist.get("application.process.id")
            if pid is not None and pid.isdigit():
                found.add(int(pid))
        return found


async def wait_for_streams(server: str, pids: Iterable[int | None], timeout_s: float = 5.0) -> None:
    """Returns once every process in `pids` has a stream on `server`; raises TimeoutError otherwise.

    A `parec`/`pacat` child connects its stream a few milliseconds after it starts.
    """
    wanted = {pid for pid in pids if pid is not None}
    deadline = time.monotonic() + timeout_s
    while True:
        missing = wanted - await asyncio.to_thread(_connected_pids, server)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"PulseAudio streams of processes {sorted(missing)} did not connect in time")
        await asyncio.sleep(0.01)


def _streams_on(pulse: pulsectl.Pulse, sink_names: tuple[str, ...]) -> set[int]:
    sinks = {s.index for s in pulse.sink_list() if s.name in sink_names}
    return {i.index for i in pulse.sink_input_list() if i.sink in sinks}


def _suspend_resume(pulse: pulsectl.Pulse, sink_names: tuple[str, ...]) -> None:
    for name in sink_names:
        pulse.sink_suspend(pulse.get_sink_by_name(name).index, 1)
        pulse.sink_suspend(pulse.get_sink_by_name(name).index, 0)


class SinkClock:
    """Reclocks the null sinks `sink_names` on `server`: on request, after our streams, on new streams."""

    def __init__(self, server: str, sink_names: tuple[str, ...]) -> None:
        self.server = server
        self.sink_names = sink_names

    async def reclock(self) -> None:
        """Suspend and resume the sinks so they render at once with their clients' low latency.

        Call it after the streams that matter are connected (measured: without it, 1.75 s of nothing
        before the first frame; with it, frames within 20 ms).
        """

        def run() -> None:
            with pulsectl.Pulse("bot-devices", server=self.server) as pulse:
                _suspend_resume(pulse, self.sink_names)

        await asyncio.to_thread(run)

    async def after_streams(self, pids: Iterable[int | None]) -> None:
        """Waits until the streams of processes `pids` are connected, then reclocks."""
        await wait_for_streams(self.server, pids)
        await self.reclock()

    async def watch(self) -> None:
        """Runs until cancelled: reclocks whenever a new stream connects to one of the sinks.

        If a null sink is asleep when Chromium opens its output stream, Chromium's audio queues up in
        front of it and stays queued as added delay for the whole call (measured: about 0.8 s). A reclock
        right after the stream connects prevents that; it costs a glitch of a few milliseconds.
        A thread of its own listens for PulseAudio's stream events on one connection for the whole call
        and looks at the sinks only when a stream appears or changes: no polling (four polls a second cost
        the daemon 0.26 points of a core per bot in bench-bridge --pulse). Raises if PulseAudio goes away.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        pulse = await asyncio.to_thread(pulsectl.Pulse, "bot-stream-watch", server=self.server)
        stop = threading.Event()

        def finished(error: BaseException | None) -> None:
            if done.done():
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(None)

        def run() -> None:
            error: BaseException | None = None
            try:
                self._listen(pulse, stop)
            except BaseException as e:  # handed to the coroutine, which raises it
                error = e
            finally:
                pulse.close()
                loop.call_soon_threadsafe(finished, error)

        thread = threading.Thread(target=run, name="bot-stream-watch", daemon=True)
        thread.start()
        try:
            await asyncio.shield(done)
        finally:
            stop.set()
            while not done.done():  # event_listen_stop() is racy before the listener polls: repeat
                pulse.event_listen_stop()
                await asyncio.wait([done], timeout=0.05)

    def _listen(self, pulse: pulsectl.Pulse, stop: threading.Event) -> None:
        changed = False  # a stream came or changed since the sinks were last looked at

        def on_event(event: pulsectl.PulseEventInfo) -> None:
            nonlocal changed
            if event.t in (pulsectl.PulseEventTypeEnum.new, pulsectl.PulseEventTypeEnum.change):
                changed = True
                raise pulsectl.PulseLoopStop  # look at the sinks (no requests inside the callback)

        pulse.event_mask_set("sink_input")
        pulse.event_callback_set(on_event)
        known = _streams_on(pulse, self.sink_names)
        while not stop.is_set():
            if not changed:  # (an event during the last look is not waited for again)
                pulse.event_listen()
            changed = False
            if stop.is_set():
                return
            current = _streams_on(pulse, self.sink_names)
            if current - known:
                _suspend_resume(pulse, self.sink_names)
            known = current


__all__ = ["SinkClock", "wait_for_streams"]
