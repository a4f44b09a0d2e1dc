"""What the adapter tests share: the replica server of a module (and a handle on one platform's pages), one
bot's devices and browser, a join running while the test acts on the meeting, audio both ways with a
participant, the check on a failure's saved page, and hand-made snapshots for the screen classifiers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import pytest_asyncio

from bot.audio import AudioDevices, PcmCapture, PcmPlayback
from bot.audio.analysis import tone
from bot.audio.streams import wait_for_streams
from bot.browser.launch import BotBrowser
from bot.platforms.base import JoinFailure
from bot.platforms.ui import PageSnapshot
from bot.testing.participant import Participant, to_pcm
from bot.testing.replica.room import Room
from bot.testing.replica.server import PlatformPages, ReplicaServer
from tests.bridge_support import loud_frequency

R = TypeVar("R")
P = TypeVar("P", bound=PlatformPages)
S = TypeVar("S", bound=PageSnapshot)


class Startable(Protocol):
    async def start(self) -> Any: ...

    async def close(self) -> Any: ...


T = TypeVar("T", bound=Startable)


@contextlib.asynccontextmanager
async def started(thing: T) -> AsyncIterator[T]:
    """`thing` started (an agent stand-in, audio devices, a meeting…), closed afterwards."""
    await thing.start()
    try:
        yield thing
    finally:
        await thing.close()


@contextlib.asynccontextmanager
async def replica_server(*pages: PlatformPages) -> AsyncIterator[ReplicaServer]:
    """A started replica server (with `pages` added, to keep a handle on them), closed afterwards."""
    server = ReplicaServer()
    for module in pages:
        server.add_pages(module)
    async with started(server):
        yield server


@dataclass
class PlatformReplica(Generic[P]):
    """A module's replica server and our own handle on one platform's pages."""

    server: ReplicaServer
    pages: P

    def room(self, room_id: str) -> Room:
        return self.server.room(self.pages.platform, room_id)

    def options(self, room_id: str, **changes: object) -> None:
        """The pages' client options for one meeting: their defaults' type with `changes`."""
        pages: Any = self.pages
        pages.options[room_id] = type(pages.default_options)(**changes)


@contextlib.asynccontextmanager
async def platform_replica(pages: P) -> AsyncIterator[PlatformReplica[P]]:
    """A started replica server serving `pages` (kept as the handle), closed afterwards."""
    async with replica_server(pages) as server:
        yield PlatformReplica(server, pages)


def module_replica(make_pages: Callable[[], P]) -> Any:
    """A module-scoped `replica` fixture serving `make_pages()`, kept as the handle for client options."""

    @pytest_asyncio.fixture(scope="module", loop_scope="module")
    async def replica() -> AsyncIterator[PlatformReplica[P]]:
        async with platform_replica(make_pages()) as r:
            yield r

    return replica


async def eventually(check: Callable[[], bool], timeout: float) -> bool:
    """Whether `check()` holds within `timeout` seconds (polled every 0.1 s)."""
    for _ in range(int(timeout / 0.1)):
        if check():
            return True
        await asyncio.sleep(0.1)
    return check()


def teams_thread(tag: str) -> str:
    """A distinct Teams meeting thread id per `tag`, in Teams' URL-safe form (the replica's room id)."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(tag.encode()).digest()).decode().rstrip("=")
    return f"19:meeting_{digest[:44]}@thread.v2"


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


async def audio_both_ways(devices: AudioDevices, host: Participant) -> None:
    """The bot in a call with `host` on `devices`: the host's tone reaches the bot's meeting sink, and a tone
    written into the agent sink reaches the bot's microphone and the host hears it."""
    b = devices.browser
    capture = PcmCapture(b.server, f"{b.sink}.monitor")
    mic = PcmPlayback(b.server, devices.names.agent_sink)
    await capture.start()
    await mic.start()
    try:
        await wait_for_streams(b.server, [capture.pid, mic.pid])
        # Participant → bot: the bot's meeting sink carries the participant's tone.
        capture.discard_backlog()
        await host.play_tone(440, 2.0)
        heard = bytearray()
        for _ in range(100):
            heard += (await asyncio.wait_for(capture.queue.get(), 5)).data
        assert abs(loud_frequency(bytes(heard)) - 440) < 5
        # Bot → participant: a tone written into the agent sink reaches the bot's microphone
        # and the participant hears it.
        t0 = await host.clock()
        await mic.write(tone(660, 2.0))
        await asyncio.sleep(0.5)
        _, received = await host.heard_since(t0)
        assert abs(loud_frequency(to_pcm(received)) - 660) < 5
    finally:
        await mic.close()
        await capture.close()


def snapshots(kind: type[S]) -> Callable[..., S]:
    """`snap(texts, present=, visible=, buttons=, **fields)`: a hand-made `kind` snapshot for a classifier."""

    def snap(
        texts: frozenset[str] = frozenset(),
        present: dict[str, int] | None = None,
        visible: dict[str, bool] | None = None,
        buttons: dict[str, bool] | None = None,
        **kw: Any,
    ) -> S:
        return kind(
            texts=set(texts), present=present or {}, visible=visible or {}, buttons=buttons or {}, **kw
        )

    return snap
