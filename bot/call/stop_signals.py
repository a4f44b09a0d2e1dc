"""SIGINT/SIGTERM for a running bot: the first asks it to leave the meeting, a second forces the exit."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def leave_on_signal(leave: Callable[[], None]) -> Iterator[None]:
    """While inside: the first signal calls `leave`, a second cancels the current task (teardown still runs
    in its `finally` blocks, so nothing is left behind)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None, "leave_on_signal must be used inside a task"
    seen = 0

    def on_signal() -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            leave()
        else:
            task.cancel()

    for sig in SIGNALS:
        loop.add_signal_handler(sig, on_signal)
    try:
        yield
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
