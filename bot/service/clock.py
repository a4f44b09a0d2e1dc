"""The job clock: when each scheduled bot is due.

APScheduler 3 (AsyncIOScheduler) keeps one date job per bot in a SQLAlchemy job store, in the same database
as the bot records (`bot.service.store`). A job fires `lead_time_s` before `join_at` and hands the bot to
`on_due`; a job found later than the grace window is skipped and the bot recorded as missed, never started
hours late. A clock that is only `open()` (a CLI client) adds and removes jobs for a serving clock elsewhere,
which looks at the job store every `poll_interval_s` for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.exc import SQLAlchemyError

from bot.aio import cancel_and_wait
from bot.service.store import PENDING, BotState, BotStore, database_unavailable, utcnow

log = logging.getLogger(__name__)


class _Scheduler(AsyncIOScheduler):  # type: ignore[misc]
    def _process_jobs(self) -> float | None:
        try:
            wait: float | None = super()._process_jobs()
            return wait
        except JobLookupError:
            # Another scheduler on the same database ran and removed this job first (its bot is claimed
            # once anyway); look again shortly instead of leaving the timer unset.
            return 0.1


# The job function APScheduler stores by reference; it finds the clock running on the job's loop.
_clocks: dict[asyncio.AbstractEventLoop, JobClock] = {}


async def run_scheduled_bot(bot_id: str) -> None:
    clock = _clocks.get(asyncio.get_running_loop())
    if clock is None or clock.on_due is None:
        log.error("job for bot %s fired but no bot service runs on this loop", bot_id)
        return
    clock.on_due(bot_id)


class JobClock:
    """One job per scheduled bot. `open()` (a client: add and remove jobs), `start(on_due)` (serving: fire
    them), `close()`."""

    def __init__(self, store: BotStore, misfire_grace_s: float, poll_interval_s: float) -> None:
        self.store = store
        self.misfire_grace_s = misfire_grace_s
        self.poll_interval_s = poll_interval_s
        self.on_due: Callable[[str], None] | None = None
        self._scheduler: _Scheduler | None = None
        self._poller: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        """The job store, paused: jobs can be added and removed, none fires."""
        self._scheduler = _Scheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.store.engine)},
            timezone=dt.UTC,
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        self._scheduler.start(paused=True)

    def start(self, on_due: Callable[[str], None]) -> None:
        """Settles what the last run left (missed bots, lost jobs), then fires jobs: `on_due(bot_id)`."""
        scheduler = self._require_scheduler()
        loop = asyncio.get_running_loop()
        if loop in _clocks:
            raise RuntimeError("another serving BotService already runs on this event loop")
        _clocks[loop] = self
        self._loop = loop
        self.on_due = on_due
        scheduler.add_listener(self._on_job_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        self._reconcile()
        scheduler.resume()
        self._poller = asyncio.create_task(self._poll(), name="job-clock-poll")

    async def close(self) -> None:
        """Stops firing jobs (they stay in the job store); idempotent."""
        poller, self._poller = self._poller, None
        await cancel_and_wait(poller)
        if self._loop is not None and _clocks.get(self._loop) is self:
            del _clocks[self._loop]
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler.shutdown runs on the next loop turn

    def add(self, bot_id: str, run_at: dt.datetime) -> None:
        self._require_scheduler().add_job(
            run_scheduled_bot,
            trigger="date",
            run_date=run_at,
            args=[bot_id],
            id=bot_id,
            name=f"bot {bot_id}",
            misfire_grace_time=max(1, round(self.misfire_grace_s)),
            replace_existing=True,
        )

    def remove(self, bot_id: str) -> None:
        """Removes the bot's job if it has one (thread-safe: the job store has its own lock)."""
        with contextlib.suppress(JobLookupError):
            self._require_scheduler().remove_job(bot_id)

    def _require_scheduler(self) -> _Scheduler:
        if self._scheduler is None:
            raise RuntimeError("JobClock.open() has not been called")
        return self._scheduler

    def _on_job_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            late = (utcnow() - event.scheduled_run_time).total_seconds()
            self._mark_missed(event.job_id, f"its start time passed {late:.0f} s ago")
        else:
            log.error("job for bot %s failed: %r", event.job_id, event.exception)

    def _mark_missed(self, bot_id: str, why: str) -> None:
        message = f"missed: {why}, beyond the {self.misfire_grace_s:g} s grace window (was the service down?)"
        if self.store.transition(bot_id, BotState.MISSED, PENDING, message=message, ended_at=utcnow()):
            log.warning("bot %s %s", bot_id, message)

    def _reconcile(self) -> None:
        """After a restart, before any job fires: scheduled bots whose time passed beyond the grace window
        are missed, a scheduled bot without a job gets one, a job without a scheduled bot goes."""
        now = utcnow()
        grace = dt.timedelta(seconds=self.misfire_grace_s)
        jobs = {job.id: job for job in self._require_scheduler().get_jobs()}
        for record in self.store.list_bots([BotState.SCHEDULED], limit=1_000_000):
            job = jobs.pop(record.id, None)
            due = job.next_run_time if job is not None and job.next_run_time else record.run_at
            if now - due > grace:
                self.remove(record.id)
                self._mark_missed(record.id, f"its start time passed {(now - due).total_seconds():.0f} s ago")
            elif job is None:
                self.add(record.id, record.run_at)
        for job_id in jobs:  # a job whose bot is no longer scheduled (cancelled by a client, …)
            self.remove(job_id)

    async def _poll(self) -> None:
        """Picks up the jobs client processes wrote to the job store."""
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                self._require_scheduler().wakeup()
            except Exception as e:
                if isinstance(e, SQLAlchemyError) and database_unavailable(e):
                    log.debug("polling: the database is unavailable")  # the API and RecordQueue say so
                else:
                    log.exception("polling the job store failed; retrying")
