"""`meeting-bot worker`: a bot host. A Celery worker that runs at most `capacity` bots at once, each as the
same child process the service runs locally (`join --json`, through `LocalProcessLauncher`), recording its
events and state in the shared store as the service does (`bot.service.bot_output`).

One Celery thread per slot. A thread that gets a token claims the earliest queued bot in the store under a
fresh lease, runs it and supervises it until it exits (an asyncio loop of its own). Beside them one *host
loop* thread, every `poll_interval_s`:

- asks the store which of this host's bots someone asked to leave, and makes them leave (so a cancel reaches
  a bot on any host within about half a second plus its own leaving);
- every `heartbeat_interval_s` renews the host's and its bots' heartbeats; a bot whose lease is no longer
  this host's was given to another host (this host was declared lost): it is killed at once, never left
  running beside its replacement;
- when the store has been unreachable for most of `host_timeout_s`, makes its bots leave: the service will
  declare the host lost and start them elsewhere, and a bot must not run twice.

Shutdown (Celery's signals): SIGTERM is a *warm* shutdown — the worker takes no new bot and, per
`worker.drain`, lets its bots finish (`finish`: it exits when the last one ends) or hands them back
(`handoff`: each leaves its meeting and goes back to the queue, where another host takes it and rejoins).
SIGINT or SIGQUIT is a *cold* shutdown: every bot leaves now and its end is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bot.cluster.placement import HostState, Placement
from bot.cluster.queue import TASK, TokenQueue, make_app
from bot.service.bot_output import BotRecorder
from bot.service.bot_request import BotRequest
from bot.service.launchers import BotHandle, LaunchError, ProcessLauncher
from bot.service.store import RUNNING, BotRecord, BotRow, BotState, BotStore, utcnow
from bot.settings import CallSection, SchedulerSection, Settings, WorkerSection

log = logging.getLogger(__name__)


_WORKER, _SCHEDULER, _CALL = WorkerSection(), SchedulerSection(), CallSection()  # the settings' defaults


@dataclass
class WorkerOptions:
    """What each means: bot.settings.WorkerSection, and the [scheduler] settings the worker shares (the
    settings check them)."""

    name: str
    broker_url: str = field(repr=False)  # may hold a password
    capacity: int = _WORKER.capacity
    drain: str = _WORKER.drain
    heartbeat_interval_s: float = _WORKER.heartbeat_interval_s
    poll_interval_s: float = _WORKER.poll_interval_s
    host_timeout_s: float = _SCHEDULER.host_timeout_s  # when the service declares a silent host lost
    stop_timeout_s: float = _SCHEDULER.stop_timeout_s  # a bot asked to leave is killed after this long
    call_max_duration_s: float = _CALL.max_duration_s  # for a re-launched bot's remaining time

    @classmethod
    def from_settings(cls, s: Settings) -> WorkerOptions:
        """`meeting-bot worker`: the [worker] settings and the [scheduler] ones it shares with the service;
        ValueError without a broker."""
        if not s.scheduler.broker_url:
            raise ValueError(
                "scheduler.broker_url: a worker needs the Redis of the service: set BOT_BROKER_URL"
            )
        w = s.worker
        return cls(
            name=w.name or socket.gethostname(),
            capacity=w.capacity,
            broker_url=s.scheduler.broker_url,
            drain=w.drain,
            heartbeat_interval_s=w.heartbeat_interval_s,
            poll_interval_s=w.poll_interval_s,
            host_timeout_s=s.scheduler.host_timeout_s,
            stop_timeout_s=s.scheduler.stop_timeout_s,
            call_max_duration_s=s.call.max_duration_s,
        )


@dataclass
class _Run:
    """One bot this host runs. Its methods run on the bot's own event loop (`loop`)."""

    bot_id: str
    lease: str
    loop: asyncio.AbstractEventLoop
    handle: BotHandle | None = None
    stop_wanted: bool = False  # asked before its process existed
    handoff: bool = False  # stopped to go back to the queue (drain = handoff)
    fenced: bool = False  # no longer this host's: killed, nothing more is recorded
    kill_timer: asyncio.TimerHandle | None = None

    def stop(self, kill_after_s: float) -> None:
        if self.handle is None:
            self.stop_wanted = True
            return
        if self.kill_timer is None:
            self.handle.stop()
            self.kill_timer = self.loop.call_later(kill_after_s, self.handle.kill)

    def kill(self) -> None:
        self.fenced = True
        if self.handle is not None:
            self.handle.kill()
        else:
            self.stop_wanted = True


