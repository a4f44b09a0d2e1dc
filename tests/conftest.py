"""Shared fixtures. Every test is checked for leftovers: child processes and the bot's temporary dirs."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.audio import AudioDevices
from bot.testing.agent import StandInAgent
from tests.bridge_support import KEY
from tests.replica_fixtures import bot_audio, bot_browser, make_participant, replica  # noqa: F401

_TMP_PREFIXES = ("bot-pulse-", "bot-browser-", "bot-session-", "bot-agent-", "bot-replica-")


def descendants(pid: int | None = None) -> set[int]:
    """All live descendant pids of `pid` (default: this process), read from /proc."""
    root = pid or os.getpid()
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 is the parent pid; field 3 the state ('Z' zombies are reaped by their owner's wait).
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def bot_temp_dirs() -> set[str]:
    tmp = Path(tempfile.gettempdir())
    return {p.name for p in tmp.iterdir() if p.name.startswith(_TMP_PREFIXES)}


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Fails a test that leaves a child process or a bot temporary directory behind."""
    before_pids = descendants()
    before_dirs = bot_temp_dirs()
    yield
    deadline = time.monotonic() + 5
    while True:
        left = descendants() - before_pids
        dirs = bot_temp_dirs() - before_dirs
        if not left and not dirs:
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
    pytest.fail(f"test left behind processes {names} and temporary dirs {sorted(dirs)}")


@pytest.fixture
async def devices() -> AsyncIterator[AudioDevices]:
    """A private PulseAudio daemon with the bot's three devices."""
    audio = AudioDevices()
    await audio.start()
    try:
        yield audio
    finally:
        await audio.close()


@pytest.fixture
async def agent() -> AsyncIterator[StandInAgent]:
    """A started local Millis agent stand-in that accepts `tests.bridge_support.KEY`."""
    a = StandInAgent(KEY)
    await a.start()
    try:
        yield a
    finally:
        await a.close()
