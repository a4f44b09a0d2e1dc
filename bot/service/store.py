"""Bot records in the scheduler's database: request, state, events, end reason, exit code, timings.

One table of bots and one of their events, in the same database as APScheduler's job store (a SQLite file
by default, PostgreSQL by URL). Each event row goes through the store's `event_hook` inside the transaction
that stores it: the webhook outbox (`bot.service.outbox.store_with_outbox`) queues it there. State
changes are conditional updates (`UPDATE … WHERE state IN (…)`), so two schedulers, or a restart racing a
late job, can never start the same bot twice. The Millis key is never part of a request and so never
reaches this database.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    DefaultClause,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.sql.elements import ColumnElement


class BotState(StrEnum):
    SCHEDULED = "scheduled"  # waiting for its time in the job store
    QUEUED = "queued"  # its time came; waiting for a free slot (max concurrent bots)
    STARTING = "starting"  # the bot process is being started
    JOINING = "joining"
    AWAITING_ADMISSION = "awaiting_admission"
    IN_CALL = "in_call"
    ENDED = "ended"  # was in the call, then it ended (see end_reason)
    FAILED = "failed"  # never got in, or the agent refused (see failure_code)
    MISSED = "missed"  # its time passed beyond the grace window (e.g. the service was down)
    CANCELLED = "cancelled"  # cancelled before it started
    CRASHED = "crashed"  # the bot process crashed or was killed


PENDING: frozenset[BotState] = frozenset({BotState.SCHEDULED, BotState.QUEUED})
RUNNING: frozenset[BotState] = frozenset(
    {BotState.STARTING, BotState.JOINING, BotState.AWAITING_ADMISSION, BotState.IN_CALL}
)
TERMINAL: frozenset[BotState] = frozenset(BotState) - PENDING - RUNNING


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (no time zones) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: bot times are stored in UTC and must carry a time zone")
        utc = value.astimezone(dt.UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    pass


class BotRow(Base):
    __tablename__ = "bots"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    meeting_url: Mapped[str] = mapped_column(Text)
    agent_id: Mapped[str] = mapped_column(String(200), index=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)  # the whole request, as submitted (no secrets)
    state: Mapped[str] = mapped_column(String(32), index=True)
    join_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    run_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)  # join_at minus the lead time
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    queued_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)  # process launched
    in_call_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    stop_requested_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    failure_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    last_stats: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # When bots run on worker hosts (bot.cluster): the host running it, the lease it holds it under (a new
    # one per launch: a host whose lease is gone must stop the bot), the host's last heartbeat for it, and
    # how many times it was launched (a lost host's bot is launched again, a bounded number of times).
    host: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease: Mapped[str | None] = mapped_column(String(32), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (Index("ix_bots_state_run_at", "state", "run_at"),)


class EventRow(Base):
    __tablename__ = "bot_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bot_id: Mapped[str] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


@dataclass(frozen=True)
class BotRecord:
    """A snapshot of one bot's row (and, when asked for, its events)."""

    id: str
    meeting_url: str
    agent_id: str
    request: dict[str, Any]
    state: BotState
    join_at: dt.datetime
    run_at: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime
    queued_at: dt.datetime | None
    started_at: dt.datetime | None
    in_call_at: dt.datetime | None
    ended_at: dt.datetime | None
    stop_requested_at: dt.datetime | None
    end_reason: str | None
    failure_code: str | None
    message: str | None
    exit_code: int | None
    summary: dict[str, Any] | None
    last_stats: dict[str, Any] | None
    events: list[dict[str, Any]] | None = field(default=None)
    host: str | None = None  # the worker host running it (or that ran it last)
    heartbeat_at: dt.datetime | None = None
    attempts: int = 0  # launches so far

    @classmethod
    def from_row(cls, row: BotRow, events: list[dict[str, Any]] | None = None) -> BotRecord:
        return cls(
            id=row.id,
            meeting_url=row.meeting_url,
            agent_id=row.agent_id,
            request=dict(row.request),
            state=BotState(row.state),
            join_at=row.join_at,
            run_at=row.run_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
            queued_at=row.queued_at,
            started_at=row.started_at,
            in_call_at=row.in_call_at,
            ended_at=row.ended_at,
            stop_requested_at=row.stop_requested_at,
            end_reason=row.end_reason,
            failure_code=row.failure_code,
            message=row.message,
            exit_code=row.exit_code,
            summary=row.summary,
            last_stats=row.last_stats,
            events=events,
            host=row.host,
            heartbeat_at=row.heartbeat_at,
            attempts=row.attempts or 0,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "events" and value is None:
                continue
            out[name] = value.isoformat() if isinstance(value, dt.datetime) else value
        out["state"] = self.state.value
        return out


def normalize_db_url(url: str) -> str:
    """Plain `postgresql://` URLs use psycopg 3 (the driver the project installs), not psycopg2."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def safe_db_url(url: str) -> str:
    """The URL for messages: the password hidden."""
    try:
        return make_url(normalize_db_url(url)).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable database URL)"


# `serve` runs the API's store calls on up to DB_THREADS threads (bot.service.api) beside its event loop,
# which uses the same engine (the scheduler's claims, the webhook dispatcher, APScheduler's job store): the
# pool
# keeps a connection for each of them and some to spare, so no caller waits for one another holds. Few
# threads: they overlap one another's waits for the database, but share one interpreter lock with the
# event loop, and more of them only make the loop wait longer for it.
DB_THREADS = 4
POOL_SIZE = DB_THREADS + 4
# A pooled connection unused for longer than this is pinged before it is handed out (one round trip) and
# replaced if the server closed it meanwhile (a restart, an idle timeout). One in steady use is not:
# `pool_pre_ping` paid that round trip on every checkout, i.e. on every store call.
PING_IDLE_S = 1.0


def make_engine(url: str) -> Engine:
    """An engine for a SQLite file (its folder is created; WAL so readers never block the service) or
    PostgreSQL."""
    parsed = make_url(normalize_db_url(url))
    if parsed.get_backend_name() == "sqlite":
        pool: dict[str, Any] = {}
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            pool = {"pool_size": POOL_SIZE, "max_overflow": POOL_SIZE}
        engine = create_engine(parsed, connect_args={"timeout": 30}, **pool)

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    engine = create_engine(parsed, pool_size=POOL_SIZE, max_overflow=POOL_SIZE, pool_use_lifo=True)
    _ping_when_idle(engine, PING_IDLE_S)
    return engine


def _ping_when_idle(engine: Engine, idle_s: float) -> None:
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        last = record.info.get("checked_in_at")  # none: a new connection
        if last is None or time.monotonic() - last < idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as e:
            raise DisconnectionError(f"a pooled connection was closed: {e}") from e  # the pool reconnects


# Called with each event row in the transaction that adds it; True if it queued something for after the
# commit (`BotStore.on_event` is then told).
EventHook = Callable[[Session, EventRow], bool]


def new_bot_id() -> str:
    return uuid.uuid4().hex[:16]


class BotStore:
    """Queries and conditional state changes on bot records. Synchronous and thread-safe: each call is one
    short transaction on a connection of its own (the API runs them on threads, the service's own on its
    event loop)."""

    def __init__(self, engine: Engine, event_hook: EventHook | None = None) -> None:
        self.engine = engine
        Base.metadata.create_all(engine)
        _add_new_columns(engine)
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.event_hook = event_hook
        # Told after each commit whose event hook queued something (the service wakes its webhook
        # dispatcher; not for the events of bots without a webhook: each wake costs it a query).
        self.on_event = None
        event.listen(self._sessions, "after_commit", self._after_commit)

    @property
    def on_event(self) -> Callable[[], None] | None:
        return self._on_event

    @on_event.setter
    def on_event(self, callback: Callable[[], None] | None) -> None:
        """Set on the event loop `callback` belongs to (if any): a commit in another thread (the API runs
        store calls on threads) hands the call to that loop."""
        self._on_event = callback
        try:
            self._on_event_loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._on_event_loop = None

    def _add_event(self, s: Session, row: EventRow) -> None:
        s.add(row)
        if self.event_hook is not None and self.event_hook(s, row):
            s.info["webhook_queued"] = True

    def _after_commit(self, s: Session) -> None:
        callback, loop = self._on_event, self._on_event_loop
        if not s.info.pop("webhook_queued", False) or callback is None:
            return
        if loop is None:
            callback()
        else:
            call_on_loop(loop, callback)

    def create(
        self,
        *,
        meeting_url: str,
        agent_id: str,
        request: dict[str, Any],
        join_at: dt.datetime,
        run_at: dt.datetime,
        bot_id: str | None = None,
    ) -> BotRecord:
        now = utcnow()
        row = BotRow(
            id=bot_id or new_bot_id(),
            meeting_url=meeting_url,
            agent_id=agent_id,
            request=request,
            state=BotState.SCHEDULED.value,
            join_at=join_at,
            run_at=run_at,
            created_at=now,
            updated_at=now,
        )
        with self._sessions.begin() as s:
            s.add(row)
            self._add_event(
                s, EventRow(bot_id=row.id, kind="scheduled", at=now, data=_service_event("scheduled", now))
            )
        return BotRecord.from_row(row)

    def get(self, bot_id: str, with_events: bool = False) -> BotRecord | None:
        with self._sessions() as s:
            row = s.get(BotRow, bot_id)
            if row is None:
                return None
            return BotRecord.from_row(row, self._events(s, bot_id) if with_events else None)

    def list_bots(
        self,
        states: Iterable[BotState] | None = None,
        agent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[BotRecord]:
        query = select(BotRow).order_by(BotRow.join_at, BotRow.created_at)
        if states is not None:
            query = query.where(BotRow.state.in_([s.value for s in states]))
        if agent_id is not None:
            query = query.where(BotRow.agent_id == agent_id)
        with self._sessions() as s:
            rows = s.scalars(query.limit(limit).offset(offset)).all()
            return [BotRecord.from_row(r) for r in rows]

    def count(self, states: Iterable[BotState]) -> int:
        query = select(func.count()).select_from(BotRow).where(BotRow.state.in_([s.value for s in states]))
        with self._sessions() as s:
            return int(s.scalar(query) or 0)

    def count_by_state(self) -> dict[BotState, int]:
        """Every state with its number of bots (0 included), in one query."""
        counts = dict.fromkeys(BotState, 0)
        with self._sessions() as s:
            for state, n in s.execute(select(BotRow.state, func.count()).group_by(BotRow.state)):
                counts[BotState(state)] = int(n)
        return counts

    def transition(
        self,
        bot_id: str,
        to: BotState,
        from_states: Iterable[BotState],
        *conditions: ColumnElement[bool],
        **fields: Any,
    ) -> bool:
        """Moves the bot to `to` only if it is in one of `from_states` (and meets `conditions`); True if this
        call made the change. The condition is evaluated by the database, so concurrent callers cannot both
        win."""
        now = utcnow()
        query = (
            update(BotRow)
            .where(BotRow.id == bot_id, BotRow.state.in_([s.value for s in from_states]), *conditions)
            .values(state=to.value, updated_at=now, **fields)
        )
        with self._sessions.begin() as s:
            changed = bool(s.execute(query).rowcount == 1)  # type: ignore[attr-defined]
            if changed:
                self._add_event(
                    s, EventRow(bot_id=bot_id, kind=f"state:{to.value}", at=now, data=_state_event(to, now))
                )
        return changed

    def update(self, bot_id: str, **fields: Any) -> None:
        """Sets fields that carry no state change (stats, summary, stop request)."""
        with self._sessions.begin() as s:
            s.execute(update(BotRow).where(BotRow.id == bot_id).values(updated_at=utcnow(), **fields))

    def add_event(self, bot_id: str, data: dict[str, Any]) -> None:
        """Stores one event from the bot process as it reported it (`event`, `at`, and its fields)."""
        kind = str(data.get("event", "unknown"))[:64]
        at = _parse_at(data.get("at")) or utcnow()
        with self._sessions.begin() as s:
            self._add_event(s, EventRow(bot_id=bot_id, kind=kind, at=at, data=data))

    def events(self, bot_id: str) -> list[dict[str, Any]]:
        with self._sessions() as s:
            return self._events(s, bot_id)

    @staticmethod
    def _events(s: Session, bot_id: str) -> list[dict[str, Any]]:
        rows: Sequence[EventRow] = s.scalars(
            select(EventRow).where(EventRow.bot_id == bot_id).order_by(EventRow.seq)
        ).all()
        return [dict(r.data) for r in rows]

    def close(self) -> None:
        self.engine.dispose()


def _add_new_columns(engine: Engine) -> None:
    """Adds the columns a newer version brought to tables an older one made (`create_all` only makes
    missing tables). Each such column is nullable or has a server default."""
    for table in Base.metadata.sorted_tables:
        inspector = inspect(engine)
        if not inspector.has_table(table.name):
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            kind = column.type.compile(dialect=engine.dialect)
            default = column.server_default
            sql_default = f" DEFAULT {default.arg}" if isinstance(default, DefaultClause) else ""
            try:
                with engine.begin() as conn:
                    add = f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}{sql_default}"
                    conn.execute(text(add))
            except DBAPIError:
                # Another process (the service, a worker) added it at the same moment.
                if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                    raise


def call_on_loop(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any) -> None:
    """Calls `callback(*args)` now if this thread runs `loop`, else soon on `loop` (the store's callers are
    the event loop and the API's database threads)."""
    if asyncio._get_running_loop() is loop:
        callback(*args)
    else:
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(callback, *args)


def database_unavailable(error: BaseException) -> bool:
    """True for an error that means the database cannot be reached now (down, restarting, connection
    lost), as opposed to a bad query or a broken constraint: worth retrying once it is back."""
    if isinstance(error, OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


def _service_event(kind: str, at: dt.datetime, **data: Any) -> dict[str, Any]:
    return {"event": kind, "at": at.isoformat(), "source": "service", **data}


def _state_event(state: BotState, at: dt.datetime) -> dict[str, Any]:
    return _service_event("state", at, state=state.value)


def _parse_at(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
