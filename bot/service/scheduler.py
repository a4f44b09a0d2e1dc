"""The bot service: persistent scheduled jobs, a bounded number of concurrent bots, and their records.

APScheduler 3 (AsyncIOScheduler) keeps one date job per bot in a SQLAlchemy job store, in the same database
as the bot records (`bot.service.store`). A job fires `lead_time_s` before `join_at`; a job found later than
the grace window is skipped and the bot recorded as missed, never started hours late. The firing job only
*claims* the bot (a conditional `scheduled → queued` update, so a job can't start a bot twice even across
restarts or two schedulers); bots then start in order through a `Launcher` while fewer than
`max_concurrent_bots` run, and the excess waits in state `queued`.

With a `RemoteLauncher` (scheduler.launcher = "celery", `bot.cluster`) the bots run on worker hosts instead:
each queued bot is handed to the launcher, the host that takes it claims and records it in the same store,
and the service holds no process of its own (so neither its restart nor `max_concurrent_bots` touch them).

A `BotService` started without a launcher is a *client*: it schedules, lists and cancels in the database
(the CLI without --api) while a serving instance elsewhere runs the bots; the serving instance wakes every
`poll_interval_s` to see jobs and stop requests written by clients.

A serving instance also delivers the bots' webhooks from the store's outbox (`bot.service.outbox`: whichever
process records an event queues it; this one sends it, for hours, across restarts) and keeps the
Prometheus metrics of the bots it runs (`self.metrics`, `bot.service.metrics`; served at /metrics by
`bot.service.api`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.exc import SQLAlchemyError

from bot.outcome import ExitCode, RunFailureCode
from bot.platforms.urls import InvalidMeetingUrl, parse_meeting_url
from bot.service.bot_output import RecordQueue
from bot.service.bot_request import BotRequest, RequestError, parse_join_at
from bot.service.launchers import BotHandle, Launcher, LaunchError, RemoteLauncher
from bot.service.metrics import ServiceMetrics
from bot.service.outbox import WebhookDispatcher, WebhookOptions, WebhookOutbox
from bot.service.store import (
    PENDING,
    RUNNING,
    TERMINAL,
    BotRecord,
    BotState,
    BotStore,
    database_unavailable,
    make_engine,
    safe_db_url,
    utcnow,
)
from bot.settings import SchedulerSection

log = logging.getLogger(__name__)


def default_db_url() -> str:
    """A SQLite file in the user's state directory (scheduler.db_url, i.e. BOT_DB_URL, replaces it)."""
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return f"sqlite:///{state / 'meeting-bot' / 'bots.db'}"


_DEFAULTS = SchedulerSection()  # the defaults live with the settings, once


