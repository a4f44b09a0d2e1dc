"""Runs the real `meeting-bot join` command as a child process against the replicas and the agent stand-in.

Only configuration differs from a real call: the environment maps the meeting hosts to the replica, trusts
its certificate, points the agent URL at the stand-in and keeps ICE on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bot.testing.agent import StandInAgent
from bot.testing.local_env import local_bot_env
from bot.testing.replica.server import ReplicaServer
from tests.bridge_support import KEY


def replica_env(
    server: ReplicaServer, agent: StandInAgent, key: str = KEY, artifacts_dir: Path | None = None
) -> dict[str, str]:
    """The environment a bot needs to reach the replicas and the stand-in, with stats every second and
    failure artifacts in a test's own directory (without one, `JoinRun` uses a temporary one)."""
    env = {**local_bot_env(server, agent, key), "BOT_BOT_STATS_INTERVAL_S": "1"}
    if artifacts_dir is not None:
        env["BOT_BOT_ARTIFACTS_DIR"] = str(artifacts_dir)
    return env


class JoinRun:
    """One `python -m bot join … --json` child: its events as they come, its exit code, its stderr."""

    def __init__(self, url: str, agent_id: str, env: Mapping[str, str], args: Sequence[str] = ()) -> None:
        self.argv = [sys.executable, "-m", "bot", "join", url, f"--agent-id={agent_id}", "--json", *args]
        self.env = {**os.environ, **env}
        # Failure screenshots never land in the checkout: a test that reads them passes its own folder
        # (replica_env's artifacts_dir), otherwise this run keeps them in a temporary one until close().
        self._own_artifacts: Path | None = None
        if "BOT_BOT_ARTIFACTS_DIR" not in env:
            self._own_artifacts = Path(tempfile.mkdtemp(prefix="test-join-artifacts-"))
            self.env["BOT_BOT_ARTIFACTS_DIR"] = str(self._own_artifacts)
        self.events: list[dict[str, Any]] = []
        self.stdout_other: list[str] = []
        self.stderr = b""
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._stderr_task: asyncio.Task[bytes] | None = None

    async def start(self) -> JoinRun:
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        assert self._proc.stderr is not None
        # Drained from the start: a full pipe would stall the bot.
        self._stderr_task = asyncio.create_task(self._proc.stderr.read())
        return self

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            line = raw.decode(errors="replace").strip()
            try:
                self.events.append(json.loads(line))
            except json.JSONDecodeError:
                self.stdout_other.append(line)
            self._changed.set()
        self._changed.set()

    def kinds(self) -> list[str]:
        return [e["event"] for e in self.events if e["event"] != "stats"]

    def last(self, kind: str) -> dict[str, Any]:
        found = [e for e in self.events if e["event"] == kind]
        assert found, f"no {kind!r} event in {self.kinds()}; stderr: {self.stderr_tail()}"
        return found[-1]

    async def wait_event(self, kind: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event["event"] == kind:
                    return event
            if self._reader is not None and self._reader.done():
                raise AssertionError(f"bot exited before {kind!r}: {self.kinds()}; {self.stderr_tail()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind!r} within {timeout} s: {self.kinds()}; {self.stderr_tail()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    # Defined before `signal()`: below it, `signal` in this class body is that method, not the module.
    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 15) -> int:
        """Asks the bot to stop as a supervisor (SIGTERM) or Ctrl+C (SIGINT) does; returns its exit code."""
        self.signal(sig)
        return await self.wait(timeout)

    def signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        self._proc.send_signal(sig)

    async def wait(self, timeout: float = 30) -> int:
        assert self._proc is not None and self._reader is not None and self._stderr_task is not None
        try:
            code = await asyncio.wait_for(self._proc.wait(), timeout)
        finally:
            if self._proc.returncode is None:
                self._proc.kill()
                await self._proc.wait()
            self.stderr = await self._stderr_task
            await self._reader
        return code

    def stderr_tail(self) -> str:
        return self.stderr.decode(errors="replace")[-2000:]

    async def close(self) -> None:
        """Kills the bot if a test left it running (the test then fails on its own assertions)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self.wait()
        if self._own_artifacts is not None:
            shutil.rmtree(self._own_artifacts, ignore_errors=True)