class WorkerHost:
    """The bots of this host (see the module's docstring). `open()`, `take()` per token, `drain()`,
    `close()`."""

    def __init__(
        self, options: WorkerOptions, placement: Placement, launcher: ProcessLauncher, queue: TokenQueue
    ):
        self.options = options
        self.placement = placement
        self.store: BotStore = placement.store
        self.launcher = launcher
        self.queue = queue
        self.address: str | None = None
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(options.capacity)
        self._draining = threading.Event()
        self._closed = threading.Event()
        self._beat_now = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat = time.monotonic()
        self._cut_off = False
        self._leaving = False

    @property
    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._runs)

    def open(self) -> None:
        """Registers the host (HostNameTaken if a live worker has its name) and starts the host loop."""
        self.address = local_address(self.options.broker_url)
        self.placement.register_host(
            self.options.name,
            capacity=self.options.capacity,
            drain=self.options.drain,
            address=self.address,
            pid=os.getpid(),
            timeout_s=self.options.host_timeout_s,
        )
        self._thread = threading.Thread(target=self._host_loop, name="worker-host-loop", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stops the host loop and records the host stopped (after its bots have ended)."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.placement.set_host_state(self.options.name, HostState.STOPPED)
        except Exception as e:
            log.warning("could not record this host as stopped: %s", e)

    def drain(self) -> None:
        """Takes nothing new; hands the bots back when so configured (else they finish)."""
        self._draining.set()
        self._beat_now.set()
        if self.options.drain == "handoff" and not self._leaving:
            self._stop_all(handoff=True)

    def leave_now(self) -> None:
        """Takes nothing new; every bot leaves its meeting now (its end is recorded)."""
        self._leaving = True
        self._draining.set()
        self._beat_now.set()
        self._stop_all(handoff=False)

    def _stop_all(self, handoff: bool) -> None:
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.handoff = handoff
            self._call(run, run.stop, self.options.stop_timeout_s)

    # --- one token: one bot -------------------------------------------------------------------------------

    def take(self) -> None:
        """A Celery task's body (a pool thread): claim the earliest queued bot and run it to its end."""
        if self._draining.is_set() or not self._slots.acquire(blocking=False):
            # Taken while shutting down, or beyond the slots (Celery should not let that happen): the
            # token goes back for another host.
            self.queue.publish(1)
            return
        try:
            lease = secrets.token_hex(8)
            record = self.placement.claim_next(self.options.name, lease)
            if record is None:
                return  # a spare token: its bot was cancelled, or taken with another token
            log.info("bot %s: claimed (launch %d)", record.id, record.attempts)
            asyncio.run(self._supervise(record, lease))
        finally:
            self._slots.release()

    async def _supervise(self, record: BotRecord, lease: str) -> None:
        bot_id = record.id
        run = _Run(bot_id, lease, asyncio.get_running_loop())
        with self._lock:
            self._runs[bot_id] = run
        self._beat_now.set()
        try:
            await self._run(record, run)
        except Exception as e:
            log.exception("supervising bot %s failed", bot_id)
            self._end(run, BotState.CRASHED, message=f"worker {self.options.name}: {e!r}")
            if run.handle is not None:
                run.handle.kill()
                await run.handle.wait()
        finally:
            if run.kill_timer is not None:
                run.kill_timer.cancel()
            with self._lock:
                self._runs.pop(bot_id, None)
            self._beat_now.set()

    async def _run(self, record: BotRecord, run: _Run) -> None:
        request = self._request(record)
        if request is None:
            self._end(run, BotState.ENDED, end_reason="max_duration", message="its maximum duration passed")
            return
        try:
            run.handle = await self.launcher.start(request)
        except LaunchError as e:
            self._end(run, BotState.CRASHED, message=str(e))
            return
        handle = run.handle
        pid = getattr(handle, "pid", None)
        self.store.add_event(
            record.id,
            {
                "event": "launched",
                "at": utcnow().isoformat(),
                "source": "service",
                "host": self.options.name,
                "attempt": record.attempts,
                **({"pid": pid} if isinstance(pid, int) else {}),
            },
        )
        if record.stop_requested_at is not None or run.stop_wanted or self._cut_off:
            run.stop(self.options.stop_timeout_s)
        if run.fenced:
            handle.kill()
        recorder = BotRecorder(self.store, record.id)
        left_on_request = False
        async for event in handle.events():
            if run.fenced:
                continue  # the bot is another host's now: drain its output, record nothing
            recorder.event(event)
            if event.get("event") == "ended":
                left_on_request = event.get("reason") == "left"
        code = await handle.wait()
        if run.fenced:
            log.warning("bot %s: stopped here, it runs on another host now (exit %d)", record.id, code)
        elif run.handoff and left_on_request and code == 0:
            self._hand_back(run)
        else:
            recorder.exit(code, handle.diagnostics())

    def _request(self, record: BotRecord) -> BotRequest | None:
        """The bot's request; for a bot that was in its call before (re-launched), with the time it has
        left of its maximum duration. None when none is left."""
        request = BotRequest.from_dict(record.id, record.request)
        if record.in_call_at is None:
            return request
        limit = request.max_duration_s or self.options.call_max_duration_s
        left = limit - (utcnow() - record.in_call_at).total_seconds()
        if left <= 1:
            return None
        return dataclasses.replace(request, max_duration_s=round(left, 1))

    def _end(self, run: _Run, state: BotState, **fields: Any) -> None:
        if not run.fenced:
            self.store.transition(
                run.bot_id, state, RUNNING, BotRow.lease == run.lease, ended_at=utcnow(), **fields
            )

    def _hand_back(self, run: _Run) -> None:
        event = {
            "event": "handed_back",
            "at": utcnow().isoformat(),
            "source": "service",
            "host": self.options.name,
            "why": "its worker host shut down (worker.drain = handoff)",
        }
        if self.placement.hand_back(run.bot_id, run.lease, event):
            log.info("bot %s: handed back to the queue", run.bot_id)
            try:
                self.queue.publish(1)
            except Exception as e:  # the service re-fills the queue from the store
                log.warning("bot %s: %s", run.bot_id, e)

    # --- the host loop ----------------------------------------------------------------------------------

    def _call(self, run: _Run, fn: Any, *args: Any) -> None:
        """Runs `fn(*args)` on the run's event loop (from the host loop or a signal handler)."""
        with contextlib.suppress(RuntimeError):  # its loop already closed: the bot has ended
            run.loop.call_soon_threadsafe(fn, *args)

    def _host_loop(self) -> None:
        o = self.options
        next_beat = 0.0
        while not self._closed.is_set():
            self._beat_now.wait(o.poll_interval_s)
            now = time.monotonic()
            with self._lock:
                runs = dict(self._runs)
            leases = {bot_id: run.lease for bot_id, run in runs.items()}
            try:
                if now >= next_beat or self._beat_now.is_set():
                    self._beat_now.clear()
                    state = HostState.DRAINING if self._draining.is_set() else HostState.UP
                    lost = self.placement.beat(o.name, leases, state)
                    self._last_beat, next_beat = now, now + o.heartbeat_interval_s
                    self._cut_off = False
                    for bot_id in lost:
                        log.error("bot %s: this host lost it (declared lost?): killing it", bot_id)
                        self._call(runs[bot_id], runs[bot_id].kill)
                for bot_id in self.placement.stop_requests(o.name, leases):
                    self._call(runs[bot_id], runs[bot_id].stop, o.stop_timeout_s)
            except Exception as e:
                silent = now - self._last_beat
                log.warning("cannot reach the store (%.0f s): %s", silent, e)
                if silent > 0.6 * o.host_timeout_s and not self._cut_off:
                    # The service will give these bots to other hosts: leave before that happens.
                    log.error("cut off from the store for %.0f s: every bot here leaves", silent)
                    self._cut_off = True
                    for run in runs.values():
                        self._call(run, run.stop, 0.3 * o.host_timeout_s)


def local_address(broker_url: str) -> str | None:
    """This host's address on the way to the broker (what GET /hosts shows), without sending anything."""
    parts = urlsplit(broker_url)
    if not parts.hostname:
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((parts.hostname, parts.port or 6379))
            address: str = s.getsockname()[0]
            return address
    except OSError:
        return None


# How soon a worker retries a lost broker: Celery's own policy waits 2, 4, 6 … up to 30 s between attempts,
# so a Redis back after 10 s could leave queued bots waiting 12 s more; bots have a time to be in the meeting.
RECONNECT_INTERVALS_S = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 2.0}


