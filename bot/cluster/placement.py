"""Who runs which bot: worker hosts, the claim of a queued bot, heartbeats, hand-backs and lost hosts.

Every decision is a conditional update on the shared store (the same database as the bot records), so the
store stays the one truth whatever the broker does:

- a worker *claims* the earliest queued bot (`queued → starting`, with its host name and a fresh *lease*);
  two hosts racing for one bot cannot both win, so a bot runs once however many tokens reach workers;
- while it runs the bot, the worker renews the bot's heartbeat under that lease; an update that no longer
  matches the lease tells the worker the bot was taken from it (its host was declared lost) and it must stop;
- the service declares a host lost when its bots' heartbeats are older than `host_timeout_s`, and puts each
  bot back in the queue (`running → queued`, conditional on the lease it saw) or records why not.

Times that are compared across hosts (heartbeats) come from the database's clock on PostgreSQL, so a worker
whose clock is off is not taken for dead; on SQLite (one machine) from this machine's.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Integer, String, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from bot.outcome import RunFailureCode
from bot.service.store import RUNNING, Base, BotRecord, BotRow, BotState, BotStore, UtcDateTime, utcnow

log = logging.getLogger(__name__)


class HostState(StrEnum):
    UP = "up"  # heartbeating, taking bots
    DRAINING = "draining"  # told to shut down: takes no new bot, its bots finish or are handed back
    STOPPED = "stopped"  # exited cleanly
    LOST = "lost"  # stopped heartbeating: its bots were recorded host_lost


class HostRow(Base):
    __tablename__ = "hosts"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    address: Mapped[str | None] = mapped_column(String(200), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    capacity: Mapped[int] = mapped_column(Integer)
    running: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16))
    drain: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


@dataclass(frozen=True)
class HostRecord:
    """One worker host as GET /hosts shows it."""

    name: str
    address: str | None
    pid: int | None
    capacity: int
    state: HostState
    drain: str
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    bots: list[str] = field(default_factory=list)  # the bots it runs now

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "pid": self.pid,
            "capacity": self.capacity,
            "running": len(self.bots),
            "bots": list(self.bots),
            "state": self.state.value,
            "drain": self.drain,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
        }


class HostNameTaken(RuntimeError):
    """Another live worker already uses this host name."""


@dataclass(frozen=True)
class Lost:
    """A bot whose host stopped heartbeating, as the service found it."""

    record: BotRecord
    host: str
    lease: str
    heartbeat_at: dt.datetime | None


class Placement:
    """The cluster's queries and conditional updates on a `BotStore`'s database. Synchronous, each call one
    short transaction (as `BotStore`)."""

    def __init__(self, store: BotStore) -> None:
        self.store = store
        self.engine = store.engine
        try:
            Base.metadata.create_all(self.engine, tables=[HostRow.__table__])  # type: ignore[list-item]
        except DBAPIError:
            # Several processes creating the table at once (a fresh database): one of them won.
            Base.metadata.create_all(self.engine, tables=[HostRow.__table__])  # type: ignore[list-item]
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._db_clock = self.engine.dialect.name == "postgresql"

    def now(self, s: Session | None = None) -> dt.datetime:
        """The clock heartbeats are written and compared with (see the module's docstring)."""
        if not self._db_clock:
            return utcnow()
        if s is None:
            with self._sessions() as s2:
                return self.now(s2)
        value = s.scalar(select(func.now()))
        assert isinstance(value, dt.datetime)
        return value.astimezone(dt.UTC)

    # --- the worker's side ----------------------------------------------------------------------------

    def register_host(
        self, name: str, *, capacity: int, drain: str, address: str | None, pid: int, timeout_s: float
    ) -> None:
        """Adds or revives this host's row; HostNameTaken if a live worker (heartbeat within `timeout_s`)
        already has the name."""
        with self._sessions.begin() as s:
            now = self.now(s)
            row = s.get(HostRow, name, with_for_update=True)
            if row is None:
                s.add(
                    HostRow(
                        name=name, address=address, pid=pid, capacity=capacity, running=0,
                        state=HostState.UP.value, drain=drain, started_at=now, heartbeat_at=now,
                    )
                )  # fmt: skip
                return
            fresh = now - row.heartbeat_at < dt.timedelta(seconds=timeout_s)
            live = row.state in (HostState.UP, HostState.DRAINING) and fresh
            if live and (row.pid, row.address) != (pid, address):
                raise HostNameTaken(
                    f"worker host name {name!r} is in use by a live worker (pid {row.pid} at {row.address}); "
                    "give each worker its own --name"
                )
            row.address, row.pid, row.capacity, row.running = address, pid, capacity, 0
            row.state, row.drain, row.started_at, row.heartbeat_at = HostState.UP.value, drain, now, now

    def claim_next(self, host: str, lease: str) -> BotRecord | None:
        """Claims the earliest queued bot (by join time) for `host` under `lease`: `queued → starting`.
        None when no bot is queued. Concurrent claimers never get the same bot."""
        while True:
            with self._sessions() as s:
                now = self.now(s)
                ids = s.scalars(
                    select(BotRow.id)
                    .where(BotRow.state == BotState.QUEUED.value)
                    .order_by(BotRow.join_at, BotRow.queued_at, BotRow.created_at)
                    .limit(8)
                ).all()
            if not ids:
                return None
            for bot_id in ids:
                if self.store.transition(
                    bot_id,
                    BotState.STARTING,
                    [BotState.QUEUED],
                    started_at=now,
                    host=host,
                    lease=lease,
                    heartbeat_at=now,
                    attempts=BotRow.attempts + 1,
                ):
                    return self.store.get(bot_id)
            # Every candidate went to another host meanwhile: look again.

    def beat(self, host: str, leases: Mapping[str, str], state: HostState) -> set[str]:
        """Renews the host's and its bots' heartbeats; returns the bots (of `leases`: id → lease) that are
        no longer this host's under that lease: the service gave them to another host, stop them."""
        with self._sessions.begin() as s:
            now = self.now(s)
            s.execute(
                update(HostRow)
                .where(HostRow.name == host)
                .values(heartbeat_at=now, running=len(leases), state=state.value)
            )
            if not leases:
                return set()
            kept = s.scalars(
                update(BotRow)
                .where(BotRow.host == host, BotRow.lease.in_(list(leases.values())))
                .values(heartbeat_at=now)
                .returning(BotRow.id)
                .execution_options(synchronize_session=False)
            ).all()
        return set(leases) - set(kept)

    def stop_requests(self, host: str, leases: Mapping[str, str]) -> set[str]:
        """The bots among `leases` that someone asked to leave (DELETE /bots/{id}, `cancel`)."""
        if not leases:
            return set()
        with self._sessions() as s:
            return set(
                s.scalars(
                    select(BotRow.id).where(
                        BotRow.host == host,
                        BotRow.lease.in_(list(leases.values())),
                        BotRow.stop_requested_at.is_not(None),
                    )
                ).all()
            )

    def hand_back(self, bot_id: str, lease: str, event: dict[str, Any]) -> bool:
        """Puts a bot this host stopped on purpose (drain = handoff) back in the queue: another host runs it
        and rejoins its meeting. False if it was not this lease's any more."""
        return self._requeue(bot_id, lease, event)

    def set_host_state(self, host: str, state: HostState) -> None:
        with self._sessions.begin() as s:
            values: dict[str, Any] = {"state": state.value, "heartbeat_at": self.now(s)}
            if state is HostState.STOPPED:
                values["running"] = 0
            s.execute(update(HostRow).where(HostRow.name == host).values(**values))

    # --- the service's side ---------------------------------------------------------------------------

    def silent_bots(self, timeout_s: float) -> list[Lost]:
        """Running bots whose host has not renewed their heartbeat for `timeout_s`."""
        with self._sessions() as s:
            cutoff = self.now(s) - dt.timedelta(seconds=timeout_s)
            rows = s.scalars(
                select(BotRow).where(
                    BotRow.state.in_([st.value for st in RUNNING]),
                    BotRow.lease.is_not(None),
                    BotRow.heartbeat_at < cutoff,
                )
            ).all()
            return [
                Lost(BotRecord.from_row(r), r.host or "?", r.lease or "", r.heartbeat_at)
                for r in rows
                if r.lease
            ]

    def silent_hosts(self, timeout_s: float) -> list[str]:
        """Marks hosts that stopped heartbeating `lost`; returns the names newly marked."""
        with self._sessions.begin() as s:
            cutoff = self.now(s) - dt.timedelta(seconds=timeout_s)
            return list(
                s.scalars(
                    update(HostRow)
                    .where(
                        HostRow.state.in_([HostState.UP.value, HostState.DRAINING.value]),
                        HostRow.heartbeat_at < cutoff,
                    )
                    .values(state=HostState.LOST.value, running=0)
                    .returning(HostRow.name)
                    .execution_options(synchronize_session=False)
                ).all()
            )

    def relaunch(self, lost: Lost, event: dict[str, Any]) -> bool:
        """Puts a lost host's bot back in the queue; False if it changed meanwhile (its host came back)."""
        return self._requeue(lost.record.id, lost.lease, event)

    def give_up(self, lost: Lost, message: str, event: dict[str, Any]) -> bool:
        """Records a lost host's bot as crashed with failure code `host_lost`."""
        changed = self.store.transition(
            lost.record.id,
            BotState.CRASHED,
            RUNNING,
            BotRow.lease == lost.lease,
            ended_at=utcnow(),
            failure_code=RunFailureCode.HOST_LOST.value,
            message=message[:2000],
            lease=None,
        )
        if changed:
            self.store.add_event(lost.record.id, event)
        return changed

    def count_queued(self) -> int:
        return self.store.count([BotState.QUEUED])

    def expire_queued(self, queue_timeout_s: float) -> list[str]:
        """Queued bots still without a host `queue_timeout_s` after their join time: recorded missed."""
        cutoff = utcnow() - dt.timedelta(seconds=queue_timeout_s)
        with self._sessions() as s:
            ids = s.scalars(
                select(BotRow.id).where(BotRow.state == BotState.QUEUED.value, BotRow.join_at < cutoff)
            ).all()
        message = f"missed: no worker host had a free slot within {queue_timeout_s:g} s of join_at"
        return [
            bot_id
            for bot_id in ids
            if self.store.transition(
                bot_id, BotState.MISSED, [BotState.QUEUED], ended_at=utcnow(), message=message
            )
        ]

    def list_hosts(self) -> list[HostRecord]:
        with self._sessions() as s:
            hosts = s.scalars(select(HostRow).order_by(HostRow.name)).all()
            placed = s.execute(
                select(BotRow.host, BotRow.id)
                .where(BotRow.state.in_([st.value for st in RUNNING]), BotRow.host.is_not(None))
                .order_by(BotRow.join_at)
            ).all()
        bots: dict[str, list[str]] = {}
        for host, bot_id in placed:
            if host:
                bots.setdefault(host, []).append(bot_id)
        return [
            HostRecord(
                name=h.name,
                address=h.address,
                pid=h.pid,
                capacity=h.capacity,
                state=HostState(h.state),
                drain=h.drain,
                started_at=h.started_at,
                heartbeat_at=h.heartbeat_at,
                bots=bots.get(h.name, []),
            )
            for h in hosts
        ]

    def _requeue(self, bot_id: str, lease: str, event: dict[str, Any]) -> bool:
        """`running → queued` under `lease`; clears the placement and what the stopped run reported about
        its end, so the next run's end is the bot's."""
        changed = self.store.transition(
            bot_id,
            BotState.QUEUED,
            RUNNING,
            BotRow.lease == lease,
            queued_at=utcnow(),
            host=None,
            lease=None,
            heartbeat_at=None,
            end_reason=None,
            summary=None,
        )
        if changed:
            self.store.add_event(bot_id, event)
        return changed