@dataclass
class SchedulerConfig:
    """The service's options; commands build them from the [scheduler] settings (bot.call.config)."""

    db_url: str = field(default="", repr=False)  # may hold a password; empty: default_db_url()
    # What each means: bot.settings.SchedulerSection.
    lead_time_s: float = _DEFAULTS.lead_time_s
    misfire_grace_s: float = _DEFAULTS.misfire_grace_s
    max_concurrent_bots: int = _DEFAULTS.max_concurrent_bots
    queue_timeout_s: float = _DEFAULTS.queue_timeout_s
    stop_timeout_s: float = _DEFAULTS.stop_timeout_s
    poll_interval_s: float = _DEFAULTS.poll_interval_s

    def __post_init__(self) -> None:
        self.db_url = self.db_url or default_db_url()
        for name in ("lead_time_s", "queue_timeout_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("misfire_grace_s", "stop_timeout_s", "poll_interval_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_concurrent_bots < 1:
            raise ValueError("max_concurrent_bots must be at least 1")


class DatabaseError(RuntimeError):
    """The database could not be opened; the message names it (without its password) and the cause."""


class NotFound(LookupError):
    pass


class _Scheduler(AsyncIOScheduler):  # type: ignore[misc]
    def _process_jobs(self) -> float | None:
        try:
            wait: float | None = super()._process_jobs()
            return wait
        except JobLookupError:
            # Another scheduler on the same database ran and removed this job first (its bot is claimed
            # once anyway); look again shortly instead of leaving the timer unset.
            return 0.1


# The job function APScheduler stores by reference; it finds the service running on the job's loop.
_services: dict[asyncio.AbstractEventLoop, BotService] = {}


async def run_scheduled_bot(bot_id: str) -> None:
    service = _services.get(asyncio.get_running_loop())
    if service is None:
        log.error("job for bot %s fired but no bot service runs on this loop", bot_id)
        return
    service._claim(bot_id)


class BotService:
    """Schedules bots, runs them through the launcher and records everything. `start()`/`close()`."""

    def __init__(
        self,
        config: SchedulerConfig | None = None,
        launcher: Launcher | RemoteLauncher | None = None,
        webhooks: WebhookOptions | None = None,
    ) -> None:
        self.config = config or SchedulerConfig()
        self.webhooks = webhooks or WebhookOptions()
        self._dispatcher: WebhookDispatcher | None = None
        self.metrics = ServiceMetrics(
            capacity=self.config.max_concurrent_bots,
            running=lambda: len(self.running_ids),
            queued=lambda: len(self._queue),
            bots_by_state=lambda: {s.value: n for s, n in self._require_store().count_by_state().items()},
            deliveries_by_state=lambda: {s.value: n for s, n in self.outbox.count_by_state().items()},
        )
        # Bots run here through `launcher`, or on worker hosts through `remote`.
        self.remote = launcher if isinstance(launcher, RemoteLauncher) else None
        self.launcher = None if isinstance(launcher, RemoteLauncher) else launcher
        self.store: BotStore | None = None
        # Running bots' events and exits on their way to the store (they wait there while it is away).
        self._records: RecordQueue | None = None
        self._scheduler: _Scheduler | None = None
        self._queue: list[str] = []
        self._handles: dict[str, BotHandle] = {}
        self._starting: set[str] = set()
        self._stopping: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def serving(self) -> bool:
        return self.launcher is not None or self.remote is not None

    @property
    def running_ids(self) -> list[str]:
        return sorted(self._handles.keys() | self._starting)

    @property
    def queued_ids(self) -> list[str]:
        return list(self._queue)

    @property
    def records_waiting(self) -> int:
        """Running bots' events and exits held in memory while the database is unavailable (else 0)."""
        return self._records.waiting if self._records is not None else 0

    def _require_store(self) -> BotStore:
        if self.store is None:
            raise RuntimeError("BotService.start() has not been called")
        return self.store

    @property
    def outbox(self) -> WebhookOutbox:
        """The bots' events with their webhook deliveries (bot.service.outbox)."""
        return self._require_store().outbox

    async def start(self) -> None:
        """Opens the database (DatabaseError if it can't) and, when serving, starts processing jobs."""
        try:
            engine = make_engine(self.config.db_url)
            self.store = BotStore(engine)
        except (SQLAlchemyError, ImportError, ValueError) as e:
            where = safe_db_url(self.config.db_url)
            raise DatabaseError(
                f"cannot open the database {where}: {getattr(e, 'orig', None) or e}"
            ) from None
        self._loop = asyncio.get_running_loop()
        self._scheduler = _Scheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=engine)},
            timezone=dt.UTC,
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        self._scheduler.start(paused=True)
        if not self.serving:
            return
        if self._loop in _services:
            raise RuntimeError("another serving BotService already runs on this event loop")
        _services[self._loop] = self
        self._scheduler.add_listener(self._on_job_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        self._reconcile()
        self._records = RecordQueue(self.store)
        self._records.start()
        # Delivers what the last run left queued, then every new event (this process's or a client's).
        self._dispatcher = WebhookDispatcher(self.outbox, self.webhooks, self.metrics)
        self._dispatcher.start()
        self.store.on_event = self._dispatcher.notify
        if self.remote is not None:
            await self.remote.open(self.store)
        self._scheduler.resume()
        self._poller = asyncio.create_task(self._poll(), name="bot-service-poll")
        self._pump()

    async def close(self) -> None:
        """Stops processing jobs, makes every running bot leave and waits for them; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._loop is not None and _services.get(self._loop) is self:
            del _services[self._loop]
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler.shutdown runs on the next loop turn
        for bot_id in list(self._handles):
            self._stop(bot_id)
        if self._tasks:
            # Queued bots stay queued in the database and start after the next start().
            await asyncio.wait(self._tasks, timeout=self.config.stop_timeout_s + 10)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        if self.remote is not None:
            await self.remote.close()  # the workers' bots run on
        if self._records is not None:
            await self._records.close()  # the bots' last records, if the database is away
        if self._dispatcher is not None:
            # After the bots: their last events are queued by now. What is not delivered yet stays
            # queued in the database for the next start().
            await self._dispatcher.close()
        if self.store is not None:
            self.store.close()

    # --- requests -------------------------------------------------------------------------------------

    def schedule(self, request: BotRequest, join_at: dt.datetime | str | None = None) -> BotRecord:
        """Records the bot and adds its job. `request` comes from `validate_request`."""
        store = self._require_store()
        assert self._scheduler is not None
        if not request.webhook_url and self.webhooks.default_url:
            request = replace(request, webhook_url=self.webhooks.default_url)
        if self.serving and request.webhook_url and not self.webhooks.secret:
            raise RequestError(
                "webhook_url", "this service has no secret to sign webhooks with: set BOT_WEBHOOK_SECRET"
            )
        now = utcnow()
        when = parse_join_at(join_at, now)
        run_at = max(when - dt.timedelta(seconds=self.config.lead_time_s), now)
        record = store.create(
            meeting_url=request.meeting_url,
            agent_id=request.agent_id,
            request=request.to_dict(),
            join_at=when,
            run_at=run_at,
        )
        try:
            self._add_job(record.id, run_at)
        except Exception:
            store.transition(record.id, BotState.FAILED, PENDING, message="could not store its job")
            raise
        return record

    def get(self, bot_id: str, with_events: bool = True) -> BotRecord:
        record = self._require_store().get(bot_id, with_events=with_events)
        if record is None:
            raise NotFound(f"no bot with id {bot_id!r}")
        return record

    def list_bots(
        self,
        states: list[BotState] | None = None,
        agent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[BotRecord]:
        return self._require_store().list_bots(states, agent_id, limit, offset)

    def cancel(self, bot_id: str) -> tuple[str, BotRecord]:
        """Cancels a scheduled or queued bot ("cancelled"), or makes a running one leave ("leaving");
        "finished" if it had already ended."""
        store = self._require_store()
        for _ in range(5):  # each retry follows a state change that raced this call
            record = self.get(bot_id, with_events=False)
            if record.state in TERMINAL:
                return "finished", record
            if record.state in PENDING:
                if store.transition(bot_id, BotState.CANCELLED, PENDING, ended_at=utcnow()):
                    self._remove_job(bot_id)
                    if bot_id in self._queue:
                        self._queue.remove(bot_id)
                    return "cancelled", self.get(bot_id, with_events=False)
                continue
            if record.stop_requested_at is None:
                store.update(bot_id, stop_requested_at=utcnow())
            if bot_id in self._handles:
                self._stop(bot_id)
            return "leaving", self.get(bot_id, with_events=False)
        raise RuntimeError(f"bot {bot_id} kept changing state; try again")

    # --- jobs -----------------------------------------------------------------------------------------

    def _add_job(self, bot_id: str, run_at: dt.datetime) -> None:
        assert self._scheduler is not None
        self._scheduler.add_job(
            run_scheduled_bot,
            trigger="date",
            run_date=run_at,
            args=[bot_id],
            id=bot_id,
            name=f"bot {bot_id}",
            misfire_grace_time=max(1, round(self.config.misfire_grace_s)),
            replace_existing=True,
        )

    def _remove_job(self, bot_id: str) -> None:
        assert self._scheduler is not None
        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(bot_id)

    def _on_job_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            late = (utcnow() - event.scheduled_run_time).total_seconds()
            self._mark_missed(event.job_id, f"its start time passed {late:.0f} s ago")
        else:
            log.error("job for bot %s failed: %r", event.job_id, event.exception)

    def _mark_missed(self, bot_id: str, why: str) -> None:
        grace = self.config.misfire_grace_s
        message = f"missed: {why}, beyond the {grace:g} s grace window (was the service down?)"
        if self._require_store().transition(
            bot_id, BotState.MISSED, PENDING, message=message, ended_at=utcnow()
        ):
            log.warning("bot %s %s", bot_id, message)

    def _reconcile(self) -> None:
        """After a restart: settle what the last run left behind, before any job is processed."""
        store = self._require_store()
        assert self._scheduler is not None
        now = utcnow()
        grace = dt.timedelta(seconds=self.config.misfire_grace_s)
        # Bots on worker hosts outlive the service (their hosts' heartbeats tell); its own died with it.
        for record in [] if self.remote else store.list_bots(RUNNING, limit=1_000_000):
            store.transition(
                record.id,
                BotState.CRASHED,
                RUNNING,
                ended_at=now,
                message="the service stopped while this bot ran; its end was not recorded",
            )
        for record in sorted(  # (a remote launcher re-fills its queue from the store itself)
            [] if self.remote else store.list_bots([BotState.QUEUED], limit=1_000_000),
            key=lambda r: r.queued_at or now,
        ):
            self._queue.append(record.id)
        jobs = {job.id: job for job in self._scheduler.get_jobs()}
        for record in store.list_bots([BotState.SCHEDULED], limit=1_000_000):
            job = jobs.pop(record.id, None)
            due = job.next_run_time if job is not None and job.next_run_time else record.run_at
            if now - due > grace:
                self._remove_job(record.id)
                self._mark_missed(record.id, f"its start time passed {(now - due).total_seconds():.0f} s ago")
            elif job is None:
                self._add_job(record.id, record.run_at)
        for job_id in jobs:  # a job whose bot is no longer scheduled (cancelled by a client, …)
            self._remove_job(job_id)

    async def _poll(self) -> None:
        """Picks up jobs and stop requests that client processes wrote to the database."""
        assert self._scheduler is not None
        while True:
            await asyncio.sleep(self.config.poll_interval_s)
            try:
                self._scheduler.wakeup()
                if self._queue:
                    self._pump()  # bots that waited for the database
                if self._handles:
                    for record in self._require_store().list_bots(RUNNING, limit=1_000_000):
                        if record.stop_requested_at and record.id in self._handles:
                            self._stop(record.id)
            except Exception as e:
                if isinstance(e, SQLAlchemyError) and database_unavailable(e):
                    log.debug("polling: the database is unavailable")  # the API and RecordQueue say so
                else:
                    log.exception("polling the database failed; retrying")

    # --- running bots ---------------------------------------------------------------------------------

    def _claim(self, bot_id: str) -> None:
        if self._require_store().transition(
            bot_id, BotState.QUEUED, [BotState.SCHEDULED], queued_at=utcnow()
        ):
            self._queue.append(bot_id)
            self._pump()
        else:
            log.info("bot %s was already claimed or cancelled; not starting it again", bot_id)

    def _pump(self) -> None:
        """Starts queued bots while there is room (or hands them all to the remote launcher). While the
        database is unavailable they stay queued; the poller tries again."""
        try:
            self._pump_queue()
        except SQLAlchemyError as e:
            if not database_unavailable(e):
                raise
            log.warning(
                "the database is unavailable: %d queued bot(s) start once it is back", len(self._queue)
            )

    def _pump_queue(self) -> None:
        store = self._require_store()
        if self.remote is not None:
            queued, self._queue = self._queue, []
            self.remote.enqueue(queued)
            return
        while (
            self._queue
            and not self._closed
            and len(self._handles) + len(self._starting) < (self.config.max_concurrent_bots)
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
        store = self._require_store()
        assert self.launcher is not None
        bot_id = record.id
        try:
            request = BotRequest.from_dict(bot_id, record.request)
            self.metrics.launched(bot_id, _platform(record.meeting_url))
            try:
                handle = await self.launcher.start(request)
            except LaunchError as e:
                store.transition(bot_id, BotState.CRASHED, RUNNING, ended_at=utcnow(), message=str(e))
                self.metrics.finished(bot_id, RunFailureCode.LAUNCH_FAILED)
                return
            self._handles[bot_id] = handle
            self._starting.discard(bot_id)
            where = {"pid": pid} if isinstance(pid := getattr(handle, "pid", None), int) else {}
            launched = {"event": "launched", "at": utcnow().isoformat(), "source": "service", **where}
            self._require_records().write(bot_id, "launched", lambda r: r.store.add_event(bot_id, launched))
            latest = self._get_if_available(bot_id)
            if self._closed or (latest is not None and latest.stop_requested_at is not None):
                self._stop(bot_id)
            async for event in handle.events():
                self._on_bot_event(bot_id, event)
            code = await handle.wait()
            self._record_exit(bot_id, code, handle.diagnostics())
        except Exception as e:
            log.exception("supervising bot %s failed", bot_id)
            crashed = {"ended_at": utcnow(), "message": f"supervisor: {e!r}"}
            self._require_records().write(
                bot_id, "crash", lambda r: r.store.transition(bot_id, BotState.CRASHED, RUNNING, **crashed)
            )
            handle_left = self._handles.get(bot_id)
            if handle_left is not None:
                handle_left.kill()
                await handle_left.wait()
        finally:
            self.metrics.finished(bot_id, RunFailureCode.CRASHED)  # nothing if its exit was recorded
            self._starting.discard(bot_id)
            self._handles.pop(bot_id, None)
            timer = self._stopping.pop(bot_id, None)
            if timer is not None:
                timer.cancel()
            self._pump()

    def _stop(self, bot_id: str) -> None:
        handle = self._handles.get(bot_id)
        if handle is None or bot_id in self._stopping:
            return
        handle.stop()
        assert self._loop is not None
        self._stopping[bot_id] = self._loop.call_later(self.config.stop_timeout_s, handle.kill)

    def _require_records(self) -> RecordQueue:
        if self._records is None:
            raise RuntimeError("BotService.start() has not been called")
        return self._records

    def _get_if_available(self, bot_id: str) -> BotRecord | None:
        """The bot's record, or None while the database is unavailable."""
        try:
            return self._require_store().get(bot_id)
        except SQLAlchemyError as e:
            if not database_unavailable(e):
                raise
            return None

    def _on_bot_event(self, bot_id: str, data: dict[str, Any]) -> None:
        """Records one `join --json` line (the translation is bot.service.bot_output's, shared with worker
        hosts)."""
        self.metrics.observe(bot_id, data)
        self._require_records().event(bot_id, data)

    def _record_exit(self, bot_id: str, code: int, diagnostics: str) -> None:
        self._require_records().exit(bot_id, code, diagnostics)
        # A bot whose events never said how its join went (killed, a usage error): its exit says it.
        self.metrics.finished(bot_id, ExitCode.failure_name(code))


def _platform(meeting_url: str) -> str:
    try:
        return parse_meeting_url(meeting_url).platform
    except InvalidMeetingUrl:
        return "unknown"
