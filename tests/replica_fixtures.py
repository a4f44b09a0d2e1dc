"""Fixtures and helpers for tests against the local meeting replica.

Import the fixtures you use into a test module (pytest finds fixtures in the module's namespace):

    from tests.replica_fixtures import bot_audio, bot_browser, make_participant, replica  # noqa: F401

`replica` is function-scoped on purpose: starting it costs a few milliseconds (the certificate is made
once per process), so every test gets a fresh server and fresh rooms, on the test's own event loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bot.audio import AudioDevices
from bot.browser.launch import BotBrowser
from bot.settings import BrowserSection
from bot.testing.participant import Participant
from bot.testing.replica import ReplicaServer
from tests.adapter_support import replica_server


@pytest.fixture
async def replica() -> AsyncIterator[ReplicaServer]:
    """A started replica serving meet.google.com and zoom.us (with the page modules that exist)."""
    async with replica_server() as server:
        yield server


@pytest.fixture
def bot_audio(devices: AudioDevices) -> AudioDevices:
    """The bot's PulseAudio devices (conftest's `devices`): `.browser` for BotBrowser, names for capture."""
    return devices


@contextlib.asynccontextmanager
async def replica_browser(
    server: ReplicaServer,
    audio: AudioDevices,
    artifacts_dir: Path,
    base: BrowserSection | None = None,
) -> AsyncIterator[BotBrowser]:
    """A started BotBrowser that reaches `server` at the real hostnames (test configuration only)."""
    browser = BotBrowser(server.browser_section(base), artifacts_dir)
    try:
        await browser.start(audio.browser)
        yield browser
    finally:
        await browser.close()


@pytest.fixture
async def bot_browser(
    replica: ReplicaServer, bot_audio: AudioDevices, tmp_path: Path
) -> AsyncIterator[BotBrowser]:
    """The bot's Chromium on `bot_audio`, pointed at `replica`; artifacts go to tmp_path/artifacts."""
    async with replica_browser(replica, bot_audio, tmp_path / "artifacts") as browser:
        yield browser


MakeParticipant = Callable[..., Awaitable[Participant]]


@pytest.fixture
async def make_participant(replica: ReplicaServer) -> AsyncIterator[MakeParticipant]:
    """`await make_participant(platform, meeting_id, name="Host", host=True, ...)`: a started Participant,
    closed at the end of the test."""
    started: list[Participant] = []

    async def make(
        platform: str, meeting_id: str, name: str = "Host", host: bool = True, **kw: object
    ) -> Participant:
        p = Participant(replica, platform, meeting_id, name=name, host=host, **kw)  # type: ignore[arg-type]
        started.append(p)
        await p.start()
        return p

    try:
        yield make
    finally:
        for p in reversed(started):
            await p.close()
