"""Helpers for the scheduler, API and PostgreSQL tests: a service on a real database running real bot
processes (tests/fake_join.py keeps the `join --json` contract, or the real `join` when it is wired up)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from bot.service.bot_request import BotRequest, validate_request
from bot.service.launchers import LocalProcessLauncher
from bot.service.scheduler import BotService, SchedulerConfig
from bot.service.store import BotRecord, BotState

FAKE_JOIN = Path(__file__).with_name("fake_join.py")
MEET_URL = "https://meet.google.com/abc-defg-hij"


def fake_launcher(log: Path | None = None) -> LocalProcessLauncher:
    return LocalProcessLauncher(
        [sys.executable, str(FAKE_JOIN)], extra_env={"FAKE_JOIN_LOG": str(log)} if log else {}
    )


def fake_request(mode: str = "call", max_duration_s: float | None = None, **extra: Any) -> BotRequest:
    return validate_request(
        meeting_url=MEET_URL,
        agent_id="agent-1",
        metadata={"mode": mode},
        max_duration_s=max_duration_s,
        **extra,
    )


def in_seconds(s: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=s)


def runs_logged(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@asynccontextmanager
async def serving(
    config: SchedulerConfig, launcher: LocalProcessLauncher | None
) -> AsyncIterator[BotService]:
    service = BotService(config, launcher)
    await service.start()
    try:
        yield service
    finally:
        await service.close()


async def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Polls `check` until it returns something truthy; generous timeout for a loaded 2-core machine."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_state(
    service: BotService, bot_id: str, states: Collection[BotState], timeout: float = 30.0
) -> BotRecord:
    def check() -> BotRecord | None:
        record = service.get(bot_id)
        return record if record.state in states else None

    try:
        result: BotRecord = await wait_for(check, timeout, f"bot {bot_id} in {sorted(states)}")
    except AssertionError:
        raise AssertionError(f"bot {bot_id} never reached {sorted(states)}: {service.get(bot_id)}") from None
    return result


def event_kinds(record: BotRecord) -> list[str]:
    return [e["event"] for e in record.events or [] if e.get("source") != "service"]


@contextmanager
def serve_process(db: Path, token: str, *args: str, bot_args: str = "") -> Iterator[str]:
    """A real `meeting-bot serve` on a free port running `tests/fake_join.py {bot_args}` bots; yields its
    URL."""
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "bot", "serve", "--port=0", f"--db=sqlite:///{db}",
            f"--bot-command={sys.executable} {FAKE_JOIN} {bot_args}".rstrip(), *args,
        ],
        env={**os.environ, "BOT_API_TOKEN": token, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:"), line
        yield line.split()[2]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
