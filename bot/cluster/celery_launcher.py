"""The service's side of the cluster (`scheduler.launcher = "celery"`): hand queued bots to the worker hosts
and watch over them.

`BotService` claims a bot when its time comes (`scheduled → queued`) and gives it to
`CeleryLauncher.enqueue`, which puts a token on the queue. Besides, every `watch_interval_s` the launcher:

1. re-fills the queue from the store: when fewer tokens wait than bots are queued (Redis restarted or
   flushed, a publish failed while it was down, a worker died between taking a token and claiming), it
   publishes the difference — seen twice in a row, so a token in flight is not doubled;
2. finds running bots whose host stopped heartbeating for `host_timeout_s`, records `host_lost` on each and
   puts it back in the queue so another host rejoins its meeting — unless the user asked it to leave, it has
   had its attempts, or its maximum duration has passed (then it is recorded crashed, `host_lost`);
3. records as missed the bots that waited in the queue `queue_timeout_s` past their join time.

It acts on silent hosts only after having watched the store itself for `host_timeout_s` without a gap, so a
service that was down (or cut from the database) does not mistake its own absence for the hosts'.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bot.aio import cancel_and_wait
from bot.cluster.placement import Lost, Placement
from bot.cluster.queue import QueueUnavailable, TokenQueue, make_app
from bot.outcome import RunFailureCode
from bot.service.metrics import BotMetrics
from bot.service.store import BotStore, utcnow
from bot.settings import CallSection, SchedulerSection, Settings

log = logging.getLogger(__name__)


_SCHEDULER, _CALL = SchedulerSection(), CallSection()  # the defaults live with the settings, once


@dataclass
class ClusterOptions:
    """What each means: bot.settings.SchedulerSection (broker_url, host_timeout_s, relaunch_attempts)."""

    broker_url: str = field(repr=False)  # may hold a password
    host_timeout_s: float = _SCHEDULER.host_timeout_s
    relaunch_attempts: int = _SCHEDULER.relaunch_attempts
    queue_timeout_s: float = _SCHEDULER.queue_timeout_s
    call_max_duration_s: float = _CALL.max_duration_s  # the limit of a request without one
    watch_interval_s: float = _SCHEDULER.poll_interval_s

    @classmethod
    def from_settings(cls, s: Settings) -> ClusterOptions:
        """The service's side of scheduler.launcher = "celery"; ValueError without a broker."""
        sc = s.scheduler
        if not sc.broker_url:
            raise ValueError(
                "scheduler.broker_url: is required with launcher = celery: set BOT_BROKER_URL=redis://…"
            )
        return cls(
            broker_url=sc.broker_url,
            host_timeout_s=sc.host_timeout_s,
            relaunch_attempts=sc.relaunch_attempts,
            queue_timeout_s=sc.queue_timeout_s,
            call_max_duration_s=s.call.max_duration_s,
            watch_interval_s=min(sc.poll_interval_s, sc.host_timeout_s / 5),
        )


