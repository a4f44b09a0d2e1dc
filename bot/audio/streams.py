"""Waiting for our own PulseAudio streams to be connected (before `AudioDevices.reclock()`).

A `parec`/`pacat` child connects its stream a few milliseconds after it starts. Reclocking a null sink
before that leaves it in its 2 s sleep cycle (audio stalls for up to 2 s), so wait for the streams first.
"""

from __future__ import annotations

import asyncio
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
