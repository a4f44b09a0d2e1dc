"""How a running bot's output becomes its record: the one translation of `join --json` lines and of the
process's exit into the store, for the bots the service runs itself and for those a worker host runs
(`bot.cluster.worker`), so a bot's record reads the same wherever it ran.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, literal
from sqlalchemy.exc import SQLAlchemyError

from bot.events import (
    AwaitingAdmission,
    Ended,
    EventFormatError,
    Failed,
    InCall,
    Joining,
    Stats,
    Summary,
    parse_event,
)
from bot.outcome import ExitCode, RunFailureCode
from bot.service.store import RUNNING, BotRow, BotState, BotStore, UtcDateTime, database_unavailable, utcnow

log = logging.getLogger(__name__)


def final_state(code: int) -> BotState:
    """The state a bot's exit code ends it in."""
    if code == ExitCode.COMPLETED:
        return BotState.ENDED
    if code == ExitCode.CRASHED or code < 0 or ExitCode.known(code) is None:
        return BotState.CRASHED
    return BotState.FAILED


class BotRecorder:
    """Records one bot's events and exit in `store`."""

    def __init__(self, store: BotStore, bot_id: str) -> None:
        self.store = store
        self.bot_id = bot_id

    def event(self, data: dict[str, Any]) -> None:
        """Records one `join --json` line: stored as the bot wrote it, translated through its typed event."""
        store, bot_id = self.store, self.bot_id
        try:
            event = parse_event(data)
        except EventFormatError as e:
            log.warning("bot %s: %s", bot_id, e)
            store.add_event(bot_id, data)
            return
        if isinstance(event, Stats):
            store.update(bot_id, last_stats=data)
            return
        store.add_event(bot_id, data)
        match event:
            case Joining():
                store.transition(bot_id, BotState.JOINING, [BotState.STARTING])
            case AwaitingAdmission():
                store.transition(bot_id, BotState.AWAITING_ADMISSION, [BotState.STARTING, BotState.JOINING])
            case InCall():
                store.transition(
                    bot_id,
                    BotState.IN_CALL,
                    [BotState.STARTING, BotState.JOINING, BotState.AWAITING_ADMISSION],
                    # The first time only: a bot re-launched on another host (its host was lost) keeps
                    # the time it first got in, which its maximum duration counts from.
                    in_call_at=func.coalesce(BotRow.in_call_at, literal(utcnow(), UtcDateTime())),
                )
            case Ended():
                store.update(bot_id, end_reason=event.reason.value)
            case Failed():
                store.update(
                    bot_id, failure_code=event.code[:64] or None, message=event.message[:2000] or None
                )
            case Summary():
                store.update(bot_id, summary=data)

    def exit(self, code: int, diagnostics: str) -> None:
        """Records the process's exit code and the bot's final state (with the end of its error stream when
        it crashed or failed without saying why)."""
        store, bot_id = self.store, self.bot_id
        state = final_state(code)
        fields: dict[str, Any] = {"exit_code": code, "ended_at": utcnow()}
        record = store.get(bot_id)
        if state is BotState.CRASHED:
            how = f"killed by {signal_name(-code)}" if code < 0 else f"exited with code {code}"
            said = record.message if record and record.message else ""
            tail = diagnostics.strip().splitlines()[-5:]
            fields["message"] = "; ".join(p for p in (f"bot process {how}", said, " | ".join(tail)) if p)[
                :4000
            ]
            fields["failure_code"] = (record.failure_code if record else None) or RunFailureCode.CRASHED.value
        elif state is BotState.FAILED and record is not None:
            if record.failure_code is None:
                fields["failure_code"] = ExitCode(code).name.lower()
            if record.message is None and diagnostics.strip():
                # No `failed` event (e.g. a settings error, exit 2): the bot's own words are on stderr.
                fields["message"] = " | ".join(diagnostics.strip().splitlines()[-3:])[:2000]
        store.add_event(
            bot_id, {"event": "exit", "at": utcnow().isoformat(), "source": "service", "code": code}
        )
        store.transition(bot_id, state, RUNNING, **fields)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


Write = Callable[[BotRecorder], object]


class RecordQueue:
    """Writes running bots' records (`BotRecorder`: events, exits) in the order they come; while the
    database cannot be reached they wait here, in memory, and are written in that order once it answers.

    A database outage never stops a bot (it keeps its meeting; its process does not know) and loses
    nothing it reports, as long as the service itself runs on. The wait is retried every
    `retry_interval_s`. A record the database refuses for another reason (a bad value) is logged and
    skipped, so it cannot hold up the others. An event written just as the database went down may be
    written twice; its `id` tells the copies apart (the webhook's `X-Bot-Event-Id`).
    """

    def __init__(self, store: BotStore, retry_interval_s: float = 1.0) -> None:
        self.store = store
        self.retry_interval_s = retry_interval_s
        self._waiting: collections.deque[tuple[str, str, Write]] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._down_since: float | None = None
        self._give_up_at: float | None = None  # set by close(): the last attempts end then

    @property
    def waiting(self) -> int:
        """Records waiting for the database."""
        return len(self._waiting)

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_loop(), name="record-queue")

    def event(self, bot_id: str, data: dict[str, Any]) -> None:
        """Records one `join --json` line of the bot (see `BotRecorder.event`)."""
        self.write(bot_id, str(data.get("event", "event")), lambda r: r.event(data))

    def exit(self, bot_id: str, code: int, diagnostics: str) -> None:
        self.write(bot_id, "exit", lambda r: r.exit(code, diagnostics))

    def write(self, bot_id: str, what: str, write: Write) -> None:
        """Runs `write` now, or queues it behind the records already waiting (the order is kept)."""
        if not self._waiting:
            try:
                write(BotRecorder(self.store, bot_id))
                return
            except SQLAlchemyError as e:
                if not database_unavailable(e):
                    raise
                self._went_down(e)
        self._waiting.append((bot_id, what, write))
        self._wake.set()

    def _went_down(self, error: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0][:300]
            log.warning("the database is unavailable (%s): bot events wait in memory until it is back", cause)

    async def _flush_loop(self) -> None:
        while self._give_up_at is None:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()
        await self._flush()

    async def _flush(self) -> None:
        written = 0
        while self._waiting:
            bot_id, what, write = self._waiting[0]
            try:
                # In a thread: connecting to a database that is away may take the driver a while.
                await asyncio.to_thread(write, BotRecorder(self.store, bot_id))
            except SQLAlchemyError as e:
                if database_unavailable(e):
                    self._went_down(e)
                    if self._give_up_at is not None and time.monotonic() >= self._give_up_at:
                        return
                    with contextlib.suppress(TimeoutError):  # close() cuts the pause short
                        await asyncio.wait_for(self._wake.wait(), self.retry_interval_s)
                    self._wake.clear()
                    continue
                log.exception("bot %s: the database refused its %s record; skipped", bot_id, what)
            self._waiting.popleft()
            written += 1
        if self._down_since is not None:
            log.warning(
                "the database is back after %.0f s: %d waiting bot record(s) written",
                time.monotonic() - self._down_since,
                written,
            )
            self._down_since = None

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stops the retries after a last attempt of up to `timeout_s`; logs what could not be written."""
        self._give_up_at = time.monotonic() + timeout_s
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        elif self._waiting:
            await self._flush()
        if self._waiting:
            log.error(
                "the database is still unavailable: %d bot record(s) could not be written (bots %s)",
                len(self._waiting),
                ", ".join(sorted({bot_id for bot_id, _, _ in self._waiting})),
            )
