"""Durable webhooks for the bots the service runs: every event is written to the database first, then
delivered in order per bot, retried for hours, across restarts, and given up on visibly.

The outbox pattern: every `BotStore` owns a `WebhookOutbox`, whose `on_event_row` runs inside the store's
own transaction whenever an event row is written, so an event of a bot with a `webhook_url` is stored and
queued atomically, in whichever process records it — no crash can leave it recorded but never sent.
`WebhookDispatcher` (only in a serving instance) delivers the queue: the oldest pending event of each bot
is its *head*, and a bot's later events wait until the head is delivered or dead, so a receiver always
sees one bot's events in order; different bots deliver concurrently. Each delivery carries the
documented signature (`bot.service.webhooks.sign`), a fresh timestamp per attempt, the same body and
`X-Bot-Event-Id` every time.

Any answer but 2xx, and any transport error, is retried after the next delay of `retry_schedule_s` (by
default 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h: the Svix schedule, about 3 h 45 min in all). An event
whose attempts are used up, or that is older than the whole schedule when a failed attempt ends (it waited
behind an earlier event of its bot), goes `dead`: its row says so with the last status and error, the
bot's events get a `webhook.dead` record, and the metrics count it. A delivery is *leased* with a
conditional update before it is sent, so two service instances on one database never send the same event
at once (the same guard as the store's state transitions).

Delivery is at least once: a service killed after a receiver accepted an event but before the database
recorded it sends that event again after the restart, with the same `X-Bot-Event-Id` to deduplicate on.
A graceful stop waits for deliveries in flight, so a restart by SIGTERM sends nothing twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import httpx
from sqlalchemy import (
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from bot.aio import cancel_and_wait, first_of
from bot.service.store import Base, BotRow, BotStore, EventRow, UtcDateTime, utcnow
from bot.service.webhooks import signed_headers
from bot.settings import Settings, WebhookSection

log = logging.getLogger(__name__)

# Events about delivery itself are recorded for the operator but never queued (a dead receiver would
# otherwise be sent news of its own death, forever).
_NOT_DELIVERED_PREFIX = "webhook."


class DeliveryState(StrEnum):
    PENDING = "pending"  # waiting for its attempt (or for an earlier event of its bot)
    DELIVERED = "delivered"  # the receiver answered 2xx
    DEAD = "dead"  # retries used up; see last_status / last_error


class DeliveryRow(Base):
    __tablename__ = "webhook_deliveries"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bot_id: Mapped[str] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"))
    event_seq: Mapped[int] = mapped_column(ForeignKey("bot_events.seq", ondelete="CASCADE"), unique=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)  # the exact bytes every attempt sends (and signs)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)  # delivered or dead
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)

    __table_args__ = (
        Index("ix_webhook_deliveries_bot_state", "bot_id", "state", "seq"),
        Index("ix_webhook_deliveries_state_due", "state", "next_attempt_at"),
    )


@dataclass(frozen=True)
class Delivery:
    """A snapshot of one event's delivery."""

    seq: int
    bot_id: str
    event_id: str
    kind: str
    url: str
    body: str
    state: DeliveryState
    attempts: int
    created_at: dt.datetime
    next_attempt_at: dt.datetime
    finished_at: dt.datetime | None
    last_status: int | None
    last_error: str | None

    @classmethod
    def from_row(cls, row: DeliveryRow) -> Delivery:
        return cls(
            seq=row.seq,
            bot_id=row.bot_id,
            event_id=row.event_id,
            kind=row.kind,
            url=row.url,
            body=row.body,
            state=DeliveryState(row.state),
            attempts=row.attempts,
            created_at=row.created_at,
            next_attempt_at=row.next_attempt_at,
            finished_at=row.finished_at,
            last_status=row.last_status,
            last_error=row.last_error,
        )

    def status(self) -> dict[str, Any]:
        """What `GET /bots/{id}/events` shows of it (not the URL: it may carry a token)."""
        return {
            "state": self.state.value,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat()
            if self.state is DeliveryState.PENDING
            else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "last_status": self.last_status,
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class StoredEvent:
    """One event of a bot as stored, with its delivery when the bot has a webhook."""

    seq: int
    data: dict[str, Any]
    delivery: Delivery | None


class WebhookOutbox:
    """The outbox table and its queries. Synchronous, one short transaction per call, like `BotStore`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        DeliveryRow.__table__.create(engine, checkfirst=True)  # type: ignore[attr-defined]
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # --- queueing (inside the store's transaction) ---------------------------------------------------

    def on_event_row(self, s: Session, row: EventRow) -> bool:
        """The store's event hook (`BotStore.event_hook`) for each event row it adds in `s`: queues the event
        if its bot has a webhook URL (True then). The event gets an `id` if it has none (service events), so
        the record and the delivery agree."""
        if row.kind.startswith(_NOT_DELIVERED_PREFIX):
            return False
        request = s.scalar(select(BotRow.request).where(BotRow.id == row.bot_id))
        url = (request or {}).get("webhook_url")
        if not url:
            return False
        data = dict(row.data)
        event_id = str(data.get("id") or uuid.uuid4().hex)[:64]
        if data.get("id") != event_id:
            data["id"] = event_id
            row.data = data
        body = json.dumps({**data, "bot_id": row.bot_id}, separators=(",", ":"), default=str)
        now = utcnow()
        s.flush()  # the event's seq
        s.add(
            DeliveryRow(
                bot_id=row.bot_id,
                event_seq=row.seq,
                event_id=event_id,
                kind=row.kind,
                url=url,
                body=body,
                state=DeliveryState.PENDING.value,
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        )
        return True

    # --- reading --------------------------------------------------------------------------------------

    def events(self, bot_id: str, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """A bot's events in order (seq > `after`), each with its delivery state."""
        query = (
            select(EventRow, DeliveryRow)
            .outerjoin(DeliveryRow, DeliveryRow.event_seq == EventRow.seq)
            .where(EventRow.bot_id == bot_id, EventRow.seq > after)
            .order_by(EventRow.seq)
            .limit(limit)
        )
        with self._sessions() as s:
            return [
                StoredEvent(e.seq, dict(e.data), Delivery.from_row(d) if d is not None else None)
                for e, d in s.execute(query)
            ]

    def deliveries(
        self, bot_id: str | None = None, states: Sequence[DeliveryState] | None = None
    ) -> list[Delivery]:
        query = select(DeliveryRow).order_by(DeliveryRow.seq)
        if bot_id is not None:
            query = query.where(DeliveryRow.bot_id == bot_id)
        if states is not None:
            query = query.where(DeliveryRow.state.in_([st.value for st in states]))
        with self._sessions() as s:
            return [Delivery.from_row(r) for r in s.scalars(query)]

    def count_by_state(self) -> dict[DeliveryState, int]:
        query = select(DeliveryRow.state, func.count()).group_by(DeliveryRow.state)
        counts = dict.fromkeys(DeliveryState, 0)
        with self._sessions() as s:
            for state, n in s.execute(query):
                counts[DeliveryState(state)] = int(n)
        return counts

    # --- delivering -----------------------------------------------------------------------------------

    def _heads(self) -> Any:
        """Each bot's oldest pending delivery: the only one of that bot that may be sent now."""
        return (
            select(func.min(DeliveryRow.seq))
            .where(DeliveryRow.state == DeliveryState.PENDING.value)
            .group_by(DeliveryRow.bot_id)
        )

    def lease_due(self, now: dt.datetime, limit: int, lease_s: float, busy: set[str]) -> list[Delivery]:
        """Leases up to `limit` due heads (not of the bots in `busy`) for `lease_s`; each lease is a
        conditional update, so a head another instance leased first is skipped."""
        query = (
            select(DeliveryRow)
            .where(
                DeliveryRow.seq.in_(self._heads()),
                DeliveryRow.next_attempt_at <= now,
                (DeliveryRow.lease_until.is_(None)) | (DeliveryRow.lease_until < now),
            )
            .order_by(DeliveryRow.next_attempt_at, DeliveryRow.seq)
            .limit(limit + len(busy))
        )
        leased: list[Delivery] = []
        with self._sessions.begin() as s:
            for row in s.scalars(query).all():
                if row.bot_id in busy or len(leased) >= limit:
                    continue
                won = s.execute(
                    update(DeliveryRow)
                    .where(
                        DeliveryRow.seq == row.seq,
                        DeliveryRow.state == DeliveryState.PENDING.value,
                        (DeliveryRow.lease_until.is_(None)) | (DeliveryRow.lease_until < now),
                    )
                    .values(lease_until=now + dt.timedelta(seconds=lease_s))
                    .execution_options(synchronize_session=False)
                )
                if won.rowcount == 1:  # type: ignore[attr-defined]
                    leased.append(Delivery.from_row(row))
        return leased

    def next_due(self, now: dt.datetime) -> dt.datetime | None:
        """When the earliest pending head that is not being delivered is due (None: there is none)."""
        query = select(func.min(DeliveryRow.next_attempt_at)).where(
            DeliveryRow.seq.in_(self._heads()),
            (DeliveryRow.lease_until.is_(None)) | (DeliveryRow.lease_until < now),
        )
        with self._sessions() as s:
            return s.scalar(query)

    def delivered(self, seq: int, status: int, now: dt.datetime) -> None:
        with self._sessions.begin() as s:
            s.execute(
                update(DeliveryRow)
                .where(DeliveryRow.seq == seq)
                .values(
                    state=DeliveryState.DELIVERED.value,
                    attempts=DeliveryRow.attempts + 1,
                    lease_until=None,
                    finished_at=now,
                    last_status=status,
                    last_error=None,
                )
            )

    def failed(
        self, delivery: Delivery, status: int | None, error: str, now: dt.datetime, schedule: Sequence[float]
    ) -> bool:
        """Records a failed attempt; True if the event is now dead (then also a `webhook.dead` event)."""
        attempts = delivery.attempts + 1
        span = dt.timedelta(seconds=sum(schedule))
        dead = attempts > len(schedule) or now - delivery.created_at >= span
        values: dict[str, Any] = {
            "attempts": attempts,
            "lease_until": None,
            "last_status": status,
            "last_error": error[:500],
        }
        if dead:
            values.update(state=DeliveryState.DEAD.value, finished_at=now)
        else:
            values["next_attempt_at"] = now + dt.timedelta(seconds=schedule[attempts - 1])
        with self._sessions.begin() as s:
            s.execute(update(DeliveryRow).where(DeliveryRow.seq == delivery.seq).values(**values))
            if dead:
                data = {
                    "event": "webhook.dead",
                    "at": now.isoformat(),
                    "source": "service",
                    "event_id": delivery.event_id,
                    "kind": delivery.kind,
                    "attempts": attempts,
                    "last_status": status,
                    "last_error": error[:500],
                }
                s.add(EventRow(bot_id=delivery.bot_id, kind="webhook.dead", at=now, data=data))
        return dead


def store_with_outbox(engine: Engine) -> tuple[BotStore, WebhookOutbox]:
    """The bot store with the outbox as its event hook: an event of a bot with a webhook_url is stored and
    queued for delivery at once or not at all, whichever process records it (the service, a worker host, a
    CLI client). Every process that records bots opens its store here."""
    store = BotStore(engine)  # first: the outbox's table refers to the store's
    outbox = WebhookOutbox(engine)
    store.event_hook = outbox.on_event_row
    return store, outbox


class DeliveryMetrics(Protocol):
    """What the dispatcher reports (bot.service.metrics.ServiceMetrics implements it)."""

    def webhook_delivered(self, kind: str, attempts: int, delay_s: float) -> None:
        """`delay_s`: from the event being recorded to the receiver accepting it."""

    def webhook_retry(self, kind: str, reason: str) -> None:
        """An attempt failed and will be retried; `reason` is "http" or "transport"."""

    def webhook_dead(self, kind: str) -> None:
        """An event's retries are used up."""


_WEBHOOK = WebhookSection()  # the defaults live with the settings, once


@dataclass
class WebhookOptions:
    """The service's webhook settings ([webhook]): signed with webhook.secret, retried on
    webhook.retry_schedule_s; webhook.url is the webhook of bots scheduled without their own."""

    secret: str = field(default="", repr=False)  # webhook.secret (BOT_WEBHOOK_SECRET)
    # webhook.url: the webhook of a bot scheduled without one (`BotService.schedule` stores it in the request)
    default_url: str = _WEBHOOK.url
    retry_schedule_s: tuple[float, ...] = tuple(_WEBHOOK.retry_schedule_s)
    timeout_s: float = _WEBHOOK.timeout_s  # one attempt
    concurrency: int = 8  # bots delivering at once
    poll_interval_s: float = 1.0  # look for events written by other processes (a `cancel` client, …)

    def __post_init__(self) -> None:
        self.retry_schedule_s = tuple(float(d) for d in self.retry_schedule_s)
        if not self.retry_schedule_s or any(d <= 0 for d in self.retry_schedule_s):
            raise ValueError("webhook.retry_schedule_s must be a non-empty list of positive delays")
        if self.timeout_s <= 0 or self.poll_interval_s <= 0:
            raise ValueError("webhook timeouts and intervals must be positive")
        if self.concurrency < 1:
            raise ValueError("webhook.concurrency must be at least 1")

    @classmethod
    def from_settings(cls, s: Settings) -> WebhookOptions:
        w = s.webhook
        return cls(
            secret=w.secret,
            retry_schedule_s=tuple(w.retry_schedule_s),
            timeout_s=w.timeout_s,
            default_url=w.url,
        )


class WebhookDispatcher:
    """Delivers the outbox from one owned task. `start()`, `notify()` when events were queued, `close()`."""

    def __init__(
        self, outbox: WebhookOutbox, config: WebhookOptions, metrics: DeliveryMetrics | None = None
    ) -> None:
        self.outbox = outbox
        self.config = config
        self.metrics = metrics
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}  # bot id → its delivery
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.config.timeout_s)
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    def notify(self) -> None:
        """An event was queued: look now instead of at the next poll."""
        self._wake.set()

    async def close(self) -> None:
        """Stops taking new deliveries, lets those in flight finish (each is bounded by its timeout),
        then stops. Idempotent."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self._inflight:
            await asyncio.wait(self._inflight.values(), timeout=self.config.timeout_s + 5)
        await cancel_and_wait(*self._inflight.values())
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                wait = self._dispatch()
            except Exception:
                # The database may be away for a while; nothing is lost, the rows wait in it.
                log.exception("webhook dispatcher: reading the outbox failed; retrying")
                wait = self.config.poll_interval_s
            # Never 0: this loop must always yield, or the deliveries it started never run.
            await first_of({"woken": self._wake.wait()}, max(wait, 0.01))

    def _dispatch(self) -> float:
        """Starts the due deliveries there is room for; returns how long to sleep (woken earlier by
        `notify()` or a finished delivery)."""
        room = self.config.concurrency - len(self._inflight)
        now = utcnow()
        if room > 0:
            lease_s = self.config.timeout_s + 5
            for delivery in self.outbox.lease_due(now, room, lease_s, set(self._inflight)):
                task = asyncio.create_task(self._deliver(delivery), name=f"webhook-{delivery.bot_id}")
                self._inflight[delivery.bot_id] = task
        if len(self._inflight) >= self.config.concurrency:
            return self.config.poll_interval_s  # a finished delivery wakes the loop
        due = self.outbox.next_due(utcnow())
        if due is None:
            return self.config.poll_interval_s
        return max(0.0, min((due - utcnow()).total_seconds(), self.config.poll_interval_s))

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            await self._attempt(delivery)
        except Exception:
            log.exception("webhook delivery of event %s crashed; it stays queued", delivery.event_id)
        finally:
            self._inflight.pop(delivery.bot_id, None)
            self._wake.set()  # its bot's next event may go now

    async def _attempt(self, delivery: Delivery) -> None:
        assert self._client is not None
        body = delivery.body.encode()
        status: int | None = None
        if not self.config.secret:
            error = "the service has no webhook.secret (set BOT_WEBHOOK_SECRET) to sign deliveries"
        else:
            headers = signed_headers(self.config.secret, delivery.event_id, body)
            try:
                response = await self._client.post(delivery.url, content=body, headers=headers)
                status = response.status_code
                error = "" if 200 <= status < 300 else f"HTTP {status}"
            except httpx.HTTPError as e:
                error = f"{type(e).__name__}: {e}"[:500] if str(e) else type(e).__name__
        now = utcnow()
        if not error:
            assert status is not None
            self.outbox.delivered(delivery.seq, status, now)
            if self.metrics is not None:
                delay = (now - delivery.created_at).total_seconds()
                self.metrics.webhook_delivered(delivery.kind, delivery.attempts + 1, delay)
            return
        dead = self.outbox.failed(delivery, status, error, now, self.config.retry_schedule_s)
        if dead:
            log.warning(
                "webhook: gave up on %s event %s of bot %s after %d attempts (%s)",
                delivery.kind, delivery.event_id, delivery.bot_id, delivery.attempts + 1, error,
            )  # fmt: skip
            if self.metrics is not None:
                self.metrics.webhook_dead(delivery.kind)
        else:
            log.info(
                "webhook: %s event of bot %s failed (%s); will retry", delivery.kind, delivery.bot_id, error
            )
            if self.metrics is not None:
                self.metrics.webhook_retry(delivery.kind, "http" if status is not None else "transport")