def _consumer_class() -> type:
    from celery.worker.consumer import Consumer

    class BotConsumer(Consumer):  # type: ignore[misc]
        """Celery's consumer, reconnecting to the broker within RECONNECT_INTERVALS_S."""

        def ensure_connected(self, conn: Any) -> Any:
            conn.ensure_connection = functools.partial(conn.ensure_connection, **RECONNECT_INTERVALS_S)
            return super().ensure_connected(conn)

    return BotConsumer


def _worker_class(app: Any, host: WorkerHost) -> type:
    from celery import platforms

    class BotWorker(app.Worker):  # type: ignore[misc,name-defined]
        """Celery's worker with this host's signals: SIGTERM is Celery's warm shutdown (the host drains,
        see `WorkerHost.drain`); SIGINT and SIGQUIT make every bot leave now, then shut down the same way.
        (Celery's own cold shutdown would cancel the running tasks, which its thread pool cannot.)"""

        def install_platform_tweaks(self, worker: Any) -> None:
            super().install_platform_tweaks(worker)
            warm = platforms.signals["SIGTERM"]

            def leave_now(signum: int, frame: Any) -> None:
                host.leave_now()
                warm(signum, frame)

            platforms.signals["SIGINT"] = leave_now
            platforms.signals["SIGQUIT"] = leave_now

    return BotWorker


