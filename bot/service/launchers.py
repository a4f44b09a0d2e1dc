"""How the scheduler starts a bot without knowing where or how it runs.

`ProcessLauncher.start(request)` returns a `BotHandle`: its `events()` are the bot's status events (the
`join --json` lines), `stop()` asks it to leave the meeting, `wait()` gives its exit code.
`LocalProcessLauncher` runs each bot as its own child process on this machine, so one crash never takes the
others down.

A `Launcher` is where the service's queued bots go: `LocalLauncher` (`bot.service.local_launcher`) runs
them here through a `ProcessLauncher`, at most `max_concurrent_bots` at once; `CeleryLauncher`
(`bot.cluster.celery_launcher`) spreads them over worker hosts, each running them with a
`LocalProcessLauncher` of its own and recording them in the shared store.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bot.service.bot_request import BotRequest
from bot.system.processes import die_with_parent

if TYPE_CHECKING:
    from bot.service.metrics import BotMetrics
    from bot.service.store import BotStore

log = logging.getLogger(__name__)

DEFAULT_COMMAND: tuple[str, ...] = (sys.executable, "-m", "bot", "join")
# The service's own secrets: a bot (a browser on third-party pages) has no use for them. Webhooks of the
# bots the service runs are the service's job (bot.service.outbox), so their URL and secret stay with it too.
SERVICE_ONLY_ENV = frozenset(
    {
        "BOT_API_TOKEN",
        "BOT_DB_URL",
        "BOT_BROKER_URL",
        "BOT_METRICS_TOKEN",
        "BOT_WEBHOOK_URL",
        "BOT_WEBHOOK_SECRET",
    }
)


class BotHandle(Protocol):
    """One running bot."""

    def events(self) -> AsyncIterator[dict[str, Any]]:
        """The bot's status events in order; ends when the bot's output ends."""
        ...

    def stop(self) -> None:
        """Asks the bot to leave the meeting and exit (it reports `ended` with reason `left`)."""
        ...

    def kill(self) -> None:
        """Ends the bot at once (after `stop()` was not obeyed in time)."""
        ...

    async def wait(self) -> int:
        """The exit code: 0 completed, the documented failure codes, negative if killed by a signal."""
        ...

    def diagnostics(self) -> str:
        """The last lines the bot wrote to its error stream, for crash reports."""
        ...


class ProcessLauncher(Protocol):
    """Starts one bot process (`LocalProcessLauncher`; a worker host's slots use one too)."""

    async def start(self, request: BotRequest) -> BotHandle: ...


@runtime_checkable
class Launcher(Protocol):
    """Where the service's bots run: here (`bot.service.local_launcher.LocalLauncher`) or on worker hosts
    (`bot.cluster.celery_launcher.CeleryLauncher`). The service claims each bot when its time comes
    (`scheduled → queued` in the store) and hands it over with `enqueue`; the launcher starts it, records
    it in the store and makes it leave when a stop is asked for."""

    @property
    def running_ids(self) -> list[str]:
        """The bots running, or being started, in this process (none when they run elsewhere)."""
        ...

    @property
    def queued_ids(self) -> list[str]:
        """The bots waiting in this process for a free slot, in join order."""
        ...

    @property
    def records_waiting(self) -> int:
        """Bot records held in memory while the database is unavailable."""
        ...

    async def open(self, store: BotStore, metrics: BotMetrics) -> None:
        """Settles what the last run left in `store`, then takes bots (the queued ones first)."""
        ...

    def enqueue(self, bot_ids: Sequence[str]) -> None:
        """Hands over bots just moved to `queued`, in join order; never blocks."""
        ...

    def withdraw(self, bot_id: str) -> None:
        """The bot was cancelled, or asked to leave (its store record says which): drop it from the queue,
        or make it leave."""
        ...

    async def close(self) -> None:
        """Stops taking bots; bots running in this process leave first. Idempotent."""
        ...


class LaunchError(RuntimeError):
    """The bot could not be started at all (e.g. the command does not exist)."""


def join_arguments(request: BotRequest, config_file: Path | None = None) -> list[str]:
    """The `join` command line for a request. Values go as `--flag=value` so none can pass for a flag.
    No `--webhook`: the service delivers the request's webhook from its store (bot.service.outbox)."""
    args = [request.meeting_url, f"--agent-id={request.agent_id}", "--json"]
    if request.bot_name:
        args.append(f"--name={request.bot_name}")
    if request.region:
        args.append(f"--region={request.region}")
    if request.max_duration_s is not None:
        args.append(f"--max-duration={request.max_duration_s:g}")
    if config_file is not None:
        args.append(f"--config={config_file}")
    if request.metadata:
        # Keys are validated (no leading '-', no '='), so each item is one K=V value of --metadata.
        args += ["--metadata", *(f"{k}={v}" for k, v in request.metadata.items())]
    return args


class LocalProcessLauncher:
    """Runs each bot as a child process: `command + join_arguments(request)`, with the service's environment
    plus `extra_env` and `BOT_ID`."""

    def __init__(
        self,
        command: Sequence[str] = DEFAULT_COMMAND,
        extra_env: Mapping[str, str] | None = None,
        config_file: Path | None = None,
    ) -> None:
        if not command:
            raise ValueError("launcher command must not be empty")
        self.command = list(command)
        self.extra_env = dict(extra_env or {})
        self.config_file = config_file

    async def start(self, request: BotRequest) -> LocalBotHandle:
        env = {k: v for k, v in os.environ.items() if k not in SERVICE_ONLY_ENV}
        env.update({**self.extra_env, "BOT_ID": request.bot_id})
        argv = [*self.command, *join_arguments(request, self.config_file)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                # Its own session: a Ctrl+C on the service's terminal reaches the service, which makes
                # each bot leave in order, instead of hitting every bot at once.
                start_new_session=True,
                # If the service dies without stopping its bots, they get SIGTERM and leave their meetings
                # instead of lingering unsupervised.
                preexec_fn=die_with_parent,
                limit=1 << 20,
            )
        except OSError as e:
            raise LaunchError(f"cannot start {argv[0]!r}: {e.strerror or e}") from None
        return LocalBotHandle(proc, request.bot_id)


class LocalBotHandle:
    def __init__(self, proc: asyncio.subprocess.Process, bot_id: str) -> None:
        self.proc = proc
        self.bot_id = bot_id
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._stderr_task = asyncio.create_task(self._drain_stderr(), name=f"bot-{bot_id}-stderr")

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        assert self.proc.stdout is not None
        while True:
            try:
                line = await self.proc.stdout.readline()
            except ValueError:  # one line over the 1 MiB limit: skip it, keep reading
                log.warning("bot %s: an output line was too long and was skipped", self.bot_id)
                continue
            if not line:
                return
            text = line.decode(errors="replace").strip()
            if not text:
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                log.info("bot %s: %s", self.bot_id, text[:500])
                continue
            if isinstance(data, dict) and "event" in data:
                yield data

    def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.proc.returncode is None:
            # The bot's whole process group (its own session): its browser and audio daemon too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def wait(self) -> int:
        code = await self.proc.wait()
        await self._stderr_task
        return code

    def diagnostics(self) -> str:
        return "\n".join(self._stderr_tail)

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        while True:
            try:
                line = await self.proc.stderr.readline()
            except ValueError:
                continue
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            self._stderr_tail.append(text[:500])
            log.debug("bot %s: %s", self.bot_id, text)
