"""Shared fixtures. Every test is checked for leftovers: child processes, the bot's temporary dirs, and the
network namespaces and links the tests make (tests/netns.py)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.audio import AudioDevices
from bot.browser.display import VirtualDisplay
from bot.system.processes import descendants
from bot.testing.agent import StandInAgent
from tests.adapter_support import started
from tests.bridge_support import KEY
from tests.cluster_support import kept_processes
from tests.netns import leftover_names
from tests.replica_fixtures import bot_audio, bot_browser, make_participant, replica  # noqa: F401

_TMP_PREFIXES = ("bot-pulse-", "bot-browser-", "bot-session-", "bot-agent-", "bot-replica-", "bot-display-")


def bot_temp_dirs() -> set[str]:
    tmp = Path(tempfile.gettempdir())
    return {p.name for p in tmp.iterdir() if p.name.startswith(_TMP_PREFIXES)}


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Fails a test that leaves a child process, a bot temporary directory or a network namespace or link
    behind. (Processes a module-scoped fixture keeps across its tests and stops itself, such as a cluster's
    servers and worker hosts, are its own: `tests.cluster_support.kept_processes`.)"""
    before_pids = descendants()
    before_dirs = bot_temp_dirs()
    before_net = leftover_names()
    yield
    deadline = time.monotonic() + 5
    while True:
        left = descendants() - before_pids - kept_processes()
        dirs = bot_temp_dirs() - before_dirs
        net = leftover_names() - before_net
        if not left and not dirs and not net:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    names = {}
    for pid in left:
        try:
            names[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
        except OSError:
            names[pid] = b"?"
    pytest.fail(
        f"test left behind processes {names}, temporary dirs {sorted(dirs)} "
        f"and network namespaces or links {sorted(net)}"
    )


@pytest.fixture
async def devices() -> AsyncIterator[AudioDevices]:
    """A private PulseAudio daemon with the bot's three devices."""
    async with started(AudioDevices()) as audio:
        yield audio


@pytest.fixture
async def display() -> AsyncIterator[VirtualDisplay]:
    """A private X display (Xvfb) at the bot's screen size: for a headful browser, XTEST hands, or the
    login window (the user's desktop, in a real sign-in)."""
    d = await VirtualDisplay().start()
    try:
        yield d
    finally:
        await d.close()


@pytest.fixture
async def agent() -> AsyncIterator[StandInAgent]:
    """A started local Millis agent stand-in that accepts `tests.bridge_support.KEY`."""
    async with started(StandInAgent(KEY)) as a:
        yield a
