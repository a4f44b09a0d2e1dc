"""Bots as child processes of the service: at most `max_concurrent_bots` at once, the rest wait queued.

`LocalLauncher` takes the bots the service claimed (`enqueue`) and starts them in join order through a
`ProcessLauncher` while there is a free slot; a bot still without one `queue_timeout_s` after its join time
is recorded as missed. It supervises each bot until it exits, recording its events and exit through a
`RecordQueue` (they wait in memory while the database is away), and every `poll_interval_s` looks for stop
requests that client processes wrote to the store. Bots die with the service: `open()` records the ones a
previous run left running as crashed, and queues again the ones it left queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bot.aio import cancel_and_wait
from bot.outcome import ExitCode, RunFailureCode
from bot.service.bot_output import RecordQueue
from bot.service.bot_request import BotRequest, meeting_platform
from bot.service.launchers import BotHandle, LaunchError, ProcessLauncher
from bot.service.metrics import BotMetrics
from bot.service.options import SchedulerConfig
from bot.service.store import RUNNING, BotRecord, BotState, BotStore, database_unavailable, utcnow

log = logging.getLogger(__name__)


class LocalLauncher:
    """Runs the service's bots here (see the module's docstring): a `bot.service.launchers.Launcher`."""

    def __init__(self, process: ProcessLauncher, config: SchedulerConfig) -> None:
        self.process = process
        self.config = config
        self._store: BotStore | None = None
        self._metrics: BotMetrics | None = None
        # Running bots' events and exits on their way to the store (they wait there while it is away).
        self._records: RecordQueue | None = None
        self._queue: list[str] = []
        self._handles: dict[str, BotHandle] = {}
        self._starting: set[str] = set()
        self._stopping: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def running_ids(self) -> list[str]:
        return sorted(self._handles.keys() | self._starting)

    @property
    def queued_ids(self) -> list[str]:
        return list(self._queue)

    @property
    def records_waiting(self) -> int:
        return self._records.waiting if self._records is not None else 0

    async def open(self, store: BotStore, metrics: BotMetrics) -> None:
        self._store, self._metrics = store, metrics
        now = utcnow()
        for record in store.list_bots(RUNNING, limit=1_000_000):  # they died with the last run
            store.transition(
                record.id,
                BotState.CRASHED,
                RUNNING,
                ended_at=now,
                message="the service stopped while this bot ran; its end was not recorded",
            )
        queued = store.list_bots([BotState.QUEUED], limit=1_000_000)
        self._queue += [r.id for r in sorted(queued, key=lambda r: r.queued_at or now)]
        self._records = RecordQueue(store)
        self._records.start()
        self._poller = asyncio.create_task(self._poll(), name="local-launcher-poll")
        self._pump()

    def enqueue(self, bot_ids: Sequence[str]) -> None:
        self._queue += bot_ids
        self._pump()

    def withdraw(self, bot_id: str) -> None:
        if bot_id in self._queue:
            self._queue.remove(bot_id)
        self._stop(bot_id)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        poller, self._poller = self._poller, None
        await cancel_and_wait(poller)
        for bot_id in list(self._handles):
            self._stop(bot_id)
        if self._tasks:
            # Queued bots stay queued in the database and start after the next open().
            await asyncio.wait(self._tasks, timeout=self.config.stop_timeout_s + 10)
        await cancel_and_wait(*self._tasks)
        if self._records is not None:
            await self._records.close()  # the bots' last records, if the database is away

    def _require(self) -> tuple[BotStore, BotMetrics, RecordQueue]:
        if self._store is None or self._metrics is None or self._records is None:
            raise RuntimeError("LocalLauncher.open() has not been called")
        return self._store, self._metrics, self._records

    async def _poll(self) -> None:
        """Retries the bots that waited for the database; makes leave the bots clients asked to."""
        store, _, _ = self._require()
        while True:
            await asyncio.sleep(self.config.poll_interval_s)
            try:
                if self._queue:
                    self._pump()
                if self._handles:
                    for record in store.list_bots(RUNNING, limit=1_000_000):
                        if record.stop_requested_at:
                            self._stop(record.id)
            except Exception as e:
                if isinstance(e, SQLAlchemyError) and database_unavailable(e):
                    log.debug("polling: the database is unavailable")  # the API and RecordQueue say so
                else:
                    log.exception("polling the database failed; retrying")

    def _pump(self) -> None:
        """Starts queued bots while there is room. While the database is unavailable they stay queued; the
        poller tries again."""
        try:
            self._pump_queue()
        except SQLAlchemyError as e:
            if not database_unavailable(e):
                raise
            log.warning(
                "the database is unavailable: %d queued bot(s) start once it is back", len(self._queue)
            )

    def _pump_queue(self) -> None:
        store, _, _ = self._require()
        while (
            self._queue
            and not self._closed
            and len(self._handles) + len(self._starting) < self.config.max_concurrent_bots
        ):
            bot_id = self._queue[0]
            record = store.get(bot_id)
            self._queue.pop(0)
            if record is None or record.state is not BotState.QUEUED:
                continue
            waited = utcnow() - record.join_at
            if waited.total_seconds() > self.config.queue_timeout_s:
                store.transition(
                    bot_id,
                    BotState.MISSED,
                    [BotState.QUEUED],
                    ended_at=utcnow(),
                    message=f"missed: no free slot within {self.config.queue_timeout_s:g} s of join_at",
                )
                continue
            if not store.transition(bot_id, BotState.STARTING, [BotState.QUEUED], started_at=utcnow()):
                continue
            self._starting.add(bot_id)
            task = asyncio.create_task(self._run_bot(record), name=f"bot-{bot_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_bot(self, record: BotRecord) -> None:
        store, metrics, records = self._require()
        bot_id = record.id
        try:
            request = BotRequest.from_dict(bot_id, record.request)
            metrics.launched(bot_id, meeting_platform(record.meeting_url))
            try:
                handle = await self.process.start(request)
            except LaunchError as e:
                store.transition(bot_id, BotState.CRASHED, RUNNING, ended_at=utcnow(), message=str(e))
                metrics.finished(bot_id, RunFailureCode.LAUNCH_FAILED)
                return
            self._handles[bot_id] = handle
            self._starting.discard(bot_id)
            where = {"pid": pid} if isinstance(pid := getattr(handle, "pid", None), int) else {}
            launched = {"event": "launched", "at": utcnow().isoformat(), "source": "service", **where}
            records.write(bot_id, "launched", lambda r: r.store.add_event(bot_id, launched))
            latest = self._get_if_available(bot_id)
            if self._closed or (latest is not None and latest.stop_requested_at is not None):
                self._stop(bot_id)
            async for event in handle.events():
                self._on_bot_event(bot_id, event)
            code = await handle.wait()
            records.exit(bot_id, code, handle.diagnostics())
            # A bot whose events never said how its join went (killed, a usage error): its exit says it.
            metrics.finished(bot_id, ExitCode.failure_name(code))
        except Exception as e:
            log.exception("supervising bot %s failed", bot_id)
            crashed = {"ended_at": utcnow(), "message": f"supervisor: {e!r}"}
            records.write(
                bot_id, "crash", lambda r: r.store.transition(bot_id, BotState.CRASHED, RUNNING, **crashed)
            )
            handle_left = self._handles.get(bot_id)
            if handle_left is not None:
                handle_left.kill()
                await handle_left.wait()
        finally:
            metrics.finished(bot_id, RunFailureCode.CRASHED)  # nothing if its exit was recorded
            self._starting.discard(bot_id)
            self._handles.pop(bot_id, None)
            timer = self._stopping.pop(bot_id, None)
            if timer is not None:
                timer.cancel()
            self._pump()

    def _stop(self, bot_id: str) -> None:
        """Asks a bot running here to leave; kills it if it has not exited `stop_timeout_s` later."""
        handle = self._handles.get(bot_id)
        if handle is None or bot_id in self._stopping:
            return
        handle.stop()
        loop = asyncio.get_running_loop()
        self._stopping[bot_id] = loop.call_later(self.config.stop_timeout_s, handle.kill)

    def _get_if_available(self, bot_id: str) -> BotRecord | None:
        """The bot's record, or None while the database is unavailable."""
        store, _, _ = self._require()
        try:
            return store.get(bot_id)
        except SQLAlchemyError as e:
            if not database_unavailable(e):
                raise
            return None

    def _on_bot_event(self, bot_id: str, data: dict[str, Any]) -> None:
        """Records one `join --json` line (the translation is bot.service.bot_output's, shared with worker
        hosts)."""
        _, metrics, records = self._require()
        metrics.observe(bot_id, data)
        records.event(bot_id, data)
