"""What the Meet and Zoom adapter tests share: the replica server of a module, one bot's devices and
browser, a join running while the test acts on the meeting, and the check on a failure's saved page."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from bot.audio import AudioDevices
from bot.browser.launch import BotBrowser
from bot.platforms.base import JoinFailure
from bot.testing.replica.server import PlatformPages, ReplicaServer

R = TypeVar("R")


@contextlib.asynccontextmanager
async def replica_server(*pages: PlatformPages) -> AsyncIterator[ReplicaServer]:
    """A started replica server (with `pages` added, to keep a handle on them), closed afterwards."""
    server = ReplicaServer()
    for module in pages:
        server.add_pages(module)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def bot_parts(server: ReplicaServer, tmp_path: Path) -> AsyncIterator[tuple[AudioDevices, BotBrowser]]:
    """One bot's own PulseAudio devices and browser (artifacts under `tmp_path`), closed afterwards."""
    devices = AudioDevices()
    await devices.start()
    browser = BotBrowser(server.browser_section(), tmp_path / "artifacts")
    try:
        yield devices, browser
    finally:
        await browser.close()
        await devices.close()


@contextlib.asynccontextmanager
async def running(join: Coroutine[Any, Any, R]) -> AsyncIterator[asyncio.Task[R]]:
    """`join` running as a task while the block acts on the meeting; cancelled if the block leaves early."""
    task = asyncio.create_task(join)
    try:
        yield task
    finally:
        task.cancel()


def artifacts_show(failure: JoinFailure, text: str) -> None:
    """The failure carries a non-empty screenshot and the page HTML (saved by the browser before the
    adapter navigated anywhere), and the HTML shows `text`."""
    suffixes = sorted(p.suffix for p in failure.artifacts)
    assert suffixes == [".html", ".png"], failure.artifacts
    for path in failure.artifacts:
        assert path.stat().st_size > 0
    png = next(p for p in failure.artifacts if p.suffix == ".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = next(p for p in failure.artifacts if p.suffix == ".html").read_text()
    assert text in html
