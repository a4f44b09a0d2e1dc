"""Small asyncio helpers: cancelling owned tasks and waiting for the first of several waits.

Every long-lived part owns its tasks and must see them really finish on close; writing the cancel /
suppress / await dance by hand in each place drifted (some swallowed a caller's cancellation, some did not
wait). These two helpers are the one way to do it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Hashable, Mapping
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancels the given tasks and waits until each has finished; their results and errors are dropped.

    If the caller itself is cancelled while waiting, the wait still completes and the caller's
    cancellation is re-raised afterwards, so no task outlives its owner.
    """
    pending = [t for t in tasks if t is not None]
    for task in pending:
        task.cancel()
    if not pending:
        return
    gathered = asyncio.gather(*pending, return_exceptions=True)
    try:
        await asyncio.shield(gathered)
    except asyncio.CancelledError:
        await gathered
        raise


async def first_of(waits: Mapping[K, Awaitable[Any]], timeout_s: float | None = None) -> K | None:
    """Runs the named waits until the first one finishes, cancels the rest, and returns its name.

    Returns None on timeout. The finished wait's exception, if any, is raised; its result is not kept
    (wrap it in a task yourself when you need it).
    """
    tasks: dict[asyncio.Future[Any], K] = {asyncio.ensure_future(w): name for name, w in waits.items()}
    try:
        done, _ = await asyncio.wait(tasks, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(*(t for t in tasks if not t.done()))
    if not done:
        return None
    # When several finish in the same loop turn, the caller's order of the mapping decides.
    winner = next(t for t in tasks if t in done)
    winner.result()
    return tasks[winner]
