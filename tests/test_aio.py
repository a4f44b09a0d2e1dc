"""The task helpers every long-lived part uses to stop what it owns."""

from __future__ import annotations

import asyncio

import pytest

from bot.aio import cancel_and_wait, first_of


async def test_cancel_and_wait_finishes_every_task() -> None:
    cleaned: list[str] = []

    async def worker(name: str) -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.01)  # cleanup that itself awaits must complete before we return
            cleaned.append(name)

    tasks = [asyncio.create_task(worker(n)) for n in ("a", "b")]
    await asyncio.sleep(0)
    await cancel_and_wait(*tasks, None)
    assert sorted(cleaned) == ["a", "b"]
    assert all(t.done() for t in tasks)


async def test_cancel_and_wait_keeps_the_callers_cancellation() -> None:
    finished = asyncio.Event()

    async def slow_cleanup() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.05)
            finished.set()

    inner = asyncio.create_task(slow_cleanup())
    await asyncio.sleep(0)
    outer = asyncio.create_task(cancel_and_wait(inner))
    await asyncio.sleep(0.01)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert finished.is_set(), "the owned task must have finished before the owner's cancellation surfaced"


async def test_first_of_names_the_winner_and_cancels_the_rest() -> None:
    stop = asyncio.Event()
    loser = asyncio.create_task(asyncio.sleep(10))
    asyncio.get_running_loop().call_later(0.01, stop.set)
    assert await first_of({"stop": stop.wait(), "sleep": loser}) == "stop"
    assert loser.cancelled()


async def test_first_of_times_out_and_raises_the_winners_error() -> None:
    assert await first_of({"never": asyncio.Event().wait()}, timeout_s=0.01) is None

    async def boom() -> None:
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        await first_of({"boom": boom(), "never": asyncio.Event().wait()})
