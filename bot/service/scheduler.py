"""The bot service: persistent scheduled jobs, bots run through a launcher, and their records.

`BotService` is the one face the API and the commands use (`schedule`, `get`, `list_bots`, `cancel`, the
counts and metrics). Behind it:

- the job clock (`bot.service.clock`): one APScheduler job per scheduled bot, in the bots' database; a job
  fires `lead_time_s` before `join_at` and the service *claims* the bot (a conditional `scheduled → queued`
  update, so a job can't start a bot twice even across restarts or two schedulers);
- a launcher (`bot.service.launchers.Launcher`) the claimed bots go to: `LocalLauncher` runs them here as
  child processes while fewer than `max_concurrent_bots` run (the excess waits in state `queued`);
  `CeleryLauncher` (scheduler.launcher = "celery", `bot.cluster`) hands them to worker hosts, which claim
  and record them in the same store (so neither the service's restart nor `max_concurrent_bots` touch them);
- the webhook outbox (`bot.service.outbox`: whichever process records an event queues it; a serving
  instance sends it, for hours, across restarts) and the Prometheus metrics (`self.metrics`,
  `bot.service.metrics`; served at /metrics by `bot.service.api`).

A `BotService` started without a launcher is a *client*: it schedules, lists and cancels in the database
(the CLI without --api) while a serving instance elsewhere runs the bots; the serving instance wakes every
`poll_interval_s` to see jobs and stop requests written by clients.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import replace

from sqlalchemy.exc import SQLAlchemyError

from bot.cluster.placement import HostRecord, Placement
from bot.service.bot_request import BotRequest, RequestError, parse_join_at
from bot.service.clock import JobClock
from bot.service.clock import run_scheduled_bot as run_scheduled_bot  # jobs stored before the clock moved
from bot.service.launchers import Launcher, ProcessLauncher
from bot.service.local_launcher import LocalLauncher
from bot.service.metrics import ServiceMetrics
from bot.service.options import SchedulerConfig as SchedulerConfig
from bot.service.options import default_db_url as default_db_url
from bot.service.outbox import (
    StoredEvent,
    WebhookDispatcher,
    WebhookOptions,
    WebhookOutbox,
    store_with_outbox,
)
from bot.service.store import (
    PENDING,
    TERMINAL,
    BotRecord,
    BotState,
    BotStore,
    call_on_loop,
    make_engine,
    safe_db_url,
    utcnow,
)

log = logging.getLogger(__name__)


class DatabaseError(RuntimeError):
    """The database could not be opened; the message names it (without its password) and the cause."""


class NotFound(LookupError):
    pass


class BotService:
    """Schedules bots, runs them through the launcher and records everything. `start()`/`close()`.

    `launcher`: where bots run (None: a client); a `ProcessLauncher` runs them here (a `LocalLauncher`)."""

    def __init__(
        self,
        config: SchedulerConfig | None = None,
        launcher: Launcher | ProcessLauncher | None = None,
        webhooks: WebhookOptions | None = None,
    ) -> None:
        self.config = config or SchedulerConfig()
        self.webhooks = webhooks or WebhookOptions()
        self.launcher: Launcher | None = (
            launcher
            if launcher is None or isinstance(launcher, Launcher)
            else LocalLauncher(launcher, self.config)
        )
        self.metrics = ServiceMetrics(
            capacity=self.config.max_concurrent_bots,
            running=lambda: len(self.running_ids),
            queued=lambda: len(self.queued_ids),
            bots_by_state=lambda: {s.value: n for s, n in self._require_store().count_by_state().items()},
            deliveries_by_state=lambda: {s.value: n for s, n in self.outbox.count_by_state().items()},
        )
        self.store: BotStore | None = None
        self._outbox: WebhookOutbox | None = None
        self._clock: JobClock | None = None
        self._dispatcher: WebhookDispatcher | None = None
        self._placement: Placement | None = None  # made at the first hosts() (it creates the hosts table)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def serving(self) -> bool:
        return self.launcher is not None

    @property
    def running_ids(self) -> list[str]:
        return self.launcher.running_ids if self.launcher is not None else []

    @property
    def queued_ids(self) -> list[str]:
        return self.launcher.queued_ids if self.launcher is not None else []

    @property
    def records_waiting(self) -> int:
        """Running bots' events and exits held in memory while the database is unavailable (else 0)."""
        return self.launcher.records_waiting if self.launcher is not None else 0

    @property
    def outbox(self) -> WebhookOutbox:
        """The bots' events with their webhook deliveries (bot.service.outbox)."""
        if self._outbox is None:
            raise RuntimeError("BotService.start() has not been called")
        return self._outbox

    def _require_store(self) -> BotStore:
        if self.store is None:
            raise RuntimeError("BotService.start() has not been called")
        return self.store

    def _require_clock(self) -> JobClock:
        if self._clock is None:
            raise RuntimeError("BotService.start() has not been called")
        return self._clock

    async def start(self) -> None:
        """Opens the database (DatabaseError if it can't) and, when serving, starts processing jobs."""
        try:
            self.store, self._outbox = store_with_outbox(make_engine(self.config.db_url))
        except (SQLAlchemyError, ImportError, ValueError) as e:
            where = safe_db_url(self.config.db_url)
            raise DatabaseError(
                f"cannot open the database {where}: {getattr(e, 'orig', None) or e}"
            ) from None
        self._loop = asyncio.get_running_loop()
        self._clock = JobClock(self.store, self.config.misfire_grace_s, self.config.poll_interval_s)
        self._clock.open()
        if self.launcher is None:
            return
        # Delivers what the last run left queued, then every new event (this process's or a client's).
        self._dispatcher = WebhookDispatcher(self.outbox, self.webhooks, self.metrics)
        self._dispatcher.start()
        self.store.on_event = self._dispatcher.notify
        await self.launcher.open(self.store, self.metrics)
        self._clock.start(self._claim)

    async def close(self) -> None:
        """Stops processing jobs, makes every running bot leave and waits for them; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._clock is not None:
            await self._clock.close()
        if self.launcher is not None:
            await self.launcher.close()  # bots here leave; a worker host's run on
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
            self._require_clock().add(record.id, run_at)
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
        "finished" if it had already ended.

        Safe on any thread (the API calls it on its database threads): the database's steps are
        conditional updates, so a racing claim or cancel can't both win, APScheduler's job store has its
        own lock, and the launcher's part runs on the service's event loop."""
        store = self._require_store()
        for _ in range(5):  # each retry follows a state change that raced this call
            record = self.get(bot_id, with_events=False)
            if record.state in TERMINAL:
                return "finished", record
            if record.state in PENDING:
                if store.transition(bot_id, BotState.CANCELLED, PENDING, ended_at=utcnow()):
                    self._require_clock().remove(bot_id)
                    self._withdraw(bot_id)
                    return "cancelled", self.get(bot_id, with_events=False)
                continue
            if record.stop_requested_at is None:
                store.update(bot_id, stop_requested_at=utcnow())
            self._withdraw(bot_id)
            return "leaving", self.get(bot_id, with_events=False)
        raise RuntimeError(f"bot {bot_id} kept changing state; try again")

    def events(self, bot_id: str, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """The bot's events after seq `after`, each with its webhook delivery."""
        self.get(bot_id, with_events=False)
        return self.outbox.events(bot_id, after, limit)

    def hosts(self) -> list[HostRecord]:
        """The worker hosts (scheduler.launcher = "celery"); none when the bots run here."""
        if self._placement is None:  # two threads at once: both create the table if missing; harmless
            self._placement = Placement(self._require_store())
        return self._placement.list_hosts()

    # --- running bots ---------------------------------------------------------------------------------

    def _withdraw(self, bot_id: str) -> None:
        if self.launcher is not None and self._loop is not None:
            call_on_loop(self._loop, self.launcher.withdraw, bot_id)

    def _claim(self, bot_id: str) -> None:
        """A bot's job fired: it goes to the launcher, unless another scheduler claimed it first."""
        assert self.launcher is not None
        if self._require_store().transition(
            bot_id, BotState.QUEUED, [BotState.SCHEDULED], queued_at=utcnow()
        ):
            self.launcher.enqueue([bot_id])
        else:
            log.info("bot %s was already claimed or cancelled; not starting it again", bot_id)