def run_worker(
    options: WorkerOptions, store: BotStore, launcher: ProcessLauncher, loglevel: str = "WARNING"
) -> int:
    """Runs this host until it is shut down; returns the exit code."""
    from celery import signals

    app = make_app(options.broker_url, concurrency=options.capacity)
    host = WorkerHost(options, Placement(store), launcher, TokenQueue(app))

    @app.task(name=TASK, ignore_result=True, acks_late=True)  # type: ignore[untyped-decorator]
    def take_bot() -> None:
        host.take()

    def on_shutting_down(sender: Any = None, how: str = "Warm", **_: Any) -> None:
        log.warning("worker %s: shutting down, drain = %s", options.name, options.drain)
        host.drain()

    def on_ready(**_: Any) -> None:
        # Scripts and tests read this line to know the worker takes bots.
        where = host.address or "?"
        print(f"worker {options.name} ready at {where}: capacity {options.capacity}", flush=True)

    signals.worker_shutting_down.connect(on_shutting_down, weak=False)
    signals.worker_ready.connect(on_ready, weak=False)
    host.open()
    try:
        worker = _worker_class(app, host)(
            hostname=f"meeting-bot@{options.name}",
            pool_cls="threads",
            concurrency=options.capacity,
            loglevel=loglevel,
            quiet=True,
            without_mingle=True,
            without_gossip=True,
            without_heartbeat=True,
            optimization="fair",
            consumer_cls=_consumer_class(),
        )
        worker.start()
        return int(worker.exitcode or 0)
    finally:
        signals.worker_shutting_down.disconnect(on_shutting_down)
        signals.worker_ready.disconnect(on_ready)
        host.close()
