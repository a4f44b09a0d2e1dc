"""Waiting for our own PulseAudio streams to be connected (before `AudioDevices.reclock()`).

A `parec`/`pacat` child connects its stream a few milliseconds after it starts. Reclocking a null sink
before that leaves it in its 2 s sleep cycle (audio stalls for up to 2 s), so wait for the streams first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

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
    """Returns once every process in `pids` has a stream on `server`; raises TimeoutError otherwise."""
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


async def reclock_on_new_streams(
    server: str,
    sink_names: tuple[str, ...],
    reclock: Callable[[], Awaitable[None]],
    interval_s: float = 0.25,
) -> None:
    """Runs until cancelled: reclocks whenever a new stream connects to one of `sink_names`.

    Chromium opens its output stream on the meeting sink only when the call's audio starts, at a moment
    we do not control. If the null sink is asleep then, Chromium's audio queues up in front of it and
    stays queued as added delay for the whole call (measured: about 0.8 s). A reclock right after the
    stream connects prevents that; it costs a glitch of a few milliseconds. One connection is kept for
    the whole call (connecting four times a second cost more than the queries).
    """
    loop = asyncio.get_running_loop()
    pulse = await asyncio.to_thread(pulsectl.Pulse, "bot-stream-watch", server=server)
    query: asyncio.Future[set[int]] | None = None

    async def streams() -> set[int]:
        nonlocal query
        query = loop.run_in_executor(None, _streams_on, pulse, sink_names)
        return await asyncio.shield(query)  # a cancel must not close the connection under the thread

    try:
        known = await streams()
        while True:
            await asyncio.sleep(interval_s)
            current = await streams()
            if current - known:
                await reclock()
            known = current
    finally:
        if query is not None:
            await asyncio.wait([query])
        pulse.close()