class CeleryLauncher:
    """Runs bots on worker hosts through Celery on Redis (see the module's docstring): a
    `bot.service.launchers.Launcher` whose bots run, and wait, elsewhere. Cancels and stop requests need
    nothing from it: a host claims only a bot still queued, and looks for its bots' stop requests itself."""

    def __init__(self, options: ClusterOptions) -> None:
        self.options = options
        self.queue = TokenQueue(make_app(options.broker_url))
        self.placement: Placement | None = None
        # One thread for every broker call: a broker that hangs never stalls the service's event loop.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="celery-launcher")
        self._watcher: asyncio.Task[None] | None = None
        self._publishing: set[asyncio.Future[None]] = set()
        self._deficit = 0
        self._watching_since: float | None = None

    @property
    def running_ids(self) -> list[str]:
        return []  # on the hosts: GET /hosts

    @property
    def queued_ids(self) -> list[str]:
        return []  # in Redis and the store

    @property
    def records_waiting(self) -> int:
        return 0  # the hosts record their bots

    async def open(self, store: BotStore, metrics: BotMetrics) -> None:
        """Bots on worker hosts outlive the service (their hosts' heartbeats tell); the queue is re-filled
        from the store by the watcher."""
        self.placement = Placement(store)
        self._watcher = asyncio.create_task(self._watch(), name="celery-launcher-watch")

    def withdraw(self, bot_id: str) -> None:
        pass

    def enqueue(self, bot_ids: Sequence[str]) -> None:
        """One token per newly queued bot; a failure is logged and repaired by the next re-fill."""
        if bot_ids:
            self._publish_soon(len(bot_ids))

    async def close(self) -> None:
        """Stops watching; the hosts' bots run on."""
        watcher, self._watcher = self._watcher, None
        await cancel_and_wait(watcher)
        if self._publishing:
            await asyncio.wait(self._publishing, timeout=10)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _publish_soon(self, count: int) -> None:
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._publish, count)
        self._publishing.add(future)
        future.add_done_callback(self._publishing.discard)

    def _publish(self, count: int) -> None:
        try:
            self.queue.publish(count)
        except QueueUnavailable as e:
            log.warning("%s; the queue is re-filled from the store when it is back", e)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                self._watch_hosts()
                self._expire_queued()
                await self._refill(loop)
            except asyncio.CancelledError:
                raise
            except Exception:
                self._watching_since = None
                log.exception("watching the worker hosts failed; retrying")
            await asyncio.sleep(self.options.watch_interval_s)

    def _watch_hosts(self) -> None:
        assert self.placement is not None
        now = time.monotonic()
        if self._watching_since is None:
            self._watching_since = now
        timeout = self.options.host_timeout_s
        lost = self.placement.silent_bots(timeout)  # also proves the database answers
        if now - self._watching_since < timeout:
            return  # not watched long enough to tell a silent host from our own absence
        for name in self.placement.silent_hosts(timeout):
            log.warning("worker host %s stopped heartbeating for %g s: lost", name, timeout)
        for item in lost:
            self._on_lost(item)

    def _on_lost(self, lost: Lost) -> None:
        assert self.placement is not None
        record = lost.record
        launches = record.attempts
        why_not = self._why_not_relaunch(lost)
        event: dict[str, Any] = {
            "event": RunFailureCode.HOST_LOST.value,
            "at": utcnow().isoformat(),
            "source": "service",
            "host": lost.host,
            "last_heartbeat_at": lost.heartbeat_at.isoformat() if lost.heartbeat_at else None,
            "state": record.state.value,
            "attempt": launches,
            "max_attempts": 1 + self.options.relaunch_attempts,
            "action": "relaunch" if why_not is None else "none",
        }
        if why_not is None:
            if self.placement.relaunch(lost, event):
                log.warning("bot %s: host %s lost; queued again", record.id, lost.host)
                self.enqueue([record.id])
            return
        event["why"] = why_not
        message = f"its worker host {lost.host} stopped heartbeating; not re-launched: {why_not}"
        if self.placement.give_up(lost, message, event):
            log.warning("bot %s: %s", record.id, message)

    def _why_not_relaunch(self, lost: Lost) -> str | None:
        record = lost.record
        if record.stop_requested_at is not None:
            return "it had been asked to leave"
        if record.attempts >= 1 + self.options.relaunch_attempts:
            return f"it was launched {record.attempts} times (scheduler.relaunch_attempts)"
        if record.in_call_at is not None:
            limit = record.request.get("max_duration_s") or self.options.call_max_duration_s
            if utcnow() - record.in_call_at >= dt.timedelta(seconds=float(limit)):
                return f"its maximum duration ({float(limit):g} s) had passed"
        return None

    def _expire_queued(self) -> None:
        assert self.placement is not None
        for bot_id in self.placement.expire_queued(self.options.queue_timeout_s):
            log.warning("bot %s: missed, no free worker slot in time", bot_id)

    async def _refill(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self.placement is not None
        if self._publishing:
            return  # tokens on their way: count again next time
        queued = self.placement.count_queued()
        if queued == 0:
            self._deficit = 0
            return
        try:
            waiting = await loop.run_in_executor(self._executor, self.queue.waiting)
        except QueueUnavailable as e:
            log.warning("%s; %d queued bots wait for it", e, queued)
            self._deficit = 0
            return
        deficit = queued - waiting
        if deficit > 0 and self._deficit > 0:
            count = min(deficit, self._deficit)
            log.warning("the queue lacks %d tokens for the bots queued in the store: publishing them", count)
            self._publish_soon(count)
            self._deficit = 0
            return
        self._deficit = max(deficit, 0)
